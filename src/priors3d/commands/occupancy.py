"""``priors3d occupancy train|eval|protocols``: VN-OccNet and OccNet on the procedural shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import tyro

from priors3d.engine import CommandConfig
from priors3d.pointcloud.occupancy_training import (OccupancyTrainConfig, evaluate_occupancy, load_occupancy_run,
                                                    occupancy_split, run_occupancy_protocols, train_occupancy)
from priors3d.runs import save_json
from priors3d.so3 import parse_protocol_pair


def _line(results: dict) -> str:
    return (f"IoU {results['iou']:.3f}, Chamfer-L1 {results['chamfer_l1']:.4f} "
            f"({results['empty_meshes']} empty meshes)")


def train(config: OccupancyTrainConfig) -> dict:
    """Train an occupancy network on the procedural shapes, then evaluate it (IoU, Chamfer-L1, meshes)."""
    summary = train_occupancy(config)[1]
    print(f"{config.model} trained and tested {config.rotation}: {_line(summary['test'])}")
    return summary


@dataclasses.dataclass(kw_only=True)
class EvalConfig(CommandConfig):
    """Options of ``priors3d occupancy eval``."""

    run: tyro.conf.Positional[Path] = Path("runs/occnet")
    """A run directory written by ``priors3d occupancy train``."""
    rotation: Literal["none", "z", "so3"] | None = None
    """Test rotation protocol (None: the run's)."""
    n_meshes: int = 15
    mesh_resolution: int = 40
    test_per_class: int | None = None
    """Test shapes per category (default: the run's)."""


def evaluate(config: EvalConfig) -> dict:
    """Evaluate a trained run again under a test protocol: IoU and Chamfer-L1, meshes and a PNG in
    ``<run>/eval/``, the metrics in ``<run>/eval/results.json``."""
    train_config, model = load_occupancy_run(config.run)
    train_config = dataclasses.replace(train_config, progress=config.progress, n_meshes=config.n_meshes,
                                       mesh_resolution=config.mesh_resolution)
    protocol = config.rotation or parse_protocol_pair(train_config.rotation)[1]
    test_set = occupancy_split(train_config, "test", config.test_per_class)
    results = evaluate_occupancy(model, train_config, test_set, protocol, config.run / "eval")
    save_json(config.run / "eval" / "results.json", {protocol: results})
    print(f"tested {protocol}: {_line(results)}")
    return results


@dataclasses.dataclass(kw_only=True)
class ProtocolsConfig(CommandConfig):
    """Options of ``priors3d occupancy protocols``."""

    out: Path = Path("runs/occnet_protocols")
    models: tuple[Literal["vn", "plain"], ...] = ("vn", "plain")
    protocols: tuple[str, ...] = ("none/none", "none/so3", "so3/so3")
    """TRAIN/TEST pairs; each model trains once per train protocol."""
    train: OccupancyTrainConfig = dataclasses.field(default_factory=OccupancyTrainConfig)
    """Options shared by every run (out, model and rotation are set per run; --threads and --no-progress apply
    to every run)."""


def protocols(config: ProtocolsConfig) -> dict:
    """Train each model aligned and under SO(3); report IoU/Chamfer for every TRAIN/TEST pair (protocols.json)."""
    train = dataclasses.replace(config.train, threads=config.threads or config.train.threads,
                                progress=config.progress and config.train.progress)
    table = run_occupancy_protocols(train, config.models, config.protocols, config.out)
    for row, results in table.items():
        print(f"{row}: IoU {results['iou']:.3f}, Chamfer-L1 {results['chamfer_l1']:.4f}")
    return table
