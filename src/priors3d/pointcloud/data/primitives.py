"""Parametric solids with exact area, area-weighted surface sampling and an exact inside test.

A primitive lives in its own frame (axis along local z where it has one). A :class:`Part` places a
primitive in the object with a rotation and a translation acting on row vectors,
``world = local @ rotation + translation``, and gives it a part id. A :class:`Shape` is the union of
its parts followed by a normalisation ``(world - center) / scale``; its surface samples lie on the
boundary of the union, so that ``contains`` and ``sample_surface`` describe the same solid: a
sample is dropped when it lies inside another part or on a face pressed against one, and faces
flush with another part's face are kept once (by the part listed first).

Everything here is NumPy float64: shapes are generated once and cached, and the small arrays make
NumPy's low per-call cost matter more than vectorising across shapes. ``Shape.contains`` also
accepts torch tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Protocol

import numpy as np
import torch

# Length of the steps along a sample's normal (raw units, roughly metres) that decide whether the
# sample is hidden by another part (see Shape.sample_raw); robust to rounding on shared faces.
HIDDEN_STEP = 1e-6


class Primitive(Protocol):
    @property
    def area(self) -> float: ...

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` area-uniform surface points and their outward unit normals, both ``[n, 3]``."""

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``[M, 3] -> [M]`` bool: inside the closed solid (boundary counts as inside)."""


def _disk(n: int, radius: float, z: float, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` points uniform on the disk of ``radius`` around the z axis at height ``z``."""
    r = radius * np.sqrt(rng.random(n))
    phi = rng.random(n) * 2 * np.pi
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.full(n, z)], axis=1)


def _rejection(n: int, rng: np.random.Generator, propose, accept_rate: float):
    """Draw from ``propose(m, rng) -> (points, normals, keep)`` until ``n`` samples are kept."""
    points, normals, have = [np.empty((0, 3))], [np.empty((0, 3))], 0
    while have < n:
        m = int((n - have) / accept_rate * 1.1) + 8
        p, q, keep = propose(m, rng)
        points.append(p[keep])
        normals.append(q[keep])
        have += int(keep.sum())
    return np.concatenate(points)[:n], np.concatenate(normals)[:n]


@dataclasses.dataclass(frozen=True)
class Box:
    """Axis-aligned box ``|x| <= half[0], |y| <= half[1], |z| <= half[2]``."""

    half: tuple[float, float, float]

    def __post_init__(self):
        if len(self.half) != 3 or min(self.half) <= 0:
            raise ValueError(f"Box.half must be three positive half-extents, got {self.half}")

    @property
    def face_areas(self) -> np.ndarray:
        """Area of one face normal to x, y, z."""
        hx, hy, hz = self.half
        return 4 * np.array([hy * hz, hx * hz, hx * hy])

    @property
    def area(self) -> float:
        return float(2 * self.face_areas.sum())

    def sample(self, n, rng):
        half = np.asarray(self.half)
        areas = np.repeat(self.face_areas, 2)  # faces -x, +x, -y, +y, -z, +z
        face = np.repeat(np.arange(6), rng.multinomial(n, areas / areas.sum()))
        axis, sign = face // 2, np.where(face % 2 == 1, 1.0, -1.0)
        points = (rng.random((n, 3)) * 2 - 1) * half
        rows = np.arange(n)
        points[rows, axis] = sign * half[axis]
        normals = np.zeros((n, 3))
        normals[rows, axis] = sign
        return points, normals

    def contains(self, points):
        return np.all(np.abs(points) <= np.asarray(self.half), axis=1)


@dataclasses.dataclass(frozen=True)
class Frustum:
    """Closed truncated cone along z: radius ``r0`` at ``z = -half_height``, ``r1`` at ``+half_height``.

    ``r0 == r1`` is a cylinder, ``r1 == 0`` a cone.
    """

    r0: float
    r1: float
    half_height: float

    def __post_init__(self):
        if self.r0 < 0 or self.r1 < 0 or max(self.r0, self.r1) <= 0 or self.half_height <= 0:
            raise ValueError(f"Frustum needs radii >= 0 (one > 0) and half_height > 0, got {self}")

    @property
    def part_areas(self) -> np.ndarray:
        """Areas of the side, the bottom cap and the top cap."""
        slant = math.hypot(self.r0 - self.r1, 2 * self.half_height)
        return np.array([np.pi * (self.r0 + self.r1) * slant, np.pi * self.r0**2, np.pi * self.r1**2])

    @property
    def area(self) -> float:
        return float(self.part_areas.sum())

    def sample(self, n, rng):
        r0, r1, h = self.r0, self.r1, self.half_height
        m, m0, m1 = rng.multinomial(n, self.part_areas / self.part_areas.sum())
        # The side's area density along z grows with the radius: invert the CDF of r^2.
        u = rng.random(m)
        t = u if abs(r1 - r0) < 1e-12 * max(r0, r1) else (np.sqrt(r0**2 + u * (r1**2 - r0**2)) - r0) / (r1 - r0)
        radius = r0 + (r1 - r0) * t
        phi = rng.random(m) * 2 * np.pi
        c, s = np.cos(phi), np.sin(phi)
        side = np.stack([radius * c, radius * s, -h + 2 * h * t], axis=1)
        side_normals = np.stack([2 * h * c, 2 * h * s, np.full(m, r0 - r1)], axis=1)
        side_normals /= np.linalg.norm(side_normals, axis=1, keepdims=True)
        points = np.concatenate([side, _disk(m0, r0, -h, rng), _disk(m1, r1, h, rng)])
        normals = np.concatenate([side_normals, np.tile([0.0, 0, -1], (m0, 1)), np.tile([0.0, 0, 1], (m1, 1))])
        return points, normals

    def contains(self, points):
        z, h = points[:, 2], self.half_height
        rho = np.hypot(points[:, 0], points[:, 1])
        return (np.abs(z) <= h) & (rho <= self.r0 + (self.r1 - self.r0) * (z + h) / (2 * h))


def cylinder(radius: float, half_height: float) -> Frustum:
    """A closed cylinder along z."""
    return Frustum(radius, radius, half_height)


def _sphere_quadrature(n_theta: int = 32, n_phi: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``[n_theta, n_phi, 3]`` and weights on the unit sphere: Gauss-Legendre in cos(theta),
    midpoint rule in phi (exact for smooth periodic integrands to high order)."""
    cos_t, w = np.polynomial.legendre.leggauss(n_theta)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    sin_t = np.sqrt(1 - cos_t**2)[:, None]
    nodes = np.stack(np.broadcast_arrays(sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t[:, None]), axis=-1)
    return nodes, np.broadcast_to(w[:, None] * 2 * np.pi / n_phi, nodes.shape[:2])


_SPHERE_NODES, _SPHERE_WEIGHTS = _sphere_quadrature()


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """``(x/a)^2 + (y/b)^2 + (z/c)^2 <= 1`` with ``radii = (a, b, c)``."""

    radii: tuple[float, float, float]

    def __post_init__(self):
        if len(self.radii) != 3 or min(self.radii) <= 0:
            raise ValueError(f"Ellipsoid.radii must be three positive radii, got {self.radii}")

    @functools.cached_property
    def area(self) -> float:
        # The map u -> radii * u from the unit sphere scales area by abc * |u / radii|.
        radii = np.asarray(self.radii)
        stretch = np.linalg.norm(_SPHERE_NODES / radii, axis=-1)
        return float(np.prod(radii) * (_SPHERE_WEIGHTS * stretch).sum())

    def sample(self, n, rng):
        radii = np.asarray(self.radii)

        def propose(m, rng):
            u = rng.standard_normal((m, 3))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            normals = u / radii  # the stretch of the map u -> radii * u is |u / radii|
            keep = rng.random(m) < np.linalg.norm(normals, axis=1) * radii.min()
            return u * radii, normals / np.linalg.norm(normals, axis=1, keepdims=True), keep

        return _rejection(n, rng, propose, accept_rate=radii.min() / radii.max())

    def contains(self, points):
        return ((points / np.asarray(self.radii)) ** 2).sum(axis=1) <= 1


@dataclasses.dataclass(frozen=True)
class Torus:
    """Ring around the z axis: tube of radius ``minor`` whose centre circle has radius ``major``."""

    major: float
    minor: float

    def __post_init__(self):
        if not 0 < self.minor < self.major:
            raise ValueError(f"Torus needs 0 < minor < major, got {self}")

    @property
    def area(self) -> float:
        return 4 * np.pi**2 * self.major * self.minor

    def sample(self, n, rng):
        big, small = self.major, self.minor

        def propose(m, rng):
            theta = rng.random(m) * 2 * np.pi
            phi = rng.random(m) * 2 * np.pi
            # The area element grows with the distance from the axis, big + small cos(theta).
            keep = rng.random(m) * (big + small) < big + small * np.cos(theta)
            normals = np.stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), np.sin(theta)], 1)
            centre = np.stack([big * np.cos(phi), big * np.sin(phi), np.zeros(m)], axis=1)
            return centre + small * normals, normals, keep

        return _rejection(n, rng, propose, accept_rate=(big - small) / (big + small))

    def contains(self, points):
        rho = np.hypot(points[:, 0], points[:, 1])
        return (rho - self.major) ** 2 + points[:, 2] ** 2 <= self.minor**2


def frame_from_z(direction) -> np.ndarray:
    """``[3, 3]`` rotation taking the local z axis to unit ``direction`` (``e_z @ R = direction``)."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    u = np.array([0.0, d[2], -d[1]]) if abs(d[0]) < 0.9 else np.array([-d[2], 0.0, d[0]])  # (e_x or e_y) x d
    u /= math.sqrt(u @ u)
    v = np.array([d[1] * u[2] - d[2] * u[1], d[2] * u[0] - d[0] * u[2], d[0] * u[1] - d[1] * u[0]])  # d x u
    return np.stack([u, v, d])


def rotation_about(axis: str, angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` (radians, right-handed) about ``"x"``, ``"y"`` or ``"z"``,
    for row vectors (``p @ R``)."""
    i = "xyz".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    c, s = math.cos(angle), math.sin(angle)
    R = np.eye(3)
    R[j, j], R[j, k], R[k, j], R[k, k] = c, s, -s, c
    return R


@dataclasses.dataclass(frozen=True, eq=False)
class Part:
    """A primitive placed by ``world = local @ rotation + translation``, labelled ``part``."""

    primitive: Primitive
    part: int
    rotation: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``[M, 3]`` world points -> ``[M]`` bool: inside the placed primitive."""
        return self.primitive.contains((points - self.translation) @ self.rotation.T)


@dataclasses.dataclass(frozen=True, eq=False)
class Shape:
    """A union of parts, normalised by ``(world - center) / scale``."""

    parts: tuple[Part, ...]
    center: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0

    def __post_init__(self):
        if not self.parts:
            raise ValueError("a Shape needs at least one Part")

    def sample_surface(self, n: int, rng: np.random.Generator | int | torch.Generator):
        """Area-uniform samples of the union's boundary, in normalised coordinates.

        Returns points ``[n, 3]``, outward unit normals ``[n, 3]`` and part ids ``[n]`` (int64).
        """
        points, normals, parts = self.sample_raw(n, as_numpy_rng(rng))
        return (points - self.center) / self.scale, normals, parts

    def sample_raw(self, n: int, rng: np.random.Generator):
        """:meth:`sample_surface` before normalisation."""
        areas = np.array([p.primitive.area for p in self.parts])  # [P], hidden portions included
        part_ids = np.array([p.part for p in self.parts])
        points, normals, parts, have = [], [], [], 0
        visible = 1.0
        while have < n:
            m = int((n - have) / visible * 1.1) + 16
            counts = rng.multinomial(m, areas / areas.sum())
            ends = np.cumsum(counts)
            p, q = np.empty((m, 3)), np.empty((m, 3))
            hidden = np.zeros(m, dtype=bool)
            for part, start, end in zip(self.parts, ends - counts, ends):
                local_p, local_q = part.primitive.sample(end - start, rng)
                p[start:end] = local_p @ part.rotation + part.translation
                q[start:end] = local_q @ part.rotation
            outward, inward = p + HIDDEN_STEP * q, p - HIDDEN_STEP * q
            for part, start, end in zip(self.parts, ends - counts, ends):
                # Inside after a step outwards: inside the union or on a face pressed against this part.
                covered = part.contains(outward)
                # Inside after a step inwards as well: on a face flush with one of this part's faces,
                # which the part listed first keeps so that it is sampled once.
                covered[end:] |= part.contains(inward[end:])
                covered[start:end] = False
                hidden |= covered
            keep = rng.permutation(np.flatnonzero(~hidden))
            visible = max(len(keep) / m, 0.05)
            points.append(p[keep])
            normals.append(q[keep])
            parts.append(np.repeat(part_ids, counts)[keep])
            have += len(keep)
        return np.concatenate(points)[:n], np.concatenate(normals)[:n], np.concatenate(parts)[:n].astype(np.int64)

    def contains(self, points):
        """Exact inside test of the union for normalised points ``[..., 3]`` (numpy or torch) -> bool ``[...]``."""
        is_torch = isinstance(points, torch.Tensor)
        array = points.detach().cpu().double().numpy() if is_torch else np.asarray(points, dtype=float)
        if array.shape[-1] != 3:
            raise ValueError(f"contains expects points [..., 3], got shape {tuple(array.shape)}")
        flat = array.reshape(-1, 3) * self.scale + self.center
        inside = np.zeros(len(flat), dtype=bool)
        for part in self.parts:
            inside |= part.contains(flat)
        inside = inside.reshape(array.shape[:-1])
        return torch.from_numpy(inside).to(points.device) if is_torch else inside

    def normalized(self, rng: np.random.Generator | int, n_reference: int = 2048) -> Shape:
        """This shape normalised by :meth:`normalized_by` on ``n_reference`` raw surface samples."""
        return self.normalized_by(self.sample_raw(n_reference, as_numpy_rng(rng))[0])

    def normalized_by(self, raw_points: np.ndarray) -> Shape:
        """Centred on the bounding-box centre of ``raw_points [M, 3]`` and scaled so that their
        farthest one is at distance 1, as the public data sets normalise their point clouds."""
        center = (raw_points.min(axis=0) + raw_points.max(axis=0)) / 2
        scale = float(np.linalg.norm(raw_points - center, axis=1).max())
        return dataclasses.replace(self, center=center, scale=scale)


def as_numpy_rng(rng: np.random.Generator | int | torch.Generator) -> np.random.Generator:
    """A NumPy generator from a NumPy generator, an int seed or a ``torch.Generator``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (), generator=rng)))
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise ValueError(f"expected a numpy Generator, an int seed or a torch.Generator, got {type(rng).__name__}")
