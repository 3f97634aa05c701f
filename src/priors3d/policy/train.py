"""Behaviour cloning of a policy on demonstrations (``policy train``), and its evaluation in the settings.

One engine step is one minibatch: the Huber loss of the predicted displacement against the expert's (to its
current waypoint), both divided by the cloud's RMS radius ``s`` (the loss is the same in any scene scale;
squared below :data:`HUBER`, linear above, so that the last centimetres before a grasp weigh as much as the
long moves), plus the binary cross-entropy of the gripper logit against the expert's open/close.
Single-step actions, no chunking. With ``augment``, every sample gets a random rotation about z, a uniform
scale in [1, 2] and a shift on the table (the baseline's augmentation; the VN policy needs none).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.runs import config_from_dict, open_run, save_figure, save_json
from priors3d.so3 import random_rotation_about
from priors3d.viz import training_curves
from priors3d.vn import canonicalize

from .model import build_policy
from .rollout import TASKS, load_demos, rollout
from .scene import SETTINGS, DepthCamera

KIND = "policy train"
HUBER = 0.05
"""Where the move loss turns from squared to linear, in units of the cloud's RMS radius (a few mm)."""


@dataclasses.dataclass(kw_only=True)
class PolicyTrainConfig(RunConfig):
    """Options of ``priors3d policy train``."""

    out: Path = Path("runs/policy")
    """Run directory (config.json, metrics.jsonl, checkpoint.pt, results.json, curves.png)."""
    demos: Path = Path("runs/policy-demos/push")
    """A folder written by ``priors3d policy demos``."""
    encoder: Literal["vn", "pointnet"] = "vn"
    augment: bool = False
    """Random z-rotation, scale in [1, 2] and shift of every training sample."""
    width: int | None = None
    """Channels: vectors for vn (default 32), scalars for pointnet (default 64)."""
    steps: int = 4000
    batch_size: int = 32
    lr: float = 1e-3
    log_every: int = 50
    """Write a metrics row every this many steps (and after the last)."""
    checkpoint_every: int = 500


class PolicyTrainer:
    """Behaviour cloning, one minibatch a step, drawn (and augmented) by the trainer's own generator."""

    def __init__(self, config: PolicyTrainConfig, model: torch.nn.Module, demos: dict, generator: torch.Generator):
        self.config, self.model, self.demos, self.generator = config, model, demos, generator
        self.optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, config.steps)

    def batch(self) -> dict[str, torch.Tensor]:
        index = torch.randint(len(self.demos["points"]), (self.config.batch_size,), generator=self.generator)
        batch = {k: self.demos[k][index] for k in ("points", "labels", "ee", "gripper", "move", "close")}
        if self.config.augment:
            b = len(index)
            rotation = random_rotation_about("z", b, self.generator)
            scale = 1.0 + torch.rand(b, 1, 1, generator=self.generator)
            shift = torch.zeros(b, 1, 3)
            shift[..., :2] = torch.rand(b, 1, 2, generator=self.generator) * 0.8 - 0.4
            linear = scale * rotation
            batch["points"] = batch["points"] @ linear + shift
            batch["ee"] = (batch["ee"][:, None] @ linear + shift)[:, 0]
            batch["move"] = (batch["move"][:, None] @ linear)[:, 0]
        return batch

    def step(self, i: int) -> dict[str, float]:
        batch = self.batch()
        self.model.train()
        move, logit = self.model(batch["points"], batch["labels"], batch["ee"], batch["gripper"])
        s = canonicalize(batch["points"])[2][:, 0]
        error = (move - batch["move"]) / s
        move_loss = F.smooth_l1_loss(error, torch.zeros_like(error), beta=HUBER, reduction="none").sum(-1).mean()
        grip_loss = F.binary_cross_entropy_with_logits(logit, batch["close"])
        loss = move_loss + grip_loss
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.schedule.step()
        return {"loss": loss.item(), "move_loss": move_loss.item(), "grip_loss": grip_loss.item()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "schedule": self.schedule.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])


def train_policy(config: PolicyTrainConfig) -> tuple[torch.nn.Module, dict]:
    """Clone the demonstrations in ``config.demos`` into a policy; returns it and the summary in ``results.json``."""
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {config.steps} and {config.batch_size}")
    engine.resolve_device(config.device)  # cpu only
    demos, meta = load_demos(config.demos)
    with engine.start(config, KIND) as run:
        model = build_policy(config.encoder, len(TASKS[meta["task"]].labels), config.width)
        trainer = PolicyTrainer(config, model, demos, run.generator)
        done = run.train(trainer, config.steps, log_every=config.log_every, desc=f"{meta['task']} {config.encoder}")
        save_figure(run.path("curves.png"), training_curves(run.read_metrics(), ["move_loss", "grip_loss"]))
        summary = {"task": meta["task"], "demos_meta": meta, "encoder": config.encoder, "augment": config.augment,
                   "demo_episodes": int(len(demos["reward"])), "demo_steps": int(len(demos["points"])),
                   "parameters": sum(p.numel() for p in model.parameters()), "train_time_s": done["train_time_s"],
                   "final_loss": run.read_metrics()[-1]["loss"]}
        save_json(run.path("results.json"), summary)
    return model, summary


def load_policy(path: Path) -> tuple[PolicyTrainConfig, dict, torch.nn.Module]:
    """``(config, demonstrations' meta (task, camera), model in eval mode)`` of a finished ``policy train`` run."""
    run = open_run(path, KIND, "policy eval")
    config = config_from_dict(PolicyTrainConfig, run.read_config()["config"], str(run.path("config.json")))
    if not run.path("results.json").is_file():
        raise FileNotFoundError(f"{run.path('results.json')} not found: the run has not finished training "
                                f"(continue it with priors3d policy train --resume)")
    meta = json.loads(run.path("results.json").read_text())["demos_meta"]
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"{run.path('checkpoint.pt')} not found: expected the trained policy's weights")
    model = build_policy(config.encoder, len(TASKS[meta["task"]].labels), config.width)
    model.load_state_dict(checkpoint["trainer"]["model"])
    return config, meta, model.eval()


def policy_actor(model: torch.nn.Module):
    """The policy as a :data:`~priors3d.policy.rollout.Actor`: its move, and close when the logit is positive."""
    @torch.no_grad()
    def act(observations, tasks):
        move, logit = model(observations["points"], observations["labels"], observations["ee"], observations["gripper"])
        return move, logit > 0
    return act


def evaluate_policy(model: torch.nn.Module, task: str, settings: tuple[str, ...] = SETTINGS, episodes: int = 50,
                    seed: int = 1000, camera: DepthCamera = DepthCamera(), keep: int = 0) -> dict:
    """Mean normalised reward and success rate of ``model`` on ``episodes`` episodes of ``task`` per setting.

    Returns ``{setting: {reward, success, episodes, seconds, frames}}`` (``frames``: episode 0's observations at
    ``keep`` steps, for :func:`~priors3d.policy.pictures.episode_strip`).
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"settings must be among {list(SETTINGS)}, got {unknown}")
    model.eval()
    results = {}
    for setting in settings:
        start = time.perf_counter()
        out = rollout(task, setting, policy_actor(model), episodes, seed, camera, keep)
        results[setting] = {"reward": float(out["reward"].mean()), "success": float(out["success"].mean()),
                            "episodes": episodes, "seconds": time.perf_counter() - start, "frames": out["frames"]}
    return results
