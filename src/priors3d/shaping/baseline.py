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
from priors3d.shaping.propagate import argmax_labels, click_rays, sampling, view_rays


class SemanticHead(nn.Module):
    """``[..., F] -> [..., K]`` class logits of point features (two-layer MLP)."""

    def __init__(self, in_features: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


@torch.no_grad()
def point_features(model: NeRF, positions: Tensor) -> Tensor:
    """``[..., 3] -> [..., L*C + G]``: grid features and the trunk's geometry feature of each point."""
    unit = model.to_unit(positions).reshape(-1, 3)
    grid = grid_features(list(model.grids), unit)
    geo = model.trunk(grid)[:, 1:]
    return torch.cat([grid, geo], dim=-1).reshape(*positions.shape[:-1], -1)


@torch.no_grad()
def ray_features(model: NeRF, setup: FieldSetup, o: Tensor, d: Tensor, near: Tensor,
                 far: Tensor) -> tuple[Tensor, Tensor]:
    """Features ``[R, S, F]`` of the samples along rays ``[R, 3]`` and their render weights ``[R, S]``."""
    out = render_rays(model, o, d, near, far, **sampling(model, setup))
    mids = 0.5 * (out["t_starts"] + out["t_ends"])
    return point_features(model, o[:, None] + mids[..., None] * d[:, None]), out["weights"]


def fit_semantic_head(model: NeRF, setup: FieldSetup, source: Views, clicks: list[Click], n_classes: int,
                      steps: int = 300, lr: float = 1e-2, seed: int = 0) -> SemanticHead:
    """Train a ``SemanticHead`` with cross-entropy of volume-rendered logits at the clicked pixels."""
    torch.manual_seed(seed)
    labels = click_labels(clicks)
    feats, weights = ray_features(model, setup, *click_rays(source, setup, clicks))
    head = SemanticHead(feats.shape[-1], n_classes)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        logits = (weights[..., None] * head(feats)).sum(dim=1)
        loss = F.cross_entropy(logits, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return head


@torch.no_grad()
def predict_semantic(model: NeRF, setup: FieldSetup, head: SemanticHead, views: Views, active: Tensor,
                     chunk: int = 4096) -> Tensor:
    """Labels ``[V, H, W]``: argmax of rendered logits over the ``active [K]`` (clicked) classes."""
    o, d, near, far = view_rays(views, setup)
    out = []
    for v in range(len(views)):
        rows = []
        for s in range(0, o.shape[1], chunk):
            feats, weights = ray_features(model, setup, o[v, s:s + chunk], d[v, s:s + chunk],
                                          near[v, s:s + chunk], far[v, s:s + chunk])
            rows.append((weights[..., None] * head(feats)).sum(dim=1))
        out.append(torch.cat(rows))
    h, w = views.hw
    return argmax_labels(torch.stack(out).reshape(len(views), h, w, -1), active, float("-inf"))
