"""Training items of the shape prior: partial, noisy scans of canonical objects and SDF queries.

A scan sees an object from 1-3 random viewpoints (sphere-traced depth images), maybe through a random
ball occluder whose own hits are dropped, and adds Gaussian noise. Queries mix uniform points of the box
``[-bound, bound]³`` with points near the surface; their targets are the category's analytic SDF.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .scan import pinhole_rays, sphere_trace, view_eyes
from .shapes import PARAMETERS, object_sdf, sample_params, surface_points

EYE_DISTANCE, FOV_DEG = 2.5, 40.0


def object_scans(category: str, params: Tensor, n_points: int, generator: torch.Generator, *,
                 max_views: int = 3, resolution: int = 32, noise: float = 0.005, occluder: float = 0.5,
                 elevation: tuple[float, float] = (5.0, 75.0)) -> Tensor:
    """``[B, n_points, 3]`` partial scans of the objects ``params [B, P]`` (points drawn with replacement).

    Each object is seen from ``1..max_views`` random cameras; with probability ``occluder`` a ball of radius
    0.1-0.25 floats between the first camera and the object.
    """
    b, dtype = len(params), params.dtype
    eyes = view_eyes(b * max_views, EYE_DISTANCE, generator, elevation, dtype)
    origins, directions = pinhole_rays(eyes, torch.zeros_like(eyes), FOV_DEG, resolution)
    per_object = max_views * resolution ** 2
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    ball = eyes.view(b, max_views, 3)[:, 0] * (0.35 + 0.25 * torch.rand(b, 1, generator=generator, dtype=dtype))
    ball = ball + 0.15 * torch.randn(b, 3, generator=generator, dtype=dtype)
    radius = 0.1 + 0.15 * torch.rand(b, generator=generator, dtype=dtype)
    present = torch.rand(b, generator=generator, dtype=dtype) < occluder
    radius = torch.where(present, radius, torch.full_like(radius, -1.0))

    def parts(points: Tensor, rays: Tensor) -> tuple[Tensor, Tensor]:
        owner = rays // per_object
        shape = object_sdf(category, params[owner], points[:, None])[:, 0]
        blocker = torch.where(radius[owner] > 0, (points - ball[owner]).norm(dim=-1) - radius[owner],
                              torch.full_like(shape, math.inf))
        return shape, blocker

    depth = sphere_trace(lambda p, r: torch.minimum(*parts(p, r)), origins, directions, far=2 * EYE_DISTANCE)
    hit = depth.isfinite()
    points = origins + torch.where(hit, depth, torch.zeros_like(depth))[:, None] * directions
    shape, blocker = parts(points, torch.arange(len(points)))
    on_object = hit & (shape <= blocker)
    views = torch.randint(1, max_views + 1, (b, 1), generator=generator)
    used = (torch.arange(max_views).repeat_interleave(resolution ** 2)[None] < views).reshape(-1)
    weights = (on_object & used).to(dtype) + 1e-6 * on_object.to(dtype)
    index = torch.multinomial(weights.view(b, per_object), n_points, replacement=True, generator=generator)
    chosen = points.view(b, per_object, 3).gather(1, index[..., None].expand(-1, -1, 3))
    return chosen + noise * torch.randn(chosen.shape, generator=generator, dtype=dtype)


def sdf_queries(category: str, params: Tensor, n_queries: int, generator: torch.Generator, *,
                near_fraction: float = 0.5, sigmas: tuple[float, float] = (0.01, 0.05),
                bound: float = 1.1) -> tuple[Tensor, Tensor]:
    """Query points ``[B, n_queries, 3]`` and their signed distances ``[B, n_queries]``.

    ``near_fraction`` of them are surface points plus Gaussian noise (half with each of ``sigmas``), the rest
    uniform in ``[-bound, bound]³``.
    """
    b, dtype = len(params), params.dtype
    n_near = int(round(n_queries * near_fraction))
    near = surface_points(lambda x: object_sdf(category, params, x), n_near, b, generator, dtype=dtype)
    sigma = torch.tensor(sigmas, dtype=dtype).repeat_interleave(math.ceil(n_near / 2))[:n_near]
    near = near + sigma[None, :, None] * torch.randn(near.shape, generator=generator, dtype=dtype)
    uniform = (torch.rand(b, n_queries - n_near, 3, generator=generator, dtype=dtype) * 2 - 1) * bound
    queries = torch.cat([near, uniform], 1)
    return queries, object_sdf(category, params, queries)


class ScanPool:
    """A fixed pool of training objects, generated once from ``seed``: ``views`` scans and ``n_stored`` SDF
    queries per object; :meth:`batch` draws from it (tracing scans every step would cost more than the step).

    ``scan_options`` go to :func:`object_scans` (max_views, resolution, noise, occluder).
    """

    def __init__(self, category: str, objects: int, n_points: int, seed: int, *, views: int = 4,
                 n_stored: int = 2048, near_fraction: float = 0.7, chunk: int = 64, **scan_options):
        generator = torch.Generator().manual_seed(seed)
        self.params = sample_params(category, objects, generator)
        bounds = torch.tensor(list(PARAMETERS[category].values()))
        self.unit_params = (self.params - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])
        scans, queries, sdf = [], [], []
        for start in range(0, objects, chunk):
            params = self.params[start:start + chunk]
            scans.append(torch.stack([object_scans(category, params, n_points, generator, **scan_options)
                                      for _ in range(views)], 1))
            q, d = sdf_queries(category, params, n_stored, generator, near_fraction=near_fraction)
            queries.append(q)
            sdf.append(d)
        self.scans, self.queries, self.sdf = torch.cat(scans), torch.cat(queries), torch.cat(sdf)

    def batch(self, n: int, n_queries: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(scans [n, n_points, 3], queries [n, n_queries, 3], sdf [n, n_queries], params [n, P])`` of ``n``
        random objects; ``params`` rescaled to [0, 1] by their ranges."""
        objects = torch.randint(len(self.scans), (n,), generator=generator)
        views = torch.randint(self.scans.shape[1], (n,), generator=generator)
        chosen = torch.rand(n, self.queries.shape[1], generator=generator).argsort(1)[:, :n_queries]
        return (self.scans[objects, views], self.queries[objects].gather(1, chosen[..., None].expand(-1, -1, 3)),
                self.sdf[objects].gather(1, chosen), self.unit_params[objects])
