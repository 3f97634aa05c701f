"""``priors3d policy demos|train|eval``: EquivAct-style policies on the simulated tabletop tasks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import tyro

from priors3d.engine import CommandConfig
from priors3d.policy.pictures import episode_strip
from priors3d.policy.rollout import TASKS, collect_demos, save_demos
from priors3d.policy.scene import SETTINGS, DepthCamera
from priors3d.policy.train import PolicyTrainConfig, evaluate_policy, load_policy, train_policy
from priors3d.runs import save_figure, save_json


@dataclasses.dataclass(kw_only=True)
class DemosConfig(CommandConfig):
    """Options of ``priors3d policy demos``."""

    task: Literal["push", "pick_place", "cloth_cover"] = "push"
    out: Path = Path("runs/policy-demos/push")
    """Folder for demos.pt and demos.json."""
    episodes: int = 20
    seed: int = 0
    noise: float = 0.1
    """Std of the noise added to the executed moves, in units of the longest move (labels stay clean)."""
    flip: float = 0.03
    """Probability of flipping the executed gripper command at a step (labels stay clean)."""
    n_points: int = 128
    """Points per observed cloud."""
    overwrite: bool = False


def demos(config: DemosConfig) -> dict:
    """Record scripted demonstrations of a task in the original setting."""
    if config.episodes < 1:
        raise ValueError(f"episodes must be positive, got {config.episodes}")
    if (config.out / "demos.pt").exists() and not config.overwrite:
        raise ValueError(f"{config.out / 'demos.pt'} exists; pass --overwrite to replace it")
    camera = DepthCamera(n_points=config.n_points)
    recorded = collect_demos(config.task, config.episodes, config.seed, camera, config.noise, config.flip)
    meta = {"task": config.task, "seed": config.seed, "noise": config.noise, "flip": config.flip,
            "camera": dataclasses.asdict(camera)}
    save_demos(config.out, recorded, meta)
    summary = meta | {"episodes": config.episodes, "steps": len(recorded["points"]),
                      "success": recorded["success"].float().mean().item(), "reward": recorded["reward"].mean().item()}
    save_json(config.out / "demos.json", summary)
    print(f"{config.task}: {config.episodes} demonstrations, {summary['steps']} steps, expert success "
          f"{summary['success']:.0%} under the injected noise, in {config.out}")
    return summary


def train(config: PolicyTrainConfig) -> dict:
    """Behaviour-clone a policy (VN or PointNet encoder) on demonstrations."""
    summary = train_policy(config)[1]
    print(f"{summary['task']} {config.encoder}{' +aug' if config.augment else ''}: final loss "
          f"{summary['final_loss']:.4f} after {summary['train_time_s']:.0f} s, in {config.out}")
    return summary


@dataclasses.dataclass(kw_only=True)
class EvalConfig(CommandConfig):
    """Options of ``priors3d policy eval``."""

    run: tyro.conf.Positional[Path] = Path("runs/policy")
    """A run directory written by ``priors3d policy train``."""
    settings: tuple[Literal["original", "r_su", "r_sn", "r_sn_p"], ...] = SETTINGS
    episodes: int = 50
    seed: int = 1000
    """Scenes of the evaluation (the demonstrations used seed 0 in the original setting)."""


def evaluate(config: EvalConfig) -> dict:
    """Mean normalised reward and success rate per setting (``<run>/eval/results.json``, one episode picture each)."""
    if config.episodes < 1:
        raise ValueError(f"episodes must be positive, got {config.episodes}")
    _, meta, model = load_policy(config.run)
    results = evaluate_policy(model, meta["task"], config.settings, config.episodes, config.seed,
                              DepthCamera(**meta["camera"]), keep=5)
    for setting, result in results.items():
        save_figure(config.run / "eval" / f"{setting}.png", episode_strip(
            result.pop("frames"), TASKS[meta["task"]].labels, f"{meta['task']}, {setting}, episode 0"))
        print(f"{setting}: reward {result['reward']:.3f}, success {result['success']:.0%} "
              f"({config.episodes} episodes, {result['seconds']:.0f} s)")
    save_json(config.run / "eval" / "results.json", results)
    return results
