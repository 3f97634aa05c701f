"""Exact ray casting of a primitive world: RGB, z-depth, semantic class and instance per pixel.

Shading is view-independent (Lambertian under a square area light near the ceiling, plus ambient),
so every view of a surface point has the same colour, as a NeRF without view effects assumes.
Shadows are exact: the light is sampled on a fixed ``k x k`` grid (``k = 1``: hard shadows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from priors3d.fields.rays import camera_rays
from priors3d.fields.scenes.primitives import (CHECKER, NOISE, STRIPES, Grouped, Primitives, normals, rotate_z,
                                              to_local)


@dataclass
class World:
    """Everything the renderer needs.

    Attributes:
        prims: the primitives.
        light_center: ``[3]`` centre of the square, downward-facing area light.
        light_size: side of the light square (metres).
        light_samples: ``k``; the light is sampled on a ``k x k`` grid (0 = no shadows, unshadowed light).
        ambient: fraction of the albedo that is lit everywhere.
        noise: ``[D, D, D]`` values in [0, 1] spanning ``noise_box`` (``[2, 3]``), for NOISE textures.
        occluders: the primitives that can cast shadows (default all; a room leaves out its own shell,
            which cannot lie between an interior point and an interior light).
    """

    prims: Primitives
    light_center: Tensor
    light_size: float
    light_samples: int
    ambient: float
    noise: Tensor
    noise_box: Tensor
    occluders: Primitives | None = None

    def __post_init__(self) -> None:
        self.grouped = Grouped(self.prims)
        self.grouped_occluders = Grouped(self.prims if self.occluders is None else self.occluders)


def cast(world: World, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest hit of ``[R]`` rays: distance ``[R]`` (inf on a miss) and primitive index ``[R]`` (-1 on a miss)."""
    return world.grouped.nearest(origins, dirs)


def light_points(world: World) -> Tensor:
    """``[k*k, 3]`` sample positions on the light square (cell centres of a ``k x k`` grid)."""
    k = max(world.light_samples, 1)
    offsets = (torch.arange(k, dtype=torch.float32) + 0.5) / k - 0.5
    gx, gy = torch.meshgrid(offsets, offsets, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten(), torch.zeros(k * k)], -1) * world.light_size
    return world.light_center + grid


def albedo(world: World, index: Tensor, points: Tensor, normal: Tensor) -> Tensor:
    """Texture colour ``[R, 3]`` of primitive ``index`` ``[R]`` at world ``points`` ``[R, 3]``."""
    p = world.prims
    local = to_local(p, points, index)
    n_local = rotate_z(normal, -p.yaw[index]).abs()
    period = p.period[index]
    two_pi = 2 * torch.pi
    across = local.gather(-1, p.axis[index, None])[:, 0]
    stripes = torch.tanh(2.5 * torch.sin(two_pi * across / period))
    # Checker on the two local axes that lie most in the surface.
    in_plane = n_local.argsort(dim=-1)[:, :2]
    a, b = local.gather(-1, in_plane).unbind(-1)
    checker = torch.tanh(3.0 * torch.sin(two_pi * a / period) * torch.sin(two_pi * b / period))
    box = world.noise_box
    grid = ((points - box[0]) / (box[1] - box[0]) * 2 - 1).clamp(-1, 1)
    noise = F.grid_sample(world.noise[None, None], grid[None, :, None, None, :], align_corners=True)[0, 0, :, 0, 0]
    kind = p.texture[index]
    s = torch.zeros_like(across)
    s = torch.where(kind == STRIPES, 0.5 + 0.5 * stripes, s)
    s = torch.where(kind == CHECKER, 0.5 + 0.5 * checker, s)
    s = torch.where(kind == NOISE, noise, s)
    return p.color[index] * (1 - s[:, None]) + p.color_b[index] * s[:, None]


def irradiance(world: World, points: Tensor, normal: Tensor) -> Tensor:
    """Mean over light samples of ``max(0, n.l) * visible``: ``[R]`` in [0, 1]."""
    lights = light_points(world)
    total = torch.zeros(points.shape[0])
    start = points + 1e-3 * normal
    for light in lights:
        to_light = light - start
        dist = to_light.norm(dim=-1)
        direction = to_light / dist[:, None]
        cos = (normal * direction).sum(-1).clamp_min(0)
        if world.light_samples > 0:
            lit = cos > 0
            if lit.any():
                _, blocker = world.grouped_occluders.nearest(start[lit], direction[lit], t_max=dist[lit])
                cos[lit] = torch.where(blocker >= 0, 0.0, cos[lit])
        total += cos
    return total / len(lights)


def shade_rays(world: World, origins: Tensor, dirs: Tensor) -> dict[str, Tensor]:
    """Cast and shade rays ``[R, 3]``.

    Returns:
        ``rgb`` ``[R, 3]``, ``t`` ``[R]`` (0 on a miss), ``semantic`` and ``instance`` ``[R]`` (-1 on a miss).
    """
    t, index = cast(world, origins, dirs)
    hit = index >= 0
    rgb = torch.zeros(origins.shape[0], 3)
    if hit.any():
        i = index[hit]
        points = origins[hit] + t[hit, None] * dirs[hit]
        local = to_local(world.prims, points, i)
        n = normals(world.prims, i, local)
        n = torch.where(((n * dirs[hit]).sum(-1) > 0)[:, None], -n, n)  # face the viewer
        colour = albedo(world, i, points, n)
        light = world.ambient + (1 - world.ambient) * irradiance(world, points, n)
        emissive = world.prims.emissive[i]
        rgb[hit] = torch.where(emissive[:, None], colour, colour * light[:, None]).clamp(0, 1)
    first = index.clamp_min(0)
    return {"rgb": rgb, "t": torch.where(hit, t, 0.0), "semantic": torch.where(hit, world.prims.semantic[first], -1),
            "instance": torch.where(hit, world.prims.instance[first], -1)}


def render_views(world: World, c2w: Tensor, intrinsics: Tensor, height: int, width: int,
                 chunk: int = 16384, progress: bool = False) -> dict[str, Tensor]:
    """Render ``V`` cameras exactly (one ray through each pixel centre).

    Args:
        c2w: ``[V, 4, 4]`` OpenGL camera-to-world. intrinsics: ``[V, 4]`` ``(fx, fy, cx, cy)``.
    Returns:
        ``images`` ``[V, H, W, 3]`` in [0, 1], ``depth`` ``[V, H, W]`` z-depth (0 where nothing is hit),
        ``semantic`` and ``instance`` ``[V, H, W]`` int64 (-1 where nothing is hit).
    """
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or intrinsics.shape != (c2w.shape[0], 4):
        raise ValueError(f"expected c2w [V, 4, 4] and intrinsics [V, 4], got {list(c2w.shape)} and "
                         f"{list(intrinsics.shape)}")
    origins, dirs = camera_rays(c2w.float(), intrinsics.float(), height, width)
    z_scale = -(dirs * c2w[:, None, None, :3, 2].float()).sum(-1)  # z-depth per unit distance along the ray
    shape = origins.shape[:3]
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    starts = tqdm(range(0, origins.shape[0], chunk), desc="ray casting", unit="chunk", disable=not progress)
    parts = [shade_rays(world, origins[s:s + chunk], dirs[s:s + chunk]) for s in starts]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return {"images": out["rgb"].reshape(*shape, 3), "depth": out["t"].reshape(shape) * z_scale,
            "semantic": out["semantic"].reshape(shape), "instance": out["instance"].reshape(shape)}
