"""Partial scans: sphere tracing of signed distances from pinhole cameras, as a depth sensor sees a scene.

Cameras look at a target from an eye point (z up); each pixel casts one ray. Sphere tracing steps along a
ray by the SDF value, which never exceeds the distance to the surface (exact or a CSG bound), so it stops
on the first surface hit. Rays are traced as a flat batch ``[M, 3]``; the ones that have hit or left
are dropped from the batch as they finish.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def pinhole_rays(eye: Tensor, target: Tensor, fov_deg: float, resolution: int) -> tuple[Tensor, Tensor]:
    """Rays of ``V`` square pinhole cameras: ``eye, target [V, 3]`` → origins and unit directions ``[V, R², 3]``."""
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    up = torch.zeros_like(forward)
    up[:, 2] = 1.0
    right = torch.linalg.cross(forward, up, dim=-1)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    down = torch.linalg.cross(forward, right, dim=-1)
    half = math.tan(math.radians(fov_deg) / 2)
    u = torch.linspace(-half, half, resolution, dtype=eye.dtype)
    uu, vv = torch.meshgrid(u, u, indexing="xy")
    directions = (forward[:, None] + uu.reshape(1, -1, 1) * right[:, None] + vv.reshape(1, -1, 1) * down[:, None])
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return eye[:, None].expand_as(directions), directions


def sphere_trace(sdf: Callable[[Tensor, Tensor], Tensor], origins: Tensor, directions: Tensor, far: float,
                 steps: int = 96, epsilon: float = 1e-3) -> Tensor:
    """Depth ``[M]`` of the first hit of each ray ``origins, directions [M, 3]`` (``inf`` for a miss).

    ``sdf(points [m, 3], rays [m]) → [m]`` evaluates the distance at points of the rays ``rays`` (indices
    into the ``M`` rays: a batch of objects can give each ray its own object).
    """
    depth = torch.zeros(len(origins), dtype=origins.dtype)
    hit = torch.zeros(len(origins), dtype=torch.bool)
    active = torch.arange(len(origins))
    for _ in range(steps):
        if not len(active):
            break
        d = sdf(origins[active] + depth[active, None] * directions[active], active)
        done = d < epsilon
        hit[active[done]] = True
        depth[active] += torch.where(done, torch.zeros_like(d), d)
        active = active[~done & (depth[active] < far)]
    return torch.where(hit, depth, torch.full_like(depth, math.inf))


def view_eyes(n: int, distance: float | Tensor, generator: torch.Generator | None, elevation: tuple[float, float],
              dtype: torch.dtype = torch.float32) -> Tensor:
    """``[n, 3]`` camera positions at ``distance`` from the origin, uniform azimuth, elevation (degrees) in a range."""
    azimuth = torch.rand(n, generator=generator, dtype=dtype) * 2 * math.pi
    low, high = (math.radians(e) for e in elevation)
    el = low + (high - low) * torch.rand(n, generator=generator, dtype=dtype)
    return distance * torch.stack([el.cos() * azimuth.cos(), el.cos() * azimuth.sin(), el.sin()], -1)
