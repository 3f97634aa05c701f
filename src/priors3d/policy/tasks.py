"""Quasi-static tabletop tasks, their scripted experts, rewards and observations.

A task is simulated in its canonical frame (metres, z up, the table at z = 0) and seen through a
:class:`~priors3d.policy.scene.SceneTransform`: actions arrive in the world and are mapped back, the scene's
surface samples go out through the transform to the :class:`~priors3d.policy.scene.DepthCamera`. The
end-effector is a point with a gripper (open/closed) that moves at most ``MAX_STEP`` (canonical) per step.

- ``push``: push a puck (cylinder) onto a goal pad with a round pusher: the puck follows the pusher while
  the push lies within the contact's friction cone, else slides away along the contact normal.
- ``pick_place``: pick a cube and place it on a platform; a closed gripper within ``GRASP_RADIUS`` of the
  cube's centre takes it (suction-like), opening drops it onto whatever is under it (platform or table).
- ``cloth_cover`` (:mod:`priors3d.policy.cloth`): drag a mass-spring cloth over a box.

Each expert is closed-loop (it reads the state every step), so it recovers from the noise injected into
demonstrations.
"""

from __future__ import annotations

import math

import numpy as np

from .scene import DepthCamera, SceneTransform

MAX_STEP = 0.025
"""Longest end-effector move per step (canonical metres)."""
GRASP_RADIUS = 0.03
SAMPLE_DENSITY = 2.4e5
"""Surface samples per square metre (canonical). The camera's 1.2 cm pixels then hold ~35 samples of a surface
in the original scene and ~9 at the largest scale (2x). Sparser samples let occluded ones through the z-buffer
wherever a pixel of the occluder holds none, more so the larger the scene: the observation then changes with
the scene's scale (a goal pad seen through the puck on it, a box through the cloth)."""


def clip_step(delta: np.ndarray, limit: float = MAX_STEP) -> np.ndarray:
    """``delta [3]`` shortened to at most ``limit``."""
    norm = float(np.linalg.norm(delta))
    return delta if norm <= limit else delta * (limit / norm)


def sample_count(area: float) -> int:
    """Number of samples of a surface of ``area`` square metres at :data:`SAMPLE_DENSITY`."""
    return math.ceil(SAMPLE_DENSITY * area)


def box_surface(half: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Samples of an axis-aligned box's surface around the origin, uniform by area at :data:`SAMPLE_DENSITY`:
    points, normals ``[n, 3]``."""
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)
    n = sample_count(4 * areas.sum())
    face = rng.choice(6, n, p=areas / areas.sum())
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    points = rng.uniform(-1.0, 1.0, (n, 3)) * half
    normals = np.zeros((n, 3))
    rows = np.arange(n)
    points[rows, axis] = sign * half[axis]
    normals[rows, axis] = sign
    return points, normals


def cylinder_surface(radius: float, height: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a closed cylinder (axis z, base at z = 0), uniform by area at :data:`SAMPLE_DENSITY`: points,
    normals ``[n, 3]``."""
    side = 2 * math.pi * radius * height
    disk = math.pi * radius**2
    n = sample_count(side + 2 * disk)
    part = rng.choice(3, n, p=np.array([side, disk, disk]) / (side + 2 * disk))
    angle = rng.uniform(0, 2 * math.pi, n)
    r = np.where(part == 0, radius, radius * np.sqrt(rng.uniform(0, 1, n)))
    z = np.select([part == 0, part == 1], [rng.uniform(0, height, n), np.full(n, height)], 0.0)
    points = np.stack([r * np.cos(angle), r * np.sin(angle), z], -1)
    normals = np.zeros((n, 3))
    normals[part == 0, :2] = points[part == 0, :2] / radius
    normals[part == 1, 2], normals[part == 2, 2] = 1.0, -1.0
    return points, normals


def funnel(target: np.ndarray, position: np.ndarray, height: float) -> np.ndarray:
    """A waypoint above ``target [3]`` that sinks onto it as ``position [3]`` comes closer on the table: up to
    ``height`` above it, at most the horizontal distance. The experts' waypoints vary smoothly with the state,
    which makes them easier to clone than a switch between hovering and descending."""
    return target + np.array([0.0, 0.0, min(float(np.linalg.norm(position[:2] - target[:2])), height)])


def direction(angle: float) -> np.ndarray:
    """Unit vector on the table at ``angle`` (radians from +x)."""
    return np.array([math.cos(angle), math.sin(angle), 0.0])


class Task:
    """One episode of a task seen through ``transform``; ``rng`` draws the scene and the observation noise.

    Subclasses set ``name``, ``labels`` (part names, the index is a point's label), ``horizon`` and implement
    ``reset``, ``surfaces``, ``advance``, ``expert_step``, ``reward`` and ``success`` in canonical coordinates.
    """

    name: str
    labels: tuple[str, ...]
    horizon: int

    def __init__(self, transform: SceneTransform, rng: np.random.Generator):
        self.transform, self.rng = transform, rng
        self.ee = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08), rng.uniform(0.14, 0.18)])
        self.closed = False
        self.reset()

    # --- world interface -------------------------------------------------------------------------------------------
    def observe(self, camera: DepthCamera) -> dict[str, np.ndarray]:
        """``{points [n, 3], labels [n], ee [3], gripper []}`` in the world (gripper 1 = closed)."""
        points, normals, labels = self.surfaces()
        t = self.transform
        seen, seen_labels = camera.observe(t.points(points), t.normals(normals), labels, self.rng)
        return {"points": seen, "labels": seen_labels, "ee": t.points(self.ee), "gripper": np.array(float(self.closed))}

    def step(self, delta: np.ndarray, close: bool) -> None:
        """Move the end-effector by the world displacement ``delta [3]`` (clipped) and set the gripper."""
        move = clip_step(self.transform.canonical_vectors(np.asarray(delta, dtype=float)))
        self.advance(move, bool(close))

    def expert(self) -> tuple[np.ndarray, bool]:
        """The scripted expert's action in the world: the displacement ``[3]`` to its current waypoint (not yet
        clipped to one step) and gripper closed."""
        move, close = self.expert_step()
        return self.transform.vectors(move), close

    def toward(self, target: np.ndarray) -> np.ndarray:
        """Canonical displacement from the end-effector to the waypoint ``target [3]`` (``step`` clips the move)."""
        return target - self.ee

    # --- canonical simulation (subclasses) --------------------------------------------------------------------------
    def reset(self) -> None:
        raise NotImplementedError

    def surfaces(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical surface samples: points, normals ``[M, 3]`` (zero: two-sided), labels ``[M]``."""
        raise NotImplementedError

    def advance(self, move: np.ndarray, close: bool) -> None:
        raise NotImplementedError

    def expert_step(self) -> tuple[np.ndarray, bool]:
        raise NotImplementedError

    def reward(self) -> float:
        """Normalised reward in [0, 1] of the current state."""
        raise NotImplementedError

    def success(self) -> bool:
        raise NotImplementedError


class PushTask(Task):
    """Push a puck onto a goal pad lying on the table, the goal in front (+x, ±30°) of the puck."""

    name, labels, horizon = "push", ("puck", "goal"), 30
    radius, height, pusher = 0.04, 0.04, 0.01
    pad_radius = 0.06
    """Wider than the puck: a ring of the pad stays in view around a puck on the goal."""
    stick = math.cos(math.atan(0.5))
    """The puck sticks to the pusher when the push is within the friction cone (pusher-puck friction 0.5)."""

    def reset(self) -> None:
        rng = self.rng
        self.puck = np.array([rng.uniform(-0.15, -0.05), rng.uniform(-0.08, 0.08), 0.0])
        self.goal = self.puck + rng.uniform(0.15, 0.22) * direction(rng.uniform(-math.pi / 6, math.pi / 6))
        self.start_distance = float(np.linalg.norm(self.goal - self.puck))
        # the pusher starts at pushing height behind the puck (-x, ±45°): a planar task
        self.ee = self.puck - rng.uniform(0.08, 0.11) * direction(rng.uniform(-math.pi / 4, math.pi / 4))
        self.ee[2] = self.height / 2
        self.puck_samples = cylinder_surface(self.radius, self.height, rng)
        pad, _ = cylinder_surface(self.pad_radius, 0.002, rng)
        self.pad_points = pad[pad[:, 2] > 0.0015]  # its top
        self.pad_normals = np.tile([0.0, 0.0, 1.0], (len(self.pad_points), 1))

    def surfaces(self):
        points = np.concatenate([self.puck_samples[0] + self.puck, self.pad_points + self.goal])
        normals = np.concatenate([self.puck_samples[1], self.pad_normals])
        return points, normals, np.repeat([0, 1], [len(self.puck_samples[0]), len(self.pad_points)])

    def advance(self, move: np.ndarray, close: bool) -> None:
        self.closed = close
        contact = self.radius + self.pusher
        sub = move / 5  # sub-steps of at most 5 mm: the pusher cannot jump over the puck's rim
        for _ in range(5):
            self.ee = self.ee + sub
            self.ee[2] = max(self.ee[2], self.pusher)
            offset = self.puck[:2] - self.ee[:2]
            distance = float(np.linalg.norm(offset))
            if self.ee[2] >= self.height + self.pusher or distance >= contact:
                continue
            if distance < self.radius:  # over the lid: the pusher rests on it
                self.ee[2] = self.height + self.pusher
                continue
            normal = offset / distance
            if float(sub[:2] @ normal) > self.stick * float(np.linalg.norm(sub[:2])):
                self.puck[:2] += sub[:2]  # inside the friction cone: the puck sticks to the pusher
            else:  # outside it: the puck slides away along the contact normal
                self.puck[:2] = self.ee[:2] + normal * contact

    def expert_step(self) -> tuple[np.ndarray, bool]:
        to_goal = self.goal - self.puck
        if np.linalg.norm(to_goal) < 0.004:
            return np.zeros(3), False
        u = to_goal / np.linalg.norm(to_goal)
        behind = self.puck - (self.radius + self.pusher + 0.002) * u
        behind[2] = self.height / 2
        offset = self.ee - behind
        along = float(offset @ u)
        lateral = float(np.linalg.norm(offset[:2] - along * u[:2]))
        if lateral < 0.015 and -0.03 < along < 0.01:  # behind the puck: push it onto the goal
            return self.toward(self.ee + to_goal), False  # (sticking contact: the puck follows the pusher)
        approach = behind - 0.025 * u
        side = np.array([-u[1], u[0], 0.0]) * (1.0 if u[0] * offset[1] - u[1] * offset[0] >= 0 else -1.0)
        if along > -0.01:  # beside or in front of the puck: go around it, on the side the pusher is on
            return self.toward(self.puck + (self.radius + self.pusher + 0.02) * (side - u)
                               + np.array([0.0, 0.0, self.height / 2])), False
        return self.toward(approach), False

    def reward(self) -> float:
        return float(1.0 - min(np.linalg.norm(self.goal - self.puck) / self.start_distance, 1.0))

    def success(self) -> bool:
        return bool(np.linalg.norm(self.goal - self.puck) < 0.02)


class PickPlaceTask(Task):
    """Pick a cube and place it on a platform in front (+x, ±30°) of it."""

    name, labels, horizon = "pick_place", ("cube", "platform"), 35
    half, platform_half = 0.025, np.array([0.05, 0.05, 0.02])

    def reset(self) -> None:
        rng = self.rng
        self.cube = np.array([rng.uniform(-0.15, -0.05), rng.uniform(-0.08, 0.08), self.half])
        self.platform = self.cube + rng.uniform(0.16, 0.22) * direction(rng.uniform(-math.pi / 6, math.pi / 6))
        self.platform[2] = self.platform_half[2]
        self.target = self.platform + np.array([0.0, 0.0, self.platform_half[2] + self.half])
        self.start_distance = float(np.linalg.norm(self.target - self.cube))
        self.held: np.ndarray | None = None  # the cube's offset from the end-effector while grasped
        self.cube_samples = box_surface(np.full(3, self.half), rng)
        self.platform_samples = box_surface(self.platform_half, rng)

    def surfaces(self):
        points = np.concatenate([self.cube_samples[0] + self.cube, self.platform_samples[0] + self.platform])
        normals = np.concatenate([self.cube_samples[1], self.platform_samples[1]])
        return points, normals, np.repeat([0, 1], [len(self.cube_samples[0]), len(self.platform_samples[0])])

    def on_platform(self, xy: np.ndarray) -> bool:
        return bool((np.abs(xy - self.platform[:2]) < self.platform_half[:2]).all())

    def advance(self, move: np.ndarray, close: bool) -> None:
        self.ee = self.ee + move
        floor = self.half if self.held is None else self.half - self.held[2]
        self.ee[2] = max(self.ee[2], floor, 0.005)
        if close and self.held is None and np.linalg.norm(self.ee - self.cube) < GRASP_RADIUS:
            self.held = self.cube - self.ee  # a closed (suction-like) gripper takes the cube once within reach
        if not close and self.held is not None:  # released: the cube drops onto what is under it
            self.held = None
            below = 2 * self.platform_half[2] if self.on_platform(self.cube[:2]) else 0.0
            self.cube[2] = below + self.half
        if self.held is not None:
            self.cube = self.ee + self.held
        self.closed = close

    def expert_step(self) -> tuple[np.ndarray, bool]:
        if self.held is not None:  # carry the cube down a funnel onto its place on the platform, then release
            if np.linalg.norm(self.cube - self.target) > 0.012:
                return self.toward(funnel(self.target, self.cube, 0.05) - self.held), True
            return np.zeros(3), False
        if self.on_platform(self.cube[:2]) and self.cube[2] > self.half:  # placed: stay, open
            return np.zeros(3), False
        if np.linalg.norm(self.ee - self.cube) > 0.012:  # open, down a funnel onto the cube
            return self.toward(funnel(self.cube, self.ee, 0.05)), False
        return np.zeros(3), True

    def reward(self) -> float:
        return float(1.0 - min(np.linalg.norm(self.target - self.cube) / self.start_distance, 1.0))

    def success(self) -> bool:
        return bool(self.held is None and np.linalg.norm(self.target - self.cube) < 0.03)
