"""Analytic primitives (boxes, spheres, vertical cylinders) and their exact ray intersections.

A scene is a flat table of primitives: geometry (kind, centre, size, yaw about +z), appearance
(two colours, a texture, emission) and labels (semantic class, instance id). Intersections are
vectorised over rays and primitives at once: ``[R]`` rays against ``[P]`` primitives give ``[R, P]``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

BOX, SPHERE, CYLINDER = 0, 1, 2
PLAIN, STRIPES, CHECKER, NOISE = 0, 1, 2, 3


@dataclass
class ScenePart:
    """One primitive as the room builder describes it (plain Python numbers).

    ``size`` is the box half-extents, ``(r, r, r)`` for a sphere, ``(r, r, half_height)`` for a cylinder.
    ``period`` is the texture period in metres and ``axis`` the local axis stripes run across.
    """

    kind: int
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    semantic: int
    instance: int
    color: tuple[float, float, float]
    color_b: tuple[float, float, float] | None = None
    texture: int = PLAIN
    period: float = 0.5
    axis: int = 0
    yaw: float = 0.0
    emissive: bool = False


@dataclass
class Primitives:
    """``P`` primitives as tensors (see :class:`ScenePart` for the meaning of each column)."""

    kind: Tensor  # [P] int64
    center: Tensor  # [P, 3]
    size: Tensor  # [P, 3]
    yaw: Tensor  # [P]
    color: Tensor  # [P, 3]
    color_b: Tensor  # [P, 3]
    texture: Tensor  # [P] int64
    period: Tensor  # [P]
    axis: Tensor  # [P] int64
    emissive: Tensor  # [P] bool
    semantic: Tensor  # [P] int64
    instance: Tensor  # [P] int64

    @staticmethod
    def stack(parts: list[ScenePart]) -> "Primitives":
        if not parts:
            raise ValueError("a scene needs at least one primitive")
        dtypes = {"kind": torch.int64, "texture": torch.int64, "axis": torch.int64, "emissive": torch.bool,
                  "semantic": torch.int64, "instance": torch.int64}
        columns = {f.name: [getattr(p, f.name) for p in parts] for f in fields(Primitives)}
        columns["color_b"] = [p.color if p.color_b is None else p.color_b for p in parts]
        return Primitives(**{name: torch.tensor(values, dtype=dtypes.get(name, torch.float32))
                             for name, values in columns.items()})

    def __len__(self) -> int:
        return self.kind.shape[0]

    def select(self, mask: Tensor) -> "Primitives":
        """The primitives where ``mask`` ([P] bool) is true."""
        return Primitives(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})


def to_local(prims: Primitives, points: Tensor, index: Tensor | None = None) -> Tensor:
    """Points in each primitive's frame (centre at 0, yaw undone).

    Args:
        points: ``[R, 3]``; with ``index`` ``[R]`` each point goes to its own primitive and the
            result is ``[R, 3]``, without it every point goes to every primitive: ``[R, P, 3]``.
    """
    if index is not None:
        return rotate_z(points - prims.center[index], -prims.yaw[index])
    return rotate_z(points[:, None, :] - prims.center, -prims.yaw)


def rotate_z(vectors: Tensor, angle: Tensor) -> Tensor:
    """Rotate ``[..., 3]`` vectors by ``angle`` (broadcast over ``[...]``) about +z."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = vectors.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], dim=-1)


def local_rays(prims: Primitives, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """Rays ``[R, 3]`` in every primitive's frame: origins and directions ``[R, P, 3]`` (two matrix products)."""
    c, s = torch.cos(prims.yaw), torch.sin(prims.yaw)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    # local = rotate_z(x - centre, -yaw) = (x - centre) @ M with M = Rz(yaw) acting on column vectors.
    m = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1),
                     torch.stack([zero, zero, one], -1)], -2)  # [P, 3, 3]
    flat = m.permute(1, 0, 2).reshape(3, -1)  # [3, P * 3]
    shift = torch.einsum("pi,pij->pj", prims.center, m)
    o = (origins @ flat).view(-1, len(prims), 3) - shift
    return o, (dirs @ flat).view(-1, len(prims), 3)


def intersect(prims: Primitives, origins: Tensor, dirs: Tensor, t_min: float = 1e-4) -> Tensor:
    """Distance along each ray to each primitive's front surface.

    Args:
        origins, dirs: ``[R, 3]`` ray origins and unit directions.
    Returns:
        ``[R, P]`` hit distances ``> t_min``; ``inf`` where the ray misses.
    """
    o, d = local_rays(prims, origins, dirs)
    t = torch.full(o.shape[:2], torch.inf, dtype=origins.dtype)
    for kind, hit in ((BOX, _box), (SPHERE, _sphere), (CYLINDER, _cylinder)):
        cols = (prims.kind == kind).nonzero().squeeze(1)
        if cols.numel() == len(prims):
            return hit(o, d, prims.size, t_min)
        if cols.numel():
            t[:, cols] = hit(o[:, cols], d[:, cols], prims.size[cols], t_min)
    return t


def bounds(prims: Primitives) -> Tensor:
    """World axis-aligned bounding boxes ``[P, 2, 3]`` (min, max) of the primitives."""
    c, s = torch.cos(prims.yaw).abs(), torch.sin(prims.yaw).abs()
    hx, hy, hz = prims.size.unbind(-1)
    round_ = prims.kind != BOX  # spheres and cylinders are symmetric about z
    ex = torch.where(round_, hx, c * hx + s * hy)
    ey = torch.where(round_, hy, s * hx + c * hy)
    extent = torch.stack([ex, ey, hz], -1)
    return torch.stack([prims.center - extent, prims.center + extent], 1)


def ray_box_entry(origins: Tensor, dirs: Tensor, box: Tensor) -> Tensor:
    """Distance ``[R, G]`` at which rays ``[R, 3]`` enter axis-aligned boxes ``[G, 2, 3]``.

    0 when the origin is inside, inf when the ray misses.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t1 = (box[None, :, 0] - origins[:, None]) * inv[:, None]
    t2 = (box[None, :, 1] - origins[:, None]) * inv[:, None]
    t_near = torch.minimum(t1, t2).amax(-1).clamp_min(0)
    t_far = torch.maximum(t1, t2).amin(-1)
    return torch.where(t_near <= t_far, t_near, torch.inf)


class Grouped:
    """Primitives grouped by instance with bounding boxes, for culled ray casting.

    A ray is tested against a group's primitives only when it enters the group's bounding box before
    its nearest hit so far.
    """

    def __init__(self, prims: Primitives):
        self.members = [(prims.instance == i).nonzero().squeeze(1) for i in prims.instance.unique()]
        self.subsets = [prims.select(m) for m in self.members]
        self.boxes = torch.stack([torch.stack([b[:, 0].amin(0), b[:, 1].amax(0)]) for b in map(bounds, self.subsets)])

    def nearest(self, origins: Tensor, dirs: Tensor, t_max: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Nearest hit of rays ``[R, 3]`` closer than ``t_max`` ``[R]`` (default: any distance).

        Returns:
            distance ``[R]`` (inf where nothing is hit) and primitive index ``[R]`` (-1 where nothing is hit).
        """
        best = torch.full((origins.shape[0],), torch.inf) if t_max is None else t_max.clone()
        index = torch.full((origins.shape[0],), -1, dtype=torch.long)
        entry = ray_box_entry(origins, dirs, self.boxes)
        for g, (members, subset) in enumerate(zip(self.members, self.subsets)):
            rays = (entry[:, g] < best).nonzero().squeeze(1)
            if rays.numel() == 0:
                continue
            t, arg = intersect(subset, origins[rays], dirs[rays]).min(-1)
            closer = t < best[rays]
            best[rays[closer]] = t[closer]
            index[rays[closer]] = members[arg[closer]]
        return torch.where(index >= 0, best, torch.inf), index


def _box(o: Tensor, d: Tensor, half: Tensor, t_min: float) -> Tensor:
    """Slab test in the box frame: ``o, d`` ``[R, P, 3]``, ``half`` ``[P, 3]`` -> ``[R, P]``."""
    d = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t1, t2 = (-half - o) / d, (half - o) / d
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    ok = (t_near <= t_far) & (t_near > t_min)
    return torch.where(ok, t_near, torch.inf)


def _sphere(o: Tensor, d: Tensor, size: Tensor, t_min: float) -> Tensor:
    """Outer surface of spheres centred at 0: ``o, d`` ``[R, P, 3]`` (unit ``d``) -> ``[R, P]``."""
    radius = size[:, 0]
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - radius**2)
    t = -b - disc.clamp_min(0).sqrt()
    return torch.where((disc >= 0) & (t > t_min), t, torch.inf)


def _cylinder(o: Tensor, d: Tensor, size: Tensor, t_min: float) -> Tensor:
    """Closed vertical cylinders centred at 0 (radius ``size[:, 0]``, half height ``size[:, 2]``)."""
    radius, half_h = size[:, 0], size[:, 2]
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = o[..., 0] * d[..., 0] + o[..., 1] * d[..., 1]
    c = o[..., 0] ** 2 + o[..., 1] ** 2 - radius**2
    disc = b * b - a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / a.clamp_min(1e-12)
    z_side = o[..., 2] + t_side * d[..., 2]
    side_ok = (disc >= 0) & (a > 1e-12) & (t_side > t_min) & (z_side.abs() <= half_h)
    t = torch.where(side_ok, t_side, torch.inf)
    dz = torch.where(d[..., 2].abs() < 1e-12, torch.full_like(d[..., 2], 1e-12), d[..., 2])
    for cap in (half_h, -half_h):
        t_cap = (cap - o[..., 2]) / dz
        x, y = o[..., 0] + t_cap * d[..., 0], o[..., 1] + t_cap * d[..., 1]
        cap_ok = (t_cap > t_min) & (x * x + y * y <= radius**2)
        t = torch.minimum(t, torch.where(cap_ok, t_cap, torch.inf))
    return t


def normals(prims: Primitives, index: Tensor, local: Tensor) -> Tensor:
    """World-space unit normals ``[R, 3]`` at hit points ``local`` ``[R, 3]``.

    ``local`` is given in the frame of primitive ``index`` ``[R]``.
    """
    kind, size = prims.kind[index], prims.size[index]
    # Box: the face whose slab the point lies on (largest |p| / half-extent).
    axis = (local.abs() / size).argmax(-1, keepdim=True)
    box = torch.zeros_like(local).scatter(-1, axis, local.gather(-1, axis).sign())
    # Cylinder: a cap near |z| = half height, otherwise radial.
    on_cap = local[:, 2].abs() >= size[:, 2] - 1e-4
    radial = torch.cat([local[:, :2], torch.zeros_like(local[:, 2:])], -1)
    cap = torch.zeros_like(local)
    cap[:, 2] = local[:, 2].sign()
    cyl = torch.where(on_cap[:, None], cap, radial)
    n = torch.where((kind == BOX)[:, None], box, torch.where((kind == SPHERE)[:, None], local, cyl))
    n = torch.nn.functional.normalize(n, dim=-1)
    return rotate_z(n, prims.yaw[index])
