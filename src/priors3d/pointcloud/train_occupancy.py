"""Train and evaluate occupancy networks (VN-OccNet, plain OccNet) on the procedural shapes.

Commands (each a function of one config dataclass):

- :func:`train`: train one model under one rotation protocol, then evaluate it under the test
  protocols: volumetric IoU at threshold 0.2 on every test shape, Chamfer-L1 of marching-cubes meshes
  of one test shape per category, the meshes (``meshes/<protocol>/*.ply``) and a PNG of them.
- :func:`evaluate_run`: evaluate a trained run directory again (other protocols, more meshes).
- :func:`protocols`: train VN-OccNet and OccNet under ``none`` and ``so3`` training rotations and
  report the aligned/aligned, aligned/SO3 and SO3/SO3 table.

Rotations act on the input cloud and the query points together (``points @ R``); test rotations are
drawn from a fixed seed, so every model is tested on the same rotated shapes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from priors3d.pointcloud.mesh import chamfer_l1, reconstruct, render_meshes, sample_mesh, save_mesh
from priors3d.pointcloud.models.occnet import OccupancyNetwork, build_occnet
from priors3d.pointcloud.occupancy import OccupancyShapes, volumetric_iou
from priors3d.runs import RunDir, save_json, seed_everything
from priors3d.so3 import rotate, rotations_for_protocol

Protocol = Literal["none", "so3"]


@dataclasses.dataclass
class TrainConfig:
    """Options of ``priors3d occupancy train``."""

    out: Path = Path("runs/occnet")
    """Run directory (config.json, metrics.jsonl, checkpoint.pt, results.json, meshes/, PNGs)."""
    model: Literal["vn", "plain"] = "vn"
    """vn: VN-OccNet (rotation-invariant); plain: OccNet's ResNet-PointNet + conditional-BN decoder."""
    train_rotation: Protocol = "none"
    """Rotations applied while training: none (aligned) or so3."""
    test_rotations: tuple[Protocol, ...] = ("none", "so3")
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-3
    c_dim: int | None = None
    """Latent size: vectors for vn (default 32), scalars for plain (default 96)."""
    hidden: int | None = None
    """Encoder width: vectors for vn (default 32), scalars for plain (default 96)."""
    decoder_hidden: int = 64
    n_blocks: int = 5
    k: int = 10
    """Neighbours of the VN encoder's cross-product EdgeConv."""
    per_class: int = 100
    """Training shapes per category (15 categories)."""
    test_per_class: int = 10
    n_inputs: int = 300
    noise: float = 0.005
    n_queries: int = 512
    """Query points per shape and step."""
    threshold: float = 0.2
    """Occupancy probability threshold for IoU and meshes."""
    n_meshes: int = 15
    """Test shapes meshed for Chamfer-L1 and pictures (one per category first)."""
    mesh_resolution: int = 40
    data_root: Path | None = None
    """Cache folder of the generated data (default $PRIORS3D_CACHE or ~/.cache/priors3d)."""
    seed: int = 0
    resume: bool = True
    """Continue from out/checkpoint.pt when it exists."""
    threads: int | None = None
    """torch CPU threads (default: torch's choice); 1 is fastest on a machine shared with other jobs."""
    progress: bool = True


@dataclasses.dataclass
class EvalConfig:
    """Options of ``priors3d occupancy eval``."""

    run: tyro.conf.Positional[Path] = Path("runs/occnet")
    """A run directory written by ``priors3d occupancy train``."""
    test_rotations: tuple[Protocol, ...] = ("none", "so3")
    n_meshes: int = 15
    mesh_resolution: int = 40
    test_per_class: int | None = None
    """Test shapes per category (default: the run's)."""
    progress: bool = True


@dataclasses.dataclass
class ProtocolsConfig:
    """Options of ``priors3d occupancy protocols``."""

    out: Path = Path("runs/occnet_protocols")
    models: tuple[Literal["vn", "plain"], ...] = ("vn", "plain")
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Options shared by every run (out, model and rotations are set per run)."""


# --- pieces ----------------------------------------------------------------------------------------

def model_from_config(config: TrainConfig) -> OccupancyNetwork:
    return build_occnet(config.model, config.c_dim, config.hidden, config.decoder_hidden, config.n_blocks, config.k)


def make_split(config: TrainConfig, split: str, per_class: int | None = None) -> OccupancyShapes:
    return OccupancyShapes(config.data_root, split, per_class=per_class or
                           (config.per_class if split == "train" else config.test_per_class),
                           n_inputs=config.n_inputs, noise=config.noise, n_queries=config.n_queries,
                           seed=config.seed, progress=config.progress)


def rotate_batch(batch: dict[str, torch.Tensor], rotation: torch.Tensor,
                 keys: tuple[str, ...] = ("inputs", "points", "iou_points")) -> dict[str, torch.Tensor]:
    """The batch with the point sets under ``keys`` rotated by ``rotation [B, 3, 3]`` (``points @ R``)."""
    return {k: rotate(v, rotation) if k in keys else v for k, v in batch.items()}


def protocol_rotations(protocol: str, n: int, seed: int) -> torch.Tensor:
    """``[n, 3, 3]`` test rotations, one per test item, the same for every model with this seed."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
    return rotations_for_protocol(protocol, n, generator=generator)


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, protocol: str,
                generator: torch.Generator, progress: bool = True, desc: str = "train") -> float:
    """One pass over ``loader`` with the binary cross-entropy of the occupancy logits; mean loss."""
    model.train()
    total, count = 0.0, 0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        batch = rotate_batch(batch, rotations_for_protocol(protocol, len(batch["inputs"]), generator=generator))
        loss = F.binary_cross_entropy_with_logits(model(batch["inputs"], batch["points"]), batch["occ"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item() * len(batch["inputs"]), count + len(batch["inputs"])
    return total / max(count, 1)


@torch.no_grad()
def evaluate_iou(model: nn.Module, dataset: OccupancyShapes, protocol: str, seed: int, batch_size: int = 16,
                 threshold: float = 0.2, progress: bool = True) -> dict:
    """Mean volumetric IoU over ``dataset`` (and per category) with cloud and IoU points rotated."""
    model.eval()
    rotations = protocol_rotations(protocol, len(dataset), seed)
    ious, labels = [], []
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc=f"IoU {protocol}",
                      disable=not progress, leave=False):
        batch = rotate_batch(batch, rotations[batch["index"]])
        ious.append(volumetric_iou(model(batch["inputs"], batch["iou_points"]), batch["iou_occ"], threshold))
        labels.append(batch["label"])
    ious, labels = torch.cat(ious), torch.cat(labels)
    return {"iou": ious.mean().item(),
            "iou_per_category": {name: ious[labels == c].mean().item()
                                 for c, name in enumerate(dataset.class_names) if (labels == c).any()}}


def mesh_indices(dataset: OccupancyShapes, n: int) -> list[int]:
    """``n`` item indices, one per category first, then the next shape of each category."""
    per_class, classes = dataset.surfaces.per_class, len(dataset.class_names)
    return [(j % classes) * per_class + j // classes for j in range(min(n, len(dataset)))]


@torch.no_grad()
def evaluate_meshes(model: OccupancyNetwork, dataset: OccupancyShapes, protocol: str, seed: int,
                    indices: list[int], resolution: int = 40, threshold: float = 0.2,
                    out: Path | None = None, progress: bool = True) -> dict:
    """Chamfer-L1 between marching-cubes meshes and the clean surface, in the rotated frame.

    With ``out``, writes ``out/<category>_<index>.ply`` and ``out.png`` (meshes and input clouds).
    Shapes whose mesh is empty are counted in ``empty_meshes`` and left out of the mean.
    """
    model.eval()
    rotations = protocol_rotations(protocol, len(dataset), seed)
    distances, panels = [], []
    for i in tqdm(indices, desc=f"meshes {protocol}", disable=not progress, leave=False):
        item, rotation = dataset[i], rotations[i]
        inputs = item["inputs"] @ rotation
        code = model.encode(inputs[None])
        vertices, faces = reconstruct(lambda p: model.decode(p[None], code)[0], resolution, threshold=threshold)
        name = f"{dataset.class_names[int(item['label'])]}_{i}"
        if len(faces):
            predicted = sample_mesh(vertices, faces, 2048, np.random.default_rng(i))
            distances.append(chamfer_l1(predicted, (dataset.surface(i) @ rotation).numpy()))
        if out is not None:
            save_mesh(out / f"{name}.ply", vertices, faces)
            panels.append((name, vertices, faces, inputs.numpy()))
    if out is not None and panels:
        render_meshes(out.with_suffix(".png"), panels)
    return {"chamfer_l1": float(np.mean(distances)) if distances else float("nan"),
            "empty_meshes": len(indices) - len(distances)}


def evaluate_model(model: OccupancyNetwork, dataset: OccupancyShapes, protocols: tuple[str, ...], seed: int,
                   n_meshes: int, resolution: int, threshold: float, out: Path | None, progress: bool) -> dict:
    """IoU and mesh metrics under each test protocol: ``{protocol: {iou, iou_per_category, chamfer_l1, ...}}``."""
    results = {}
    for protocol in protocols:
        results[protocol] = evaluate_iou(model, dataset, protocol, seed, threshold=threshold, progress=progress)
        mesh_out = None if out is None else out / "meshes" / protocol
        results[protocol] |= evaluate_meshes(model, dataset, protocol, seed, mesh_indices(dataset, n_meshes),
                                             resolution, threshold, mesh_out, progress)
    return results


# --- commands --------------------------------------------------------------------------------------

def train(config: TrainConfig) -> dict:
    """Train an occupancy network on the procedural shapes, then evaluate it (IoU, Chamfer-L1, meshes)."""
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {config.epochs} and {config.batch_size}")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    run = RunDir(config.out)
    seed_everything(config.seed)
    model = model_from_config(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_set, test_set = make_split(config, "train"), make_split(config, "test")
    state = run.load_checkpoint() if config.resume else None
    start, seconds = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, seconds = state["epoch"], state["train_seconds"]
    else:
        run.write_config(config, config.seed)
    for epoch in tqdm(range(start, config.epochs), desc=f"{config.model} {config.train_rotation}",
                      disable=not config.progress, initial=start, total=config.epochs):
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([config.seed, epoch]).generate_state(1)[0]))
        train_set.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator,
                            drop_last=len(train_set) > config.batch_size)
        begin = time.perf_counter()
        loss = train_epoch(model, loader, optimizer, config.train_rotation, generator, config.progress)
        seconds += time.perf_counter() - begin
        run.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "epoch": epoch + 1, "train_seconds": seconds})
        run.log_metrics({"epoch": epoch + 1, "loss": loss, "train_seconds": seconds})
    results = evaluate_model(model, test_set, config.test_rotations, config.seed, config.n_meshes,
                             config.mesh_resolution, config.threshold, run.root, config.progress)
    summary = {"model": config.model, "train_rotation": config.train_rotation, "epochs": config.epochs,
               "train_seconds": seconds, "parameters": sum(p.numel() for p in model.parameters()),
               "test": results}
    save_json(run.path("results.json"), summary)
    for protocol, r in results.items():
        print(f"{config.model} trained {config.train_rotation}, tested {protocol}: IoU {r['iou']:.3f}, "
              f"Chamfer-L1 {r['chamfer_l1']:.4f} ({r['empty_meshes']} empty meshes)")
    return summary


def load_run(run: Path) -> tuple[TrainConfig, OccupancyNetwork]:
    """The config and trained model of a run directory."""
    config_path, checkpoint = run / "config.json", run / "checkpoint.pt"
    if not config_path.is_file() or not checkpoint.is_file():
        raise FileNotFoundError(f"{run} is not a trained occupancy run (expected config.json and checkpoint.pt)")
    fields = json.loads(config_path.read_text())["config"]
    config = TrainConfig(**{k: v for k, v in fields.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    config = dataclasses.replace(config, out=Path(config.out), test_rotations=tuple(config.test_rotations),
                                 data_root=None if config.data_root is None else Path(config.data_root))
    model = model_from_config(config)
    model.load_state_dict(RunDir(run).load_checkpoint()["model"])
    return config, model.eval()


def evaluate_run(config: EvalConfig) -> dict:
    """Evaluate a trained run again: IoU and Chamfer-L1 under the test protocols, meshes and a PNG."""
    train_config, model = load_run(config.run)
    train_config = dataclasses.replace(train_config, progress=config.progress)
    test_set = make_split(train_config, "test", config.test_per_class)
    results = evaluate_model(model, test_set, config.test_rotations, train_config.seed, config.n_meshes,
                             config.mesh_resolution, train_config.threshold, config.run / "eval", config.progress)
    save_json(config.run / "eval" / "results.json", results)
    for protocol, r in results.items():
        print(f"tested {protocol}: IoU {r['iou']:.3f}, Chamfer-L1 {r['chamfer_l1']:.4f}")
    return results


PROTOCOL_ROWS = (("none", "none"), ("none", "so3"), ("so3", "so3"))


def protocols(config: ProtocolsConfig) -> dict:
    """Train each model aligned and under SO(3); report IoU/Chamfer for aligned/aligned, aligned/SO3, SO3/SO3."""
    table = {}
    for model in config.models:
        for train_rotation in ("none", "so3"):
            tests = tuple(test for train, test in PROTOCOL_ROWS if train == train_rotation)
            summary = train(dataclasses.replace(
                config.train, out=config.out / f"{model}_{train_rotation}", model=model,
                train_rotation=train_rotation, test_rotations=tests))
            for test in tests:
                table[f"{model} {train_rotation}/{test}"] = {
                    "iou": summary["test"][test]["iou"], "chamfer_l1": summary["test"][test]["chamfer_l1"],
                    "train_seconds": summary["train_seconds"], "parameters": summary["parameters"]}
    save_json(config.out / "protocols.json", table)
    return table
