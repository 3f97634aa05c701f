"""A Semantic-NeRF-style baseline: a semantic head on the frozen field, trained only on the clicks.

Semantic-NeRF adds a branch that maps a point's geometry features to class logits, volume-renders
the logits with the density weights and trains it with cross-entropy on labelled pixels. Here the
fitted field is frozen, the head reads the point's grid features and the trunk's geometry feature,
and the labelled pixels are exactly the clicks the Jacobian propagation gets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priors3d.fields.nerf import NeRF, grid_features
from priors3d.fields.render import FieldSetup, render_rays
from priors3d.fields.views import Views
from priors3d.shaping.clicks import Click, click_labels
from priors3d.shaping.propagate import argmax_labels, click_rays, map_rays


class SemanticHead(nn.Sequential):
    """``[..., F] -> [..., K]`` class logits of point features (two-layer MLP)."""

    def __init__(self, in_features: int, n_classes: int, hidden: int = 64):
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


@torch.no_grad()
def ray_features(model: NeRF, setup: FieldSetup, o: Tensor, d: Tensor, near: Tensor,
                 far: Tensor) -> tuple[Tensor, Tensor]:
    """Features ``[R, S, L*C + G]`` of the samples along rays ``[R, 3]`` (grid features and the trunk's geometry
    feature) and their render weights ``[R, S]``."""
    out = render_rays(model, o, d, near, far, **setup.sampling(model))
    mids = 0.5 * (out["t_starts"] + out["t_ends"])
    grid = grid_features(list(model.grids), model.to_unit(o[:, None] + mids[..., None] * d[:, None]).reshape(-1, 3))
    return torch.cat([grid, model.trunk(grid)[:, 1:]], dim=-1).reshape(*mids.shape, -1), out["weights"]


def fit_semantic_head(model: NeRF, setup: FieldSetup, source: Views, clicks: list[Click], n_classes: int,
                      steps: int = 300, lr: float = 1e-2, seed: int = 0) -> SemanticHead:
    """Train a ``SemanticHead`` with cross-entropy of volume-rendered logits at the clicked pixels."""
    torch.manual_seed(seed)
    labels = click_labels(clicks)
    feats, weights = ray_features(model, setup, *click_rays(source, setup, clicks))
    head = SemanticHead(feats.shape[-1], n_classes)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy((weights[..., None] * head(feats)).sum(dim=1), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return head


@torch.no_grad()
def predict_semantic(model: NeRF, setup: FieldSetup, head: SemanticHead, views: Views, active: Tensor,
                     chunk: int = 4096) -> Tensor:
    """Labels ``[V, H, W]``: argmax of rendered logits over the ``active [K]`` (clicked) classes."""

    def logits(*rays: Tensor) -> Tensor:
        feats, weights = ray_features(model, setup, *rays)
        return (weights[..., None] * head(feats)).sum(dim=1)

    return argmax_labels(map_rays(views, setup, logits, chunk), active, float("-inf"))
