"""Procedural categories with analytic signed distances: mugs, chairs and clutter boxes.

Every object lives in a canonical frame: upright (z up), centred on its bounding box, about unit size
(its points lie within distance ~0.8 of the origin). Parts have exact SDFs (capped cylinders, a torus,
boxes); objects combine them with CSG: ``min`` for a union, ``max(a, −b)`` for a difference. Such a
combination has the exact zero level set and the exact sign; outside a union its value is the exact
distance, elsewhere (inside a union, anywhere near a difference) it is a bound: ``|value| ≤ distance``.
That bound is what sphere tracing needs (a step never crosses the surface) and what the prior is trained
to regress (see docs/efem.md).

An object batch is ``(category, params [B, P])``; :func:`object_sdf` evaluates points ``[B, Q, 3]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

CATEGORIES = ("mug", "chair", "box")

# (low, high) of each parameter, in canonical units
PARAMETERS: dict[str, dict[str, tuple[float, float]]] = {
    "mug": {"radius": (0.25, 0.4), "height": (0.6, 0.9), "wall": (0.06, 0.1), "bottom": (0.06, 0.1),
            "handle": (0.14, 0.22), "tube": (0.04, 0.06)},
    "chair": {"width": (0.5, 0.7), "depth": (0.5, 0.7), "legs": (0.4, 0.55), "seat": (0.08, 0.12),
              "back": (0.4, 0.65), "leg": (0.06, 0.1), "back_thickness": (0.06, 0.1)},
    "box": {"x": (0.15, 0.5), "y": (0.15, 0.5), "z": (0.1, 0.5)},
}


def check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")


def sample_params(category: str, n: int, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """``[n, P]`` parameters of ``n`` random objects of ``category``, uniform in :data:`PARAMETERS`."""
    check_category(category)
    bounds = torch.tensor(list(PARAMETERS[category].values()), dtype=dtype)
    return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * torch.rand(n, len(bounds), generator=generator, dtype=dtype)


def sdf_box(p: Tensor, center: Tensor, half: Tensor) -> Tensor:
    """Exact SDF of axis-aligned boxes: ``p [B, Q, 3]``, ``center``, ``half [B, 3]`` → ``[B, Q]``."""
    q = (p - center[:, None]).abs() - half[:, None]
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def sdf_cylinder(p: Tensor, radius: Tensor, z_low: Tensor, z_high: Tensor) -> Tensor:
    """Exact SDF of capped cylinders about the z axis: ``p [B, Q, 3]``, the rest ``[B]`` → ``[B, Q]``."""
    middle, half = ((z_low + z_high) / 2)[:, None], ((z_high - z_low) / 2)[:, None]
    d = torch.stack([p[..., :2].norm(dim=-1) - radius[:, None], (p[..., 2] - middle).abs() - half], -1)
    return d.clamp_min(0).norm(dim=-1) + d.amax(-1).clamp_max(0)


def sdf_torus(p: Tensor, x: Tensor, major: Tensor, minor: Tensor) -> Tensor:
    """Exact SDF of tori in the xz plane centred at ``(x, 0, 0)``: ``p [B, Q, 3]``, the rest ``[B]``."""
    ring = torch.stack([p[..., 0] - x[:, None], p[..., 2]], -1).norm(dim=-1) - major[:, None]
    return torch.stack([ring, p[..., 1]], -1).norm(dim=-1) - minor[:, None]


def _mug(p: Tensor, params: Tensor) -> Tensor:
    radius, height, wall, bottom, handle, tube = params.unbind(1)
    body = sdf_cylinder(p, radius, -height / 2, height / 2)
    cavity = sdf_cylinder(p, radius - wall, -height / 2 + bottom, height / 2 + 1.0)
    ring = sdf_torus(p, radius, handle, tube)
    return torch.minimum(torch.maximum(body, -cavity), torch.maximum(ring, -body))


def _chair_boxes(params: Tensor) -> tuple[Tensor, Tensor]:
    """Centres and half sizes ``[B, 6, 3]`` of a chair's seat, four legs and back."""
    width, depth, legs, seat, back, leg, back_t = params.unbind(1)
    bottom = -(legs + seat + back) / 2
    zero = torch.zeros_like(width)
    centers = [torch.stack([zero, zero, bottom + legs + seat / 2], 1)]
    halves = [torch.stack([width, depth, seat], 1) / 2]
    for sx in (-1, 1):
        for sy in (-1, 1):
            centers.append(torch.stack([sx * (width - leg) / 2, sy * (depth - leg) / 2, bottom + legs / 2], 1))
            halves.append(torch.stack([leg, leg, legs], 1) / 2)
    centers.append(torch.stack([zero, (depth - back_t) / 2, bottom + legs + seat + back / 2], 1))
    halves.append(torch.stack([width, back_t, back], 1) / 2)
    return torch.stack(centers, 1), torch.stack(halves, 1)


def _chair(p: Tensor, params: Tensor) -> Tensor:
    centers, halves = _chair_boxes(params)
    return torch.stack([sdf_box(p, centers[:, i], halves[:, i]) for i in range(centers.shape[1])]).amin(0)


def _box(p: Tensor, params: Tensor) -> Tensor:
    return sdf_box(p, torch.zeros_like(params), params / 2)


_SDF = {"mug": _mug, "chair": _chair, "box": _box}


def object_sdf(category: str, params: Tensor, points: Tensor) -> Tensor:
    """Signed distance (CSG bound, exact sign) of ``points [B, Q, 3]`` to objects ``params [B, P]`` → ``[B, Q]``."""
    check_category(category)
    if points.ndim != 3 or points.shape[-1] != 3 or params.shape[0] != points.shape[0]:
        raise ValueError(f"expected points [B, Q, 3] and params [B, P], got {list(points.shape)} and "
                         f"{list(params.shape)}")
    return _SDF[category](points, params.to(points.dtype))


def surface_points(sdf, n: int, batch: int, generator: torch.Generator | None = None, bound: float = 1.0,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """``[batch, n, 3]`` points on the zero level set of ``sdf: [B, Q, 3] → [B, Q]``, roughly uniform.

    Uniform points of the box ``[-bound, bound]³`` are projected along the SDF gradient
    (``x ← x − f(x) ∇f(x)``, exact outside: one step lands on the surface) and those within 1e-4 of it kept.
    """
    x = (torch.rand(batch, 8 * n, 3, generator=generator, dtype=dtype) * 2 - 1) * bound
    for _ in range(6):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            f = sdf(x)
            (grad,) = torch.autograd.grad(f.sum(), x)
        x = x - f[..., None] * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    x = x.detach()
    close = sdf(x).abs() < 1e-4
    weights = close.to(dtype) + 1e-12
    index = torch.multinomial(weights, n, replacement=True, generator=generator)
    return x.gather(1, index[..., None].expand(-1, -1, 3))
