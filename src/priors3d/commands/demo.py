"""The README's demonstrations (``make demo``).

``rotation``: how much do a VN network's and a plain network's outputs change when the input is
rotated? For every model it takes one procedural test shape per category, rotates each by random
rotations in SO(3), and reports the worst relative change of the logits (``check.invariance_error``)
in float32 and float64. Untrained weights suffice: invariance is a property of the architecture.

``field``: room -> NeRF fit -> label-free JacobiNeRF shaping -> labels propagated from one click per
class; mIoU before and after shaping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from priors3d import check
from priors3d.engine import CommandConfig
from priors3d.fields.fit import PROPOSAL_SAMPLING, FitConfig, fit_nerf, load_field
from priors3d.fields.scenes import RoomConfig, generate_room
from priors3d.metrics import label_map_metrics
from priors3d.pointcloud.data import make_dataset
from priors3d.pointcloud.models import build_model
from priors3d.runs import save_json, seed_everything
from priors3d.shaping.shape import TUNED, ShapeConfig, evaluation_clicks, propagate_labels, shape_field
from priors3d.so3 import random_rotation
from priors3d.viz import label_pictures


@dataclass(kw_only=True)
class RotationDemoConfig(CommandConfig):
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


def rotation(config: RotationDemoConfig) -> dict:
    """Print how much VN and plain networks' outputs change under random input rotations."""
    start = time.perf_counter()
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
    print(f"written: {config.out / 'rotation_demo.json'} ({time.perf_counter() - start:.0f} s)")
    return results


@dataclass(kw_only=True)
class FieldDemoConfig(CommandConfig):
    """Options of ``priors3d demo field``."""

    out: Path = Path("runs/demo/field")
    """Where the demo writes ``fit/``, ``shape/``, ``labels_{unshaped,shaped}.png`` and ``demo.json``
    (replacing what a previous demo wrote there)."""
    quick: bool = True
    """Small budgets (minutes on two CPU cores); --no-quick uses the benchmark's."""


def field(config: FieldDemoConfig) -> dict:
    """Room → NeRF fit → label-free Jacobian shaping → one click per class propagated; mIoU before and after.

    The shaping pairs come from a label-free source of the training images and depth (``ShapeConfig`` defaults), a
    shaping head keeps the field's appearance; the ground-truth class maps only give the clicks and the scores.
    ``quick`` uses small budgets (minutes on two CPU cores); otherwise those of ``bench/propagation.py``. Prints the
    time of each part.
    """
    start = time.perf_counter()
    scene = generate_room(RoomConfig(seed=0))
    fit = fit_nerf(scene, FitConfig(scene=Path("room"), out=config.out / "fit", iterations=500,
                                    batch_rays=1024 if config.quick else 2048, eval_every=10**9, picture_views=1,
                                    overwrite=True, progress=config.progress, **PROPOSAL_SAMPLING))
    print(f"fit: NeRF, {fit['step']} iterations, held-out PSNR {fit['psnr']:.2f} dB "
          f"({time.perf_counter() - start:.0f} s)")
    model, setup = load_field(config.out / "fit", "demo field")
    clicks = evaluation_clicks(scene)
    n_classes = len(scene.class_names)
    result = {}
    for name in ("unshaped", "shaped"):
        part = time.perf_counter()
        if name == "shaped":
            summary = shape_field(model, setup, scene, ShapeConfig(
                run=config.out / "fit", out=config.out / "shape", iterations=1500 if config.quick else 3000,
                overwrite=True, progress=config.progress, **TUNED))
            print(f"shaped with label-free pairs ({ShapeConfig.pairs}), {summary['step']} iterations: held-out PSNR "
                  f"{summary['psnr_before']:.2f} -> {summary['psnr_after']:.2f} dB")
        labels = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes)["labels"]
        metrics = label_map_metrics(labels, scene.test.semantic, n_classes)
        label_pictures(config.out / f"labels_{name}.png", scene, labels, scene.test.semantic)
        result[name] = {k: metrics[k] for k in ("miou", "accuracy", "class_accuracy")}
        print(f"{name}: mIoU {metrics['miou']:.3f}, accuracy {metrics['accuracy']:.3f} "
              f"({time.perf_counter() - part:.0f} s)")
    result["seconds"] = time.perf_counter() - start
    save_json(config.out / "demo.json", result)
    print(f"demo field: {result['seconds']:.0f} s. Explore it in a browser: priors3d view {config.out} "
          f"(.venv/bin/priors3d after make demo), then open http://127.0.0.1:8080/ and click an object")
    return result
