"""The README's demonstration: how much do a VN network's and a plain network's outputs change when
the input is rotated?

For every model it takes one procedural test shape per category, rotates each by random rotations in
SO(3), and reports the worst relative change of the logits (``check.invariance_error``) in float32 and
float64. Untrained weights suffice: invariance is a property of the architecture, not of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import check
from .pointcloud.data import make_dataset
from .pointcloud.models import build_model
from .runs import save_json, seed_everything
from .so3 import random_rotation


@dataclass
class RotationDemoConfig:
    """Options of ``priors3d demo rotation``."""

    models: tuple[str, ...] = ("vn_pointnet", "pointnet", "vn_dgcnn", "dgcnn")
    n_points: int = 512
    rotations: int = 8
    width_divisor: int = 2
    """Divide the papers' channel widths (1 = full size)."""
    seed: int = 0
    out: Path = Path("runs/demo")
    data_root: Path | None = None
    """Cache folder of the procedural shapes (default ~/.cache/priors3d)."""


def rotation_demo(config: RotationDemoConfig) -> dict:
    """Print how much VN and plain networks' outputs change under random input rotations."""
    generator = seed_everything(config.seed)
    data = make_dataset("synthetic", config.data_root, "test", config.n_points, seed=config.seed)
    first_of_class = {}
    for i in range(len(data)):
        first_of_class.setdefault(int(data[i]["label"]), i)
    points = torch.stack([data[i]["points"] for i in first_of_class.values()]).float()
    rotations = random_rotation(config.rotations, generator)
    print("Relative change of the logits, max over rotations R of ‖f(x R) − f(x)‖ / ‖f(x)‖ (untrained models):")
    print(f"{len(points)} procedural shapes ({', '.join(data.class_names)}), {config.n_points} points, "
          f"{config.rotations} random rotations in SO(3)\n")
    print(f"{'model':<14}{'float32':>12}{'float64':>12}")
    results = {}
    for name in config.models:
        torch.manual_seed(config.seed)
        model = build_model(name, "cls", num_classes=data.num_classes, width_divisor=config.width_divisor).eval()
        results[name] = {
            "float32": check.invariance_error(model, points, vector_dim=-1, rotations=rotations),
            "float64": check.invariance_error(model.double(), points.double(), vector_dim=-1, rotations=rotations),
        }
        print(f"{name:<14}{results[name]['float32']:>12.2e}{results[name]['float64']:>12.2e}", flush=True)
    save_json(config.out / "rotation_demo.json", {"config": config, "results": results})
    print(f"written: {config.out / 'rotation_demo.json'}")
    return results


@dataclass
class FieldDemoConfig:
    """Options of ``priors3d demo field``."""

    out: Path = Path("runs/demo/field")
    quick: bool = True
    """Small budgets (minutes on two CPU cores); --no-quick uses the benchmark's."""


def field_demo(config: FieldDemoConfig) -> dict:
    """Room → NeRF fit → Jacobian shaping → one click per class propagated; mIoU before and after shaping."""
    from .shaping.shape import demo_pipeline

    return demo_pipeline(config.out, quick=config.quick)
