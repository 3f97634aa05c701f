"""``priors3d pointcloud train|eval|protocols`` and ``priors3d data prepare``.

Each command runs single-process, or data-parallel under ``torchrun --nproc_per_node=K -m priors3d.cli ...``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import tyro

from priors3d.engine import CommandConfig
from priors3d.pointcloud import distributed
from priors3d.pointcloud.data import SyntheticShapes, make_dataset, part_presence
from priors3d.pointcloud.data.synthetic import CATEGORIES
from priors3d.pointcloud.models import from_official
from priors3d.pointcloud.train import (ModelName, PointCloudTrainConfig, evaluate_model, load_run, load_split,
                                       run_protocols, train_pointcloud)
from priors3d.runs import load_torch, save_json
from priors3d.so3 import parse_protocol_pair


def _line(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def train(config: PointCloudTrainConfig) -> dict[str, Any]:
    """Train a point-cloud model under a rotation protocol (run with torchrun for several processes)."""
    with distributed.process_group(config.device) as context:
        metrics = train_pointcloud(config, context)[1]
        if context.is_main:
            print(_line(metrics))
        return metrics


@dataclasses.dataclass(kw_only=True)
class EvalConfig(CommandConfig):
    """Options of ``priors3d pointcloud eval``."""

    run: tyro.conf.Positional[Path | None] = None
    """Run directory written by ``priors3d pointcloud train`` (none with --official-checkpoint)."""
    rotation: Literal["none", "z", "so3"] | None = None
    """Test rotation protocol (None: the run's; so3 for an official checkpoint)."""
    batch_size: int | None = None
    device: str = "auto"
    official_checkpoint: Path | None = None
    """Evaluate a checkpoint of the Vector Neurons authors' VN-DGCNN (github.com/FlyingGiraffe/vnn) instead of a
    run: --task cls on ModelNet40 (40 classes), seg on ShapeNetPart (16 categories, 50 parts), --dataset and --root
    name the data (docs/pointcloud.md)."""
    task: Literal["cls", "seg"] = "cls"
    """With --official-checkpoint: the checkpoint's task."""
    dataset: Literal["synthetic", "modelnet40", "shapenetpart"] | None = None
    """With --official-checkpoint (None: modelnet40 for cls, shapenetpart for seg)."""
    root: Path | None = None
    """With --official-checkpoint: the data set's folder."""
    n_points: int = 1024
    """With --official-checkpoint: points per test shape."""
    k: int | None = None
    """With --official-checkpoint: neighbours (None: the authors' 20 for cls, 40 for seg)."""
    exact_eps: bool = True
    """With --official-checkpoint: VN batch norms take ‖v‖ + 1e-6 exactly as the authors' code."""


def load_official(config: EvalConfig) -> tuple[PointCloudTrainConfig, Any, Any]:
    """The config, model (eval mode) and test split that evaluate an official VN-DGCNN checkpoint."""
    path, checkpoint = config.official_checkpoint, load_torch(config.official_checkpoint)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict of the official VN-DGCNN")
    state = checkpoint.get("model_state_dict", checkpoint.get("state_dict", checkpoint))  # or a bare one
    try:
        model = from_official(state, config.task, config.exact_eps, config.k)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    classes, parts = ((model.head[-1].out_features, 0) if config.task == "cls" else
                      (model.head.num_classes, model.head.mlp[-1].out_channels))
    dataset = config.dataset or {"cls": "modelnet40", "seg": "shapenetpart"}[config.task]
    what = f"{path} is a {config.task} model for {classes} classes" + (f" and {parts} parts" if parts else "")
    wanted = ("a 40-class ModelNet40 folder (--dataset modelnet40 --root FOLDER)" if config.task == "cls" else
              "a ShapeNetPart folder (--dataset shapenetpart --root FOLDER)")
    if dataset == "synthetic":
        raise ValueError(f"{what}; the built-in synthetic data has {len(CATEGORIES)} classes: evaluate it on {wanted}")
    train_config = PointCloudTrainConfig(task=config.task, dataset=dataset, root=config.root, n_points=config.n_points,
                                         k=model.k, frame="point", rotation="so3/so3", progress=config.progress)
    test_set = load_split(train_config, "test")
    if (test_set.num_classes, test_set.num_parts) != (classes, parts):
        raise ValueError(f"{what}; {config.root} holds {test_set.num_classes} classes and {test_set.num_parts} "
                         f"parts: evaluate it on {wanted}")
    return train_config, model, test_set


def evaluate(config: EvalConfig) -> dict[str, float]:
    """Evaluate a trained run (writes eval-<protocol>.json there) or an official checkpoint on a test split under a
    rotation protocol."""
    if (config.run is None) == (config.official_checkpoint is None):
        raise ValueError("priors3d pointcloud eval takes a run directory or --official-checkpoint FILE (one of them)")
    with distributed.process_group(config.device) as context:
        if config.run is None:
            train_config, model, test_set = load_official(config)
        else:
            train_config, model, test_set = load_run(config.run, context.device)
        train_config = dataclasses.replace(train_config, progress=config.progress)
        protocol = config.rotation or parse_protocol_pair(train_config.rotation)[1]
        metrics = evaluate_model(model.to(context.device), train_config, test_set, protocol, context,
                                 config.batch_size)["metrics"]
        if context.is_main:
            if config.run is not None:
                save_json(Path(config.run) / f"eval-{protocol}.json", {"rotation": protocol, **metrics})
            print(_line(metrics))
        return metrics


@dataclasses.dataclass(kw_only=True)
class ProtocolsConfig(CommandConfig):
    """Options of ``priors3d pointcloud protocols``: train every model once per train protocol, test each pair."""

    models: tuple[ModelName, ...] = ("vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn")
    protocols: tuple[str, ...] = ("z/z", "z/so3", "so3/so3")
    """TRAIN/TEST pairs."""
    train: PointCloudTrainConfig = dataclasses.field(default_factory=PointCloudTrainConfig)
    """Training options shared by every run (model, rotation, seed and out are set per run; --threads and
    --no-progress apply to every run)."""
    seeds: tuple[int, ...] = ()
    """Several seeds: one run per model, protocol and seed (``<model>-<protocol>-seed<S>``), and the table
    gives mean ± standard deviation over seeds. Empty: one run with ``train.seed``."""
    out: Path = Path("runs/pointcloud/protocols")


def protocols(config: ProtocolsConfig) -> dict[str, dict[str, float]]:
    """Train each model once per train protocol (and seed), evaluate every TRAIN/TEST pair, write a Markdown
    table (protocols.md) and protocols.json; returns the metric per model and pair (the mean over seeds)."""
    train = dataclasses.replace(config.train, threads=config.threads or config.train.threads,
                                progress=config.progress and config.train.progress)
    with distributed.process_group(train.device) as context:
        return run_protocols(train, config.models, config.protocols, config.out, config.seeds, context)


@dataclasses.dataclass(kw_only=True)
class PrepareConfig(CommandConfig):
    """Options of ``priors3d data prepare``."""

    name: Literal["synthetic", "modelnet40", "shapenetpart"] = "synthetic"
    root: Path | None = None
    """Data folder (cache folder for synthetic, default ~/.cache/priors3d)."""
    n_points: int = 1024
    seed: int = 0
    splits: tuple[str, ...] = ("train", "test")


def prepare(config: PrepareConfig) -> dict[str, dict]:
    """Build (and for synthetic, generate and cache) a data set's splits; print what they hold."""
    summary = {}
    for split in config.splits:
        start = time.perf_counter()
        extra = {"progress": config.progress} if config.name == "synthetic" else {}
        dataset = make_dataset(config.name, config.root, split, config.n_points, seed=config.seed, **extra)
        seconds = time.perf_counter() - start
        summary[split] = {"items": len(dataset), "classes": dataset.num_classes, "parts": dataset.num_parts,
                          "up_axis": dataset.up_axis, "seconds": round(seconds, 2)}
        where = getattr(dataset, "cache_path", config.root)
        print(f"{config.name} {split}: {len(dataset)} items x {config.n_points} points, "
              f"{dataset.num_classes} classes, {dataset.num_parts} parts, {dataset.up_axis}-up, "
              f"ready in {seconds:.2f} s ({where})")
        if isinstance(dataset, SyntheticShapes):
            summary[split]["part_presence"] = part_presence(dataset)
            for category, shares in summary[split]["part_presence"].items():
                print(f"  {category:<9} " + ", ".join(f"{part} {share:.0%}" for part, share in shares.items()))
    return summary
