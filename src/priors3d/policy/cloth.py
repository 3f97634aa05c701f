"""The non-rigid task: drag a square mass-spring cloth over a box so that it covers the box's top.

The cloth is a 9 x 9 grid of particles with structural, shear and bending springs, simulated quasi-statically
by position-based dynamics: each sub-step lowers the free particles (gravity), moves the grasped ones with
the end-effector, then projects the springs to their rest lengths and the particles out of the table and the
box, with friction where they rest on a surface. A closed gripper within ``GRAB_RADIUS`` of a particle
grasps every particle within ``GRASP_WIDTH``; opening releases them.
"""

from __future__ import annotations

import math

import numpy as np

from .tasks import Task, box_surface, direction, funnel, sample_count

GRID, SIZE = 9, 0.22
THICKNESS = 0.003
GRAB_RADIUS, GRASP_WIDTH = 0.025, 0.045


def cloth_springs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``[S, 2]`` of an ``n x n`` grid's structural, shear and bending springs, and their grid steps."""
    index = np.arange(n * n).reshape(n, n)
    pairs, steps = [], []
    for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2)):
        a = index[max(0, -di):n - max(0, di), max(0, -dj):n - max(0, dj)]
        b = index[max(0, di):n + min(0, di) or None, max(0, dj):n + min(0, dj) or None]
        pairs.append(np.stack([a.ravel(), b.ravel()], 1))
        steps.append(np.full(a.size, math.hypot(di, dj)))
    return np.concatenate(pairs), np.concatenate(steps)


class ClothCoverTask(Task):
    """Cover a box with a cloth lying flat beside it (the box in front, +x ± 20°, of the cloth)."""

    name, labels, horizon = "cloth_cover", ("cloth", "box"), 45
    box_half = np.array([0.06, 0.06, 0.04])
    substeps, iterations, sag, friction = 3, 12, 0.004, 0.05

    def reset(self) -> None:
        rng = self.rng
        self.box = np.array([rng.uniform(-0.02, 0.06), rng.uniform(-0.06, 0.06), self.box_half[2]])
        self.u = u = direction(rng.uniform(-math.pi / 9, math.pi / 9))  # from the cloth toward the box
        v = np.array([-u[1], u[0], 0.0])
        spacing = SIZE / (GRID - 1)
        centre = self.box - (self.box_half[0] + 0.03 + SIZE / 2) * u
        i, j = np.meshgrid(np.arange(GRID) - (GRID - 1) / 2, np.arange(GRID) - (GRID - 1) / 2, indexing="ij")
        self.particles = centre + (i.reshape(-1, 1) * u + j.reshape(-1, 1) * v) * spacing
        self.particles[:, 2] = THICKNESS
        self.springs, steps = cloth_springs(GRID)
        self.rest = steps * spacing
        self.handle = (GRID - 1) // 2  # the middle particle of the far edge (row 0): where the expert grasps
        self.grasped = np.zeros(0, dtype=np.int64)
        self.offsets = np.zeros((0, 3))
        # observation samples: fixed bilinear positions in the grid's cells (two-sided), the box's faces
        n = sample_count(SIZE**2)  # one sample stands for both sides
        cells = rng.integers(0, GRID - 1, (n, 2))
        self.cell_corners = (cells[:, 0] * GRID + cells[:, 1])[:, None] + np.array([0, 1, GRID, GRID + 1])
        a, b = rng.uniform(0, 1, (2, n, 1))
        self.cell_weights = np.concatenate([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b], 1)
        self.box_samples = box_surface(self.box_half, rng)
        top = np.stack(np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 8)), -1).reshape(-1, 2) * 0.9
        self.top_points = self.box[:2] + top * self.box_half[:2]

    def surfaces(self):
        cloth = (self.particles[self.cell_corners] * self.cell_weights[..., None]).sum(1)
        points = np.concatenate([cloth, self.box_samples[0] + self.box])
        normals = np.concatenate([np.zeros_like(cloth), self.box_samples[1]])
        return points, normals, np.repeat([0, 1], [len(cloth), len(self.box_samples[0])])

    def advance(self, move: np.ndarray, close: bool) -> None:
        self.ee = self.ee + move
        self.ee[2] = max(self.ee[2], THICKNESS)
        if close and not len(self.grasped):  # a closed gripper takes the cloth once a particle is within reach
            distance = np.linalg.norm(self.particles - self.ee, axis=1)
            if distance.min() < GRAB_RADIUS:
                self.grasped = np.flatnonzero(distance < GRASP_WIDTH)
                self.offsets = self.particles[self.grasped] - (self.ee - move)
        if not close:
            self.grasped, self.offsets = np.zeros(0, dtype=np.int64), np.zeros((0, 3))
        self.closed = close
        start = self.ee - move
        for k in range(1, self.substeps + 1):
            self.relax(start + move * (k / self.substeps))

    def relax(self, ee: np.ndarray) -> None:
        """One quasi-static sub-step with the grasp at ``ee``."""
        x = self.particles
        free = np.ones(len(x), dtype=bool)
        free[self.grasped] = False
        x[free, 2] -= self.sag
        x[self.grasped] = ee + self.offsets
        self.collide(x, free)
        a, b = self.springs[:, 0], self.springs[:, 1]
        wa, wb = free[a].astype(float), free[b].astype(float)
        share = np.where(wa + wb > 0, 1.0 / np.maximum(wa + wb, 1.0), 0.0)
        n = len(x)
        count = np.maximum(np.bincount(a, wa, n) + np.bincount(b, wb, n), 1.0) / 1.5  # over-relaxed Jacobi
        for _ in range(self.iterations):
            d = x[b] - x[a]
            length = np.sqrt((d * d).sum(1))
            correction = d * ((length - self.rest) / np.maximum(length, 1e-9) * share)[:, None]
            grip = np.where((x[:, 2] <= THICKNESS + 1e-6) | self.on_box(x), self.friction, 1.0)  # resting: friction
            for axis in range(3):
                update = (np.bincount(a, correction[:, axis] * wa, n) - np.bincount(b, correction[:, axis] * wb, n))
                x[:, axis] += update / count * (grip if axis < 2 else 1.0)
            self.collide(x, free)

    def on_box(self, x: np.ndarray) -> np.ndarray:
        """Which particles ``[P, 3]`` rest on the box's top."""
        inside = (np.abs(x[:, :2] - self.box[:2]) < self.box_half[:2]).all(1)
        return inside & (np.abs(x[:, 2] - 2 * self.box_half[2] - THICKNESS) < 1e-6)

    def collide(self, x: np.ndarray, free: np.ndarray) -> None:
        """Project free particles out of the table and the box (thickened by the cloth), in place."""
        x[free, 2] = np.maximum(x[free, 2], THICKNESS)
        half = self.box_half + THICKNESS
        local = x - np.array([*self.box[:2], self.box_half[2]])
        depth = half - np.abs(local)
        inside = free & (depth > 0).all(1)
        if inside.any():
            axis = depth[inside].argmin(1)  # out through the nearest face
            rows = np.flatnonzero(inside)
            x[rows, axis] += np.sign(local[rows, axis]) * depth[rows, axis]

    def expert_step(self) -> tuple[np.ndarray, bool]:
        u, top = self.u, 2 * self.box_half[2]
        if len(self.grasped):  # carry the edge over the box, lower it 2 cm inside the far rim of the top
            drop = self.box + (self.box_half[0] - 0.02) * u
            drop[2] = top + 0.02
            if np.linalg.norm(self.ee - drop) > 0.015:
                return self.toward(funnel(drop, self.ee, 0.08)), True
            return np.zeros(3), False
        handle = self.particles[self.handle]
        if float((handle - self.box) @ u) > 0:  # the edge lies beyond the box's centre: done, move up
            return self.toward(np.array([*self.ee[:2], 0.2])), False
        if np.linalg.norm(self.ee - handle) > 0.012:
            return self.toward(funnel(handle, self.ee, 0.05)), False
        return np.zeros(3), True

    def coverage(self) -> float:
        """Fraction of 64 points on the box's top under a cloth cell draped on it (all four corners at most 3 cm
        below the top, so cells bending over the rim count)."""
        top = 2 * self.box_half[2]
        cells = np.arange(GRID * GRID).reshape(GRID, GRID)[:-1, :-1].ravel()
        quads = np.stack([cells, cells + 1, cells + GRID + 1, cells + GRID], 1)
        quads = quads[(self.particles[quads, 2] > top - 0.03).all(1)]
        if not len(quads):
            return 0.0
        covered = np.zeros(len(self.top_points), dtype=bool)
        for tri in (quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]):
            p = self.particles[tri][..., :2]  # [T, 3, 2]
            v0, v1 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
            w = self.top_points[:, None] - p[None, :, 0]  # [Q, T, 2]
            den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
            den = np.where(np.abs(den) < 1e-12, 1e-12, den)
            s = (w[..., 0] * v1[:, 1] - w[..., 1] * v1[:, 0]) / den
            t = (v0[:, 0] * w[..., 1] - v0[:, 1] * w[..., 0]) / den
            covered |= ((s >= 0) & (t >= 0) & (s + t <= 1)).any(1)
        return float(covered.mean())

    def reward(self) -> float:
        return self.coverage()

    def success(self) -> bool:
        return self.coverage() >= 0.75
