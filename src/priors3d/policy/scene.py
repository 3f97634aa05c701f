"""The evaluation settings (how a whole scene is transformed) and the depth camera that observes it.

Every task is simulated in its own canonical frame (z up, the table at z = 0); the world the policy sees is
the image of that frame under an affine map ``x ↦ x A + t`` (row vectors) that keeps z vertical: a rotation
about z, a uniform or per-axis scale, a shift on the table. Object, goal, cloth and the end-effector's start
move together, as in EquivAct's settings, so the task stays the same task. The camera does not move with the
scene: what it sees (self-occlusion, noise) changes with the transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SETTINGS = ("original", "r_su", "r_sn", "r_sn_p")
"""Original; R+Su (rotation about z, uniform scale up to 2x); R+Sn (rotation, per-axis scale, aspect up to
1.33); R+Sn+P (also a new position on the table)."""


@dataclass(frozen=True)
class SceneTransform:
    """World = canonical ``@ linear + shift``; ``linear [3, 3]`` (row vectors) keeps the z axis vertical."""

    linear: np.ndarray
    shift: np.ndarray

    def points(self, x: np.ndarray) -> np.ndarray:
        """Canonical points ``[..., 3]`` → world."""
        return x @ self.linear + self.shift

    def vectors(self, v: np.ndarray) -> np.ndarray:
        """Canonical displacements ``[..., 3]`` → world (no shift)."""
        return v @ self.linear

    def canonical_vectors(self, v: np.ndarray) -> np.ndarray:
        """World displacements ``[..., 3]`` → canonical."""
        return v @ np.linalg.inv(self.linear)

    def normals(self, n: np.ndarray) -> np.ndarray:
        """Canonical unit normals ``[..., 3]`` → world unit normals (inverse transpose); zero stays zero."""
        w = n @ np.linalg.inv(self.linear).T
        return w / np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), 1e-12)


def identity_transform() -> SceneTransform:
    return SceneTransform(np.eye(3), np.zeros(3))


def sample_transform(setting: str, rng: np.random.Generator) -> SceneTransform:
    """The scene transform of one episode in ``setting`` (one of :data:`SETTINGS`).

    - original: identity;
    - r_su: rotation about z by θ ~ U[0, 2π), uniform scale s ~ U[1, 2];
    - r_sn: θ as above, per-axis scales ``u·a_i`` with u ~ U[1, 1.5] and a_x, a_y, a_z ~ U[1, 1.33] (largest /
      smallest axis at most 1.33, overall up to 2x), applied along the canonical axes before the rotation;
    - r_sn_p: r_sn, then a shift (x, y) ~ U[-0.4, 0.4]² on the table (several object sizes).
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {list(SETTINGS)}, got {setting!r}")
    if setting == "original":
        return identity_transform()
    theta = rng.uniform(0.0, 2 * math.pi)
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    if setting == "r_su":
        scales = np.full(3, rng.uniform(1.0, 2.0))
    else:
        scales = rng.uniform(1.0, 1.5) * rng.uniform(1.0, 1.33, 3)
    shift = np.zeros(3)
    if setting == "r_sn_p":
        shift[:2] = rng.uniform(-0.4, 0.4, 2)
    return SceneTransform(np.diag(scales) @ rotation, shift)


@dataclass(frozen=True)
class DepthCamera:
    """A pinhole depth camera ``height`` above the table centre, looking down.

    A surface sample is seen when it faces the camera (normal · (camera − point) > 0; two-sided samples have a
    zero normal) and is the nearest, within ``tolerance``, of those falling in its pixel (a z-buffer; pixels
    cover ``pixel`` x ``pixel`` on the table). ``n_points`` of the seen samples are drawn (with replacement when
    fewer are seen) and get Gaussian noise of std ``noise`` (world units).
    """

    height: float = 3.0
    pixel: float = 0.012
    tolerance: float = 0.01
    noise: float = 0.002
    n_points: int = 128

    def observe(self, points: np.ndarray, normals: np.ndarray, labels: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """World samples ``points, normals [M, 3]``, ``labels [M]`` → observed ``points [n, 3]``, ``labels [n]``."""
        eye = np.array([0.0, 0.0, self.height])
        facing = ((eye - points) * normals).sum(-1) > 0
        two_sided = ~normals.any(-1)
        depth = self.height - points[:, 2]
        if (depth <= 0).any():
            raise ValueError(f"a scene point is at or above the camera (height {self.height})")
        ij = np.floor(points[:, :2] / depth[:, None] * (self.height / self.pixel)).astype(np.int64)
        ij -= ij.min(0)
        _, pixel = np.unique(ij[:, 0] * (ij[:, 1].max() + 1) + ij[:, 1], return_inverse=True)
        nearest = np.full(pixel.max() + 1, np.inf)
        np.minimum.at(nearest, pixel, np.where(facing | two_sided, depth, np.inf))
        seen = np.flatnonzero((facing | two_sided) & (depth <= nearest[pixel] + self.tolerance))
        pick = rng.choice(seen, self.n_points, replace=len(seen) < self.n_points)
        return points[pick] + rng.normal(0.0, self.noise, (self.n_points, 3)), labels[pick]
