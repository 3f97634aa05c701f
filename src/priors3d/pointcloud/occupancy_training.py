"""Train and evaluate occupancy networks (VN-OccNet, plain OccNet) on the procedural shapes.

- :func:`train_occupancy`: train one model under the ``TRAIN/TEST`` rotation protocol of its config
  (through :mod:`priors3d.engine`, one step per epoch), then evaluate it under the test protocol:
  volumetric IoU at threshold 0.2 on every test shape, Chamfer-L1 of marching-cubes meshes of one test
  shape per category, the meshes (``meshes/<protocol>/*.ply``) and a PNG of them.
- :func:`evaluate_occupancy`: the same evaluation of a model under any test protocol.
- :func:`run_occupancy_protocols`: train each model once per train protocol and report the IoU and
  Chamfer-L1 of every ``TRAIN/TEST`` pair (aligned/aligned, aligned/SO3, SO3/SO3 by default).

Rotations act on the input cloud and the query points together (``points @ R``); test rotations are
:func:`priors3d.so3.evaluation_rotations` of the seed, so every model is tested on the same rotated
shapes (the point-cloud commands draw theirs the same way).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.pointcloud.mesh import chamfer_l1, reconstruct, render_meshes, sample_mesh, save_mesh
from priors3d.pointcloud.models.occnet import OccupancyNetwork, build_occnet
from priors3d.pointcloud.occupancy import OccupancyShapes, volumetric_iou
from priors3d.pointcloud.train import ModelTrainer, load_weights, open_trained
from priors3d.runs import save_json
from priors3d.so3 import evaluation_rotations, parse_protocol_pair, rotate, rotations_for_protocol

KIND = "occupancy train"


@dataclasses.dataclass(kw_only=True)
class OccupancyTrainConfig(RunConfig):
    """Options of ``priors3d occupancy train``."""

    out: Path = Path("runs/occnet")
    """Run directory (config.json, metrics.jsonl, checkpoint.pt, results.json, meshes/, PNGs)."""
    model: Literal["vn", "plain"] = "vn"
    """vn: VN-OccNet (rotation-invariant); plain: OccNet's ResNet-PointNet + conditional-BN decoder."""
    rotation: str = "none/so3"
    """TRAIN/TEST rotation protocols, each none (aligned), z (about the shapes' z axis) or so3: fresh rotations
    every step while training, one fixed rotation per test shape."""
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
    """Test shapes per category."""
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
    checkpoint_every: int = 1
    """Write a checkpoint every this many epochs (and at the end)."""


def occupancy_model(config: OccupancyTrainConfig) -> OccupancyNetwork:
    return build_occnet(config.model, config.c_dim, config.hidden, config.decoder_hidden, config.n_blocks, config.k)


def occupancy_split(config: OccupancyTrainConfig, split: str, per_class: int | None = None) -> OccupancyShapes:
    return OccupancyShapes(config.data_root, split, per_class=per_class or
                           (config.per_class if split == "train" else config.test_per_class),
                           n_inputs=config.n_inputs, noise=config.noise, n_queries=config.n_queries,
                           seed=config.seed, progress=config.progress)


def rotate_batch(batch: dict[str, torch.Tensor], rotation: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch with its point sets (inputs, points, iou_points) rotated by ``rotation [B, 3, 3]`` (``points @ R``)."""
    return {k: rotate(v, rotation) if k in ("inputs", "points", "iou_points") else v for k, v in batch.items()}


class OccupancyTrainer(ModelTrainer):
    """One engine step = one epoch of binary cross-entropy on the occupancy logits, shuffled and rotated by a
    generator of ``(seed, epoch)``."""

    def __init__(self, config: OccupancyTrainConfig, model: OccupancyNetwork, train_set: OccupancyShapes,
                 checkpoint: Path):
        self.config, self.model, self.train_set, self.checkpoint = config, model, train_set, checkpoint
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.protocol = parse_protocol_pair(config.rotation)[0]

    def step(self, epoch: int) -> dict[str, float]:
        """Train one epoch; its mean loss."""
        config = self.config
        seed = np.random.SeedSequence([config.seed, epoch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(seed))
        self.train_set.set_epoch(epoch)
        loader = DataLoader(self.train_set, batch_size=config.batch_size, shuffle=True, generator=generator,
                            drop_last=len(self.train_set) > config.batch_size)
        self.model.train()
        total, count = 0.0, 0
        for batch in tqdm(loader, desc=f"epoch {epoch + 1}", disable=not config.progress, leave=False):
            rotation = rotations_for_protocol(self.protocol, len(batch["inputs"]), generator=generator)
            batch = rotate_batch(batch, rotation)
            loss = F.binary_cross_entropy_with_logits(self.model(batch["inputs"], batch["points"]), batch["occ"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, count = total + loss.item() * len(batch["inputs"]), count + len(batch["inputs"])
        return {"loss": total / max(count, 1)}


@torch.no_grad()
def evaluate_occupancy(model: OccupancyNetwork, config: OccupancyTrainConfig, dataset: OccupancyShapes, protocol: str,
                       out: Path | None = None) -> dict:
    """IoU and mesh metrics under the test ``protocol``: ``{iou, iou_per_category, chamfer_l1, empty_meshes}``.

    Mean volumetric IoU (at ``config.threshold``) over ``dataset`` (and per category) with cloud and IoU points
    rotated, then :func:`evaluate_meshes`; with ``out``, the meshes go to ``out/meshes/<protocol>/`` and
    ``out/meshes/<protocol>.png``.
    """
    model.eval()
    rotations = evaluation_rotations(protocol, len(dataset), config.seed)
    ious, labels = [], []
    for batch in tqdm(DataLoader(dataset, batch_size=16), desc=f"IoU {protocol}",
                      disable=not config.progress, leave=False):
        batch = rotate_batch(batch, rotations[batch["index"]])
        ious.append(volumetric_iou(model(batch["inputs"], batch["iou_points"]), batch["iou_occ"], config.threshold))
        labels.append(batch["label"])
    ious, labels = torch.cat(ious), torch.cat(labels)
    results = {"iou": ious.mean().item(),
               "iou_per_category": {name: ious[labels == c].mean().item()
                                    for c, name in enumerate(dataset.class_names) if (labels == c).any()}}
    meshes = None if out is None else out / "meshes" / protocol
    return results | evaluate_meshes(model, config, dataset, protocol, rotations, meshes)


@torch.no_grad()
def evaluate_meshes(model: OccupancyNetwork, config: OccupancyTrainConfig, dataset: OccupancyShapes, protocol: str,
                    rotations: torch.Tensor, out: Path | None = None) -> dict:
    """Chamfer-L1 between marching-cubes meshes (``config.mesh_resolution``) of ``config.n_meshes`` test shapes,
    one per category first, and their clean surfaces, in the frame of their test ``rotations [M, 3, 3]``
    (``protocol`` names them).

    With ``out``, writes ``out/<category>_<index>.ply`` and ``out.png`` (meshes and input clouds).
    Shapes whose mesh is empty are counted in ``empty_meshes`` and left out of the mean.
    """
    per_class, classes = dataset.surfaces.per_class, len(dataset.class_names)
    indices = [(j % classes) * per_class + j // classes for j in range(min(config.n_meshes, len(dataset)))]
    distances, panels = [], []
    for i in tqdm(indices, desc=f"meshes {protocol}", disable=not config.progress, leave=False):
        item, rotation = dataset[i], rotations[i]
        inputs = item["inputs"] @ rotation
        code = model.encode(inputs[None])
        vertices, faces = reconstruct(lambda p: model.decode(p[None], code)[0], config.mesh_resolution,
                                      threshold=config.threshold)
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


def train_occupancy(config: OccupancyTrainConfig) -> tuple[OccupancyNetwork, dict]:
    """Train an occupancy network on the procedural shapes, then evaluate it under the test protocol (IoU,
    Chamfer-L1, meshes); returns the model and the summary written to ``results.json``."""
    test_protocol = parse_protocol_pair(config.rotation)[1]
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {config.epochs} and {config.batch_size}")
    engine.resolve_device(config.device)  # cpu only
    with engine.start(config, KIND) as run:
        model = occupancy_model(config)
        train_set, test_set = occupancy_split(config, "train"), occupancy_split(config, "test")
        trainer = OccupancyTrainer(config, model, train_set, run.path("checkpoint.pt"))
        done = run.train(trainer, config.epochs, desc=f"{config.model} {config.rotation}")
        results = evaluate_occupancy(model, config, test_set, test_protocol, run.root)
        summary = {"model": config.model, "rotation": config.rotation, "epochs": config.epochs,
                   "train_time_s": done["train_time_s"], "parameters": sum(p.numel() for p in model.parameters()),
                   "test": results}
        save_json(run.path("results.json"), summary)
    return model, summary


def load_occupancy_run(run_dir: Path) -> tuple[OccupancyTrainConfig, OccupancyNetwork]:
    """The config and trained model (eval mode) of a run directory."""
    config, weights, path = open_trained(run_dir, OccupancyTrainConfig, KIND, "priors3d occupancy eval")
    return config, load_weights(occupancy_model(config), weights, path).eval()


def run_occupancy_protocols(train: OccupancyTrainConfig, models: tuple[str, ...], protocols: tuple[str, ...],
                            out: Path) -> dict:
    """Train each model once per train protocol of the ``TRAIN/TEST`` pairs into ``out/<model>_<protocol>``,
    evaluate every pair (meshes in that run's folder) and write ``out/protocols.json``:
    ``{"<model> <train>/<test>": {iou, chamfer_l1, train_time_s, parameters}}``."""
    pairs = [parse_protocol_pair(p) for p in protocols]
    table = {}
    for model_name in models:
        for train_protocol in dict.fromkeys(a for a, _ in pairs):
            tests = [b for a, b in pairs if a == train_protocol]
            config = dataclasses.replace(train, out=out / f"{model_name}_{train_protocol}", model=model_name,
                                         rotation=f"{train_protocol}/{tests[0]}")
            model, summary = train_occupancy(config)
            test_set = occupancy_split(config, "test")
            for test in tests:
                results = summary["test"] if test == tests[0] else evaluate_occupancy(model, config, test_set, test,
                                                                                      config.out)
                table[f"{model_name} {train_protocol}/{test}"] = {
                    "iou": results["iou"], "chamfer_l1": results["chamfer_l1"],
                    "train_time_s": summary["train_time_s"], "parameters": summary["parameters"]}
    save_json(out / "protocols.json", table)
    return table
