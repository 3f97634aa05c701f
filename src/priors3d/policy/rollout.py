"""Episodes: the task registry, batched rollouts of a policy (or the expert), and demonstrations.

Episode ``i`` of a setting is drawn from ``numpy.random.default_rng([seed, setting index, i])`` alone (the
scene transform, then the scene, then the camera noise), so every policy evaluated with one seed meets the
same scenes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from priors3d.runs import load_torch, save_torch

from .cloth import ClothCoverTask
from .scene import SETTINGS, DepthCamera, sample_transform
from .tasks import MAX_STEP, PickPlaceTask, PushTask, Task

TASKS: dict[str, type[Task]] = {"push": PushTask, "pick_place": PickPlaceTask, "cloth_cover": ClothCoverTask}

Actor = Callable[[dict[str, Tensor], list[Task]], tuple[Tensor, Tensor]]
"""``act(observations, tasks) -> (moves [B, 3], close [B] bool)``, the observations batched as by :func:`stack`."""


def make_task(name: str, setting: str, seed: int, episode: int) -> Task:
    """Episode ``episode`` of task ``name`` in ``setting`` (see the module docstring for the seeding)."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {name!r}")
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {list(SETTINGS)}, got {setting!r}")
    rng = np.random.default_rng([seed, SETTINGS.index(setting), episode])
    return TASKS[name](sample_transform(setting, rng), rng)


def stack(observations: list[dict[str, np.ndarray]]) -> dict[str, Tensor]:
    """Observations → ``{points [B, N, 3], labels [B, N], ee [B, 3], gripper [B]}`` (float32, labels int64)."""
    out = {k: torch.from_numpy(np.stack([o[k] for o in observations])) for k in observations[0]}
    return {k: v.long() if k == "labels" else v.float() for k, v in out.items()}


def expert_actor(observations: dict[str, Tensor], tasks: list[Task]) -> tuple[Tensor, Tensor]:
    """The scripted experts as an :data:`Actor` (they read the simulator's state, not the observations)."""
    moves, closes = zip(*(task.expert() for task in tasks))
    return torch.from_numpy(np.stack(moves)).float(), torch.tensor(closes)


def rollout(name: str, setting: str, act: Actor, episodes: int, seed: int, camera: DepthCamera,
            keep: int = 0) -> dict:
    """Run ``episodes`` episodes of task ``name`` in ``setting`` side by side, every step one batched ``act``.

    Returns ``{reward [E], success [E]}`` (numpy, the final state's) and, with ``keep`` > 0, ``frames``: the
    observations of episode 0 at ``keep`` evenly spaced steps (and the last), for pictures.
    """
    tasks = [make_task(name, setting, seed, i) for i in range(episodes)]
    horizon = tasks[0].horizon
    keep_at = set(np.linspace(0, horizon, keep).round().astype(int).tolist()) if keep else set()
    frames = []
    for t in range(horizon):
        observations = [task.observe(camera) for task in tasks]
        if t in keep_at:
            frames.append(observations[0] | {"step": t})
        moves, closes = act(stack(observations), tasks)
        for task, move, close in zip(tasks, moves.double().numpy(), closes.numpy()):
            task.step(move, bool(close))
    if horizon in keep_at:
        frames.append(tasks[0].observe(camera) | {"step": horizon})
    return {"reward": np.array([task.reward() for task in tasks]),
            "success": np.array([task.success() for task in tasks]), "frames": frames}


def collect_demos(name: str, episodes: int, seed: int, camera: DepthCamera, noise: float = 0.1,
                  flip: float = 0.03) -> dict:
    """Scripted demonstrations of task ``name`` in the original setting.

    The expert's label is recorded at every step; the executed move gets Gaussian noise of std
    ``noise · MAX_STEP`` per axis and the executed gripper command is flipped with probability ``flip``
    (DART-style noise injection: the demonstrations visit the states a cloned policy drifts into, a grasp
    closed too early among them, labelled with the expert's correction). Returns tensors over the ``M`` steps:
    ``points [M, N, 3]``, ``labels [M, N]``, ``ee [M, 3]``, ``gripper [M]``, ``move [M, 3]``, ``close [M]``,
    ``episode [M]``, and ``reward``, ``success`` per episode.
    """
    steps: list[dict] = []
    rewards, successes = [], []
    for i in range(episodes):
        task = make_task(name, "original", seed, i)
        for _ in range(task.horizon):
            observation = task.observe(camera)
            move, close = task.expert()
            steps.append(observation | {"move": move, "close": np.array(float(close)), "episode": np.array(i)})
            task.step(move + task.rng.normal(0.0, noise * MAX_STEP, 3), close != (task.rng.uniform() < flip))
        rewards.append(task.reward())
        successes.append(task.success())
    demos = stack(steps)
    demos["episode"] = demos["episode"].long()
    return demos | {"reward": torch.tensor(rewards), "success": torch.tensor(successes)}


DEMO_KEYS = ("points", "labels", "ee", "gripper", "move", "close", "episode", "reward", "success")


def save_demos(path: Path, demos: dict, meta: dict) -> Path:
    """Write ``demos`` (from :func:`collect_demos`) and ``meta`` (task, seed, camera) to ``path/demos.pt``."""
    return save_torch(Path(path) / "demos.pt", {"meta": meta, **demos})


def load_demos(path: Path) -> tuple[dict, dict]:
    """``(demos, meta)`` from a folder written by ``priors3d policy demos``."""
    file = Path(path) / "demos.pt"
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: expected a folder written by 'priors3d policy demos'")
    data = load_torch(file)
    missing = [k for k in ("meta", *DEMO_KEYS) if k not in data] if isinstance(data, dict) else ["meta"]
    if missing:
        raise ValueError(f"{file} is not a demonstrations file (missing {missing})")
    meta = data.pop("meta")
    if meta.get("task") not in TASKS:
        raise ValueError(f"{file} holds demonstrations of an unknown task {meta.get('task')!r}")
    return data, meta
