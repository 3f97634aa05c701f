"""Edits through Jacobians: click one pixel to select what resonates with it, or to recolour it.

Selection: pixels of any view whose Jacobian has ``|cos| >= threshold`` with the clicked pixel's.
Recolouring: Gauss-Newton steps on ``theta_D`` restricted to the span of the clicked pixel's
per-channel gradients ``J_R, J_G, J_B`` (``theta_D += J^T alpha`` with ``(J J^T + damping) alpha =
target - colour``); every pixel whose Jacobians resonate with the click changes colour with it.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from priors3d.fields.render import render_rays
from priors3d.fields.train import FieldSetup
from priors3d.fields.views import Views
from priors3d.shaping.jacobian import flatten, parameter_subset, pixel_jacobians_chunked, unflatten
from priors3d.shaping.propagate import Click, first_order_responses, sampling, view_jacobians, view_rays


def select(model: nn.Module, setup: FieldSetup, source: Views, targets: Views, click: Click,
           threshold: float = 0.9, names: tuple[str, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Selection masks ``[V, H, W]`` bool of ``targets`` for a click in ``source``, and the responses ``[V, H, W]``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine in [0, 1], got {threshold}")
    o, d, near, far = _click_ray(source, setup, click)
    anchor = pixel_jacobians_chunked(model, o, d, near, far, names=names, **sampling(model, setup))
    responses = first_order_responses(view_jacobians(model, setup, targets, names=names), anchor)[..., 0]
    return responses >= threshold, responses


def recolor(model: nn.Module, setup: FieldSetup, source: Views, click: Click, color: tuple[float, float, float],
            steps: int = 5, damping: float = 1e-4, names: tuple[str, ...] | None = None) -> nn.Module:
    """A copy of ``model`` whose ``theta_D`` moved so that the clicked pixel renders ``color`` (RGB in [0, 1])."""
    target = torch.tensor(color, dtype=torch.float32)
    if target.shape != (3,) or bool(((target < 0) | (target > 1)).any()):
        raise ValueError(f"color must be three numbers in [0, 1], got {color}")
    edited = copy.deepcopy(model)
    theta = parameter_subset(edited, names)
    o, d, near, far = _click_ray(source, setup, click)
    kwargs = sampling(edited, setup)
    for _ in range(steps):
        with torch.no_grad():
            colour = render_rays(edited, o, d, near, far, **kwargs)["rgb"][0]
        jac = torch.cat([pixel_jacobians_chunked(edited, o, d, near, far, names=names, channel=c, **kwargs)
                         for c in range(3)])  # [3, P]
        gram = jac @ jac.T + damping * torch.eye(3)
        alpha = torch.linalg.solve(gram, target - colour)
        moved = unflatten(flatten({n: t.detach() for n, t in theta.items()}) + jac.T @ alpha, theta)
        with torch.no_grad():
            for name, value in moved.items():
                theta[name].copy_(value)
    return edited


def edit_picture(before: Tensor, after: Tensor, masks: Tensor | None = None) -> np.ndarray:
    """``[V, H, W, 3]`` renders (and optional ``[V, H, W]`` masks) -> uint8 rows ``before | after | mask``."""
    rows = []
    for v in range(before.shape[0]):
        panels = [before[v], after[v]]
        if masks is not None:
            panels.append(masks[v].float()[..., None].expand(-1, -1, 3))
        rows.append(torch.cat(panels, dim=1))
    image = (torch.cat(rows, dim=0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return np.kron(image, np.ones((2, 2, 1), dtype=np.uint8))


def _click_ray(views: Views, setup: FieldSetup, click: Click) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    height, width = views.hw
    if not (0 <= click.view < len(views) and 0 <= click.x < width and 0 <= click.y < height):
        raise ValueError(f"click {click} is outside the {len(views)} views of {width}x{height} pixels")
    o, d, near, far = view_rays(views.subset([click.view]), setup)
    i = click.y * width + click.x
    return o[0, i:i + 1], d[0, i:i + 1], near[0, i:i + 1], far[0, i:i + 1]
