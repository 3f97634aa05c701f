"""Procedural scenes: instances of a category on a floor among clutter, scanned from a few depth views.

An :class:`Instance` places a canonical object (:mod:`priors3d.efem.shapes`) as ``world = s·local R + t``.
Layouts: ``"z"`` (upright, random rotation about z, separated), ``"so3"`` (any rotation, resting on the floor,
separated; the same draws as the z layout's scene of the seed but the targets' rotations, so the two layouts
differ only by how the targets are turned and where that lets them rest), ``"piles"`` (upright, random z
rotation, touching). Objects are placed one after another: a new
one starts far out in a random horizontal direction and slides towards the centre by the distance its
surface samples keep to everything placed before (never penetrating), until it is ``gap`` away (0 for
piles). Clutter is boxes and one object of the other category. The scan is sphere-traced from
``views`` cameras on a ring above the scene, with Gaussian noise; each point keeps the index of the
object it lies on (``-1`` for the floor), for scoring only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

from priors3d.so3 import random_rotation, random_rotation_about

from .scan import pinhole_rays, sphere_trace
from .shapes import CATEGORIES, object_sdf, sample_params, surface_points

LAYOUTS = ("z", "so3", "piles")


@dataclasses.dataclass
class Instance:
    """A placed object: ``params [P]`` of ``category``, ``rotation [3, 3]`` (row vectors), ``translation [3]``,
    ``scale``."""

    category: str
    params: Tensor
    rotation: Tensor
    translation: Tensor
    scale: float

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance ``[M]`` of world points ``[M, 3]`` (scaled CSG bound of the canonical object)."""
        local = (points - self.translation) @ self.rotation.T / self.scale
        return self.scale * object_sdf(self.category, self.params[None], local[None])[0]


@dataclasses.dataclass
class TabletopScene:
    """``points [N, 3]``, ``instance [N]`` (index into ``instances``, −1 = floor), the instances, the category."""

    points: Tensor
    instance: Tensor
    instances: list[Instance]
    category: str

    def truth(self, min_points: int = 30) -> Tensor:
        """``[N]`` ground-truth instance ids of the target category (0..K−1), −1 elsewhere; instances with fewer
        than ``min_points`` visible points are not scored (−1), as ScanNet ignores tiny ones."""
        counts = torch.bincount(self.instance.clamp_min(-1) + 1, minlength=len(self.instances) + 1)[1:]
        targets = [i for i, inst in enumerate(self.instances) if inst.category == self.category
                   and counts[i] >= min_points]
        lookup = torch.full((len(self.instances) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(targets, dtype=torch.long)] = torch.arange(len(targets))
        return lookup[self.instance]  # index −1 (floor) reads the last entry, −1


@dataclasses.dataclass(kw_only=True)
class SceneConfig:
    """How scenes are drawn (each scene is a function of its seed)."""

    instances: tuple[int, int] = (2, 6)
    """Range (inclusive) of the number of target instances."""
    scale: tuple[float, float] = (0.5, 2.0)
    boxes: tuple[int, int] = (1, 3)
    """Range of clutter boxes."""
    distractors: int = 1
    """Objects of the other category."""
    gap: tuple[float, float] = (0.1, 0.5)
    """Range of the free space kept around each object (separated layouts)."""
    views: int = 3
    resolution: int = 96
    noise: float = 0.005
    n_points: int = 6000
    """Points on objects kept (a random subset of their hits)."""
    floor_points: int = 1500
    """Points on the floor kept."""


def _surface(inst: Instance, n: int, generator: torch.Generator) -> Tensor:
    local = surface_points(lambda x: object_sdf(inst.category, inst.params[None].expand(len(x), -1), x), n, 1,
                           generator)[0]
    return inst.scale * local @ inst.rotation + inst.translation


def _place(inst: Instance, placed: list[Instance], gap: float, generator: torch.Generator) -> None:
    """Rest ``inst`` on the floor, then slide it towards a random placed object until ``gap`` from all of them
    (or until it has reached that object's centre, when the path runs between its parts)."""
    surface = _surface(inst, 256, generator)
    inst.translation = inst.translation - torch.tensor([0.0, 0.0, surface[:, 2].min().item()])
    surface = surface - torch.tensor([0.0, 0.0, surface[:, 2].min().item()])
    if not placed:
        return
    angle = 2 * math.pi * torch.rand((), generator=generator).item()
    direction = torch.tensor([math.cos(angle), math.sin(angle), 0.0])
    anchor = placed[int(torch.randint(len(placed), (), generator=generator))].translation
    anchor = anchor * torch.tensor([1.0, 1.0, 0.0])
    shift = anchor + direction * 20.0
    for _ in range(60):
        free = torch.stack([p.sdf(surface + shift) for p in placed]).amin().item() - gap
        if free < 0.005 * inst.scale or (shift - anchor) @ direction < free:
            break
        shift = shift - direction * free
    inst.translation = inst.translation + shift


def make_scene(category: str, layout: Literal["z", "so3", "piles"], seed: int,
               config: SceneConfig | None = None) -> TabletopScene:
    """The scene of ``seed``: target instances of ``category`` in ``layout``, clutter, floor, partial scan."""
    config = config or SceneConfig()
    if category not in CATEGORIES[:2]:
        raise ValueError(f"scene category must be mug or chair, got {category!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    generator = torch.Generator().manual_seed(seed)
    tilts = torch.Generator().manual_seed(seed + 1_000_003)  # the SO(3) layout's rotations
    count = int(torch.randint(config.instances[0], config.instances[1] + 1, (), generator=generator))
    other = "chair" if category == "mug" else "mug"
    boxes = int(torch.randint(config.boxes[0], config.boxes[1] + 1, (), generator=generator))
    kinds = [category] * count + [other] * config.distractors + ["box"] * boxes
    order = torch.randperm(len(kinds), generator=generator).tolist()
    instances: list[Instance] = [None] * len(kinds)
    placed = []
    for i in order:
        kind = kinds[i]
        scale = config.scale[0] + (config.scale[1] - config.scale[0]) * torch.rand((), generator=generator).item()
        if kind == "box":
            scale = 1.0 + torch.rand((), generator=generator).item()
        rotation = random_rotation_about("z", 1, generator)[0]
        if layout == "so3" and kind == category:  # its own stream: the draws above and below stay the z layout's
            rotation = random_rotation(1, tilts)[0]
        inst = Instance(kind, sample_params(kind, 1, generator)[0], rotation, torch.zeros(3), scale)
        gap = 0.0 if layout == "piles" and kind == category else (
            config.gap[0] + (config.gap[1] - config.gap[0]) * torch.rand((), generator=generator).item())
        _place(inst, placed, gap, generator)
        instances[i] = inst
        placed.append(inst)
    points, owner = _scan(instances, config, generator)
    return TabletopScene(points, owner, instances, category)


def _scan(instances: list[Instance], config: SceneConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Noisy hits ``[n, 3]`` of ``config.views`` cameras and the object under each (−1: floor)."""
    centres = torch.stack([inst.translation for inst in instances])
    middle = centres.mean(0) * torch.tensor([1.0, 1.0, 0.0])
    extent = (centres[:, :2] - middle[:2]).norm(dim=-1).max().item() + 2.0
    floor_half = torch.tensor([extent + 1.0, extent + 1.0, 0.5])

    def sdfs(points: Tensor) -> Tensor:
        floor = (points - middle - torch.tensor([0.0, 0.0, -0.5])).abs() - floor_half
        floor = floor.clamp_min(0).norm(dim=-1) + floor.amax(-1).clamp_max(0)
        return torch.stack([floor] + [inst.sdf(points) for inst in instances])

    azimuth = 2 * math.pi * (torch.rand((), generator=generator) + torch.arange(config.views) / config.views)
    elevation = math.radians(45.0)
    distance = 2.2 * extent
    eyes = middle + distance * torch.stack([math.cos(elevation) * azimuth.cos(), math.cos(elevation) * azimuth.sin(),
                                            torch.full_like(azimuth, math.sin(elevation))], -1)
    fov = 2 * math.degrees(math.atan(extent / distance)) + 8.0
    origins, directions = pinhole_rays(eyes, middle.expand_as(eyes), fov, config.resolution)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    depth = sphere_trace(lambda p, _: sdfs(p).amin(0), origins, directions, far=3 * distance, steps=128)
    hit = depth.isfinite()
    points = origins[hit] + depth[hit, None] * directions[hit]
    owner = sdfs(points).argmin(0) - 1
    order = torch.randperm(len(points), generator=generator)
    floor = owner[order] < 0
    keep = torch.cat([order[~floor][:config.n_points], order[floor][:config.floor_points]])
    points = points[keep]
    return points + config.noise * torch.randn(points.shape, generator=generator), owner[keep]
