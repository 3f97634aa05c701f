"""Edits through Jacobians: click one pixel to select what resonates with it, or to recolour it.

Selection: pixels of any view whose Jacobian has ``|cos| >= threshold`` with the clicked pixel's.
Recolouring: Gauss-Newton steps on ``theta_D`` that bring the clicked pixel to the target colour
while moving the non-resonating pixels of its view as little as possible (a minimum-norm step in
the metric ``J_keepᵀ J_keep + damping``); every pixel whose Jacobians resonate with the click
changes colour with it.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from priors3d.fields.render import FieldSetup, render_rays
from priors3d.fields.views import Views
from priors3d.shaping.clicks import Click
from priors3d.shaping.jacobian import flatten, parameter_subset, pixel_jacobians_chunked, unflatten
from priors3d.shaping.propagate import click_jacobians, click_rays, first_order_responses, view_jacobians, view_rays


def select(model: nn.Module, setup: FieldSetup, source: Views, targets: Views, click: Click,
           threshold: float = 0.9, names: tuple[str, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Selection masks ``[V, H, W]`` bool of ``targets`` for a click in ``source``, and the responses ``[V, H, W]``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine in [0, 1], got {threshold}")
    anchor = click_jacobians(model, setup, source, [click], names)
    responses = first_order_responses(view_jacobians(model, setup, targets, names=names), anchor)[..., 0]
    return responses >= threshold, responses


def recolor(model: nn.Module, setup: FieldSetup, source: Views, click: Click, color: tuple[float, float, float],
            steps: int = 5, damping: float = 1e-4, keep: int = 512, threshold: float = 0.9,
            names: tuple[str, ...] | None = None) -> nn.Module:
    """A copy of ``model`` whose ``theta_D`` moved so that the clicked pixel renders ``color`` (RGB in [0, 1]).

    Each Gauss-Newton step is the smallest change that reaches the target at the click, measured by
    how much it moves ``keep`` pixels of the click's view that do not resonate with it (``|cos| <
    threshold``; ``keep=0``: by the plain parameter norm).
    """
    target = torch.tensor(color, dtype=torch.float32)
    if target.shape != (3,) or bool(((target < 0) | (target > 1)).any()):
        raise ValueError(f"color must be three numbers in [0, 1], got {color}")
    edited = copy.deepcopy(model)
    theta = parameter_subset(edited, names)
    rays = click_rays(source, setup, [click])
    kept = _kept_rays(edited, setup, source, click, keep, threshold, names)
    kwargs = setup.sampling(edited)
    for _ in range(steps):
        with torch.no_grad():
            colour = render_rays(edited, *rays, **kwargs)["rgb"][0]
        jac = _rgb_jacobians(edited, rays, names, kwargs)  # [3, P]
        metric = damping * torch.eye(jac.shape[1])
        if kept is not None:
            others = _rgb_jacobians(edited, kept, names, kwargs)  # [3K, P]
            metric += others.T @ others / len(others)
        # argmin ||others · step||² + damping ||step||²  subject to  jac · step = target - colour
        inverse_jt = torch.linalg.solve(metric, jac.T)  # [P, 3]
        step = inverse_jt @ torch.linalg.solve(jac @ inverse_jt, target - colour)
        with torch.no_grad():
            for name, value in unflatten(flatten(theta) + step, theta).items():
                theta[name].copy_(value)
    return edited


def _rgb_jacobians(model: nn.Module, rays: tuple[Tensor, ...], names: tuple[str, ...] | None,
                   kwargs: dict) -> Tensor:
    """Per-channel Jacobians of the rays' colours, ``[3 * M, P]`` (channel-major)."""
    return torch.cat([pixel_jacobians_chunked(model, *rays, names=names, channel=c, **kwargs) for c in range(3)])


def _kept_rays(model: nn.Module, setup: FieldSetup, source: Views, click: Click, keep: int, threshold: float,
               names: tuple[str, ...] | None) -> tuple[Tensor, ...] | None:
    """Rays of up to ``keep`` pixels of the click's view that do not resonate with the click, evenly spread."""
    if keep <= 0:
        return None
    view = source.subset([click.view])
    _, responses = select(model, setup, source, view, click, threshold, names)
    candidates = (responses.flatten() < threshold).nonzero().flatten()
    if len(candidates) == 0:
        return None
    chosen = candidates[torch.linspace(0, len(candidates) - 1, min(keep, len(candidates))).round().long()]
    return tuple(r[0, chosen] for r in view_rays(view, setup))


def edit_picture(before: Tensor, after: Tensor, masks: Tensor | None = None) -> np.ndarray:
    """``[V, H, W, 3]`` renders (and optional ``[V, H, W]`` masks) -> uint8 rows ``before | after | mask``."""
    panels = [before, after] + ([] if masks is None else [masks.float()[..., None].expand(-1, -1, -1, 3)])
    image = (torch.cat(panels, dim=2).flatten(0, 1).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return np.kron(image, np.ones((2, 2, 1), dtype=np.uint8))
