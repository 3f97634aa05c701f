"""Train and evaluate point-cloud models under rotation protocols (``priors3d pointcloud train|eval|protocols``).

A protocol ``TRAIN/TEST`` (``z/so3``) says how shapes are rotated: during training (fresh random
rotations every step: ``none``, ``z`` about the data set's up axis, or ``so3``) and at test time (one
fixed rotation per test shape, :func:`priors3d.so3.evaluation_rotations` of the seed, so every model
sees the same test set).

Training runs through :mod:`priors3d.engine`, one engine step per epoch: single-process by default and
data-parallel under ``torchrun --nproc_per_node=K`` (see :mod:`priors3d.pointcloud.distributed`; rank 0
writes the run). A run directory holds ``config.json``, ``metrics.jsonl`` / ``metrics.csv`` (one row per
epoch), ``metrics.json`` (the final test metrics), ``checkpoint.pt`` (after every epoch; ``--resume``
continues from it) and pictures: ``curves.png``, ``confusion.png`` (classification) or
``segmentation.png`` (a few test shapes, truth and prediction).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from priors3d import engine, viz
from priors3d.engine import RunConfig
from priors3d.metrics import confusion_matrix
from priors3d.pointcloud import distributed
from priors3d.pointcloud.data import make_dataset
from priors3d.pointcloud.data.transforms import AugmentConfig, augment
from priors3d.pointcloud.metrics import (
    SegmentationMeter,
    classification_metrics,
    restricted_prediction,
    segmentation_metrics,
)
from priors3d.pointcloud.models import DEFAULT_FRAME, build_model, is_equivariant
from priors3d.runs import RunDir, atomic_write, config_from_dict, open_run, save_figure, save_json
from priors3d.so3 import evaluation_rotations, parse_protocol_pair

KIND = "pointcloud train"
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-2}
# Training scale augmentation: plain models gain nothing from it at the default budget and VN models lose ~6
# points of accuracy (docs/pointcloud.md, "Why these defaults"), so VN models train without it.
DEFAULT_SCALE = {"plain": (0.8, 1.25), "vn": (1.0, 1.0)}
ModelName = Literal["vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn"]
PAPER = dict(n_points=1024, k=None, width_divisor=1, batch_size=32, epochs=250, per_class=None, test_per_class=None,
             optimizer="sgd", frame="point")


@dataclasses.dataclass(kw_only=True)
class PointCloudTrainConfig(RunConfig):
    """Options of ``priors3d pointcloud train``. Defaults finish in minutes on two CPU cores."""

    out: Path | None = None
    """Run directory (None: runs/pointcloud/<model>-<task>-<train>-<test>)."""
    model: ModelName = "vn_dgcnn"
    task: Literal["cls", "seg"] = "cls"
    """cls: shape classification; seg: part segmentation (the category is given as a one-hot input)."""
    dataset: Literal["synthetic", "modelnet40", "shapenetpart"] = "synthetic"
    root: Path | None = None
    """Data folder (cache folder for synthetic, default ~/.cache/priors3d)."""
    per_class: int | None = 64
    """Synthetic only: train shapes per category (None: the data set's default, 200)."""
    test_per_class: int | None = 16
    """Synthetic only: test shapes per category (None: the data set's default, 50)."""
    n_points: int = 256
    k: int | None = 10
    """Neighbours (None: the papers' 20 for cls, 40 for seg)."""
    pooling: Literal["mean", "max", "softmax"] = "mean"
    """How VN models pool over neighbours."""
    frame: Literal["point", "shape"] | None = None
    """VN models' invariant layer: one learned frame per point (the reference) or one per shape (None: point
    for cls, shape for seg, where per-point frames keep VN part models at the category prior; see
    docs/pointcloud.md)."""
    width_divisor: int = 2
    """Divide every channel width (1 = the papers' widths)."""
    paper: bool = False
    """Paper recipe: 1024 points, paper k, full widths, per-point frames, batch 32, 250 epochs of SGD, the full data
    set (overrides those)."""
    batch_size: int = 16
    """Per process."""
    epochs: int = 10
    optimizer: Literal["sgd", "adam"] = "adam"
    """adam suits the short default budget (docs/pointcloud.md); sgd (0.1, momentum 0.9) is the reference recipe
    for 250 epochs, which ``paper`` uses."""
    lr: float | None = None
    """Peak learning rate (None: 0.1 for SGD, 1e-2 for Adam); cosine decay to lr / 100, stepped every batch."""
    warmup_epochs: float = 1.0
    """Linear warm-up from lr / 100 to lr over this many epochs (0: none); keeps SGD 0.1 from diverging early."""
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.2
    rotation: str = "z/so3"
    """TRAIN/TEST rotation protocols, each none, z or so3."""
    up_axis: Literal["x", "y", "z"] | None = None
    """Axis of z rotations (None: the data set's up axis)."""
    scale: tuple[float, float] | None = None
    """Training augmentation: anisotropic scale range ((1, 1) turns it off; None: (0.8, 1.25) for plain models,
    off for VN models, which it slows down, see docs/pointcloud.md)."""
    jitter: float = 0.01
    """Training augmentation: per-point Gaussian noise (std, clipped at 5 sigma)."""
    device: str = "auto"
    """auto (cuda if available), cpu, cuda, cuda:1..."""
    checkpoint_every: int = 1
    """Write a checkpoint every this many epochs (and at the end)."""
    eval_every: int = 1
    """Evaluate on the test split every this many epochs (and after the last)."""


# --- configuration ------------------------------------------------------------------------------

def resolve(config: PointCloudTrainConfig) -> PointCloudTrainConfig:
    """Apply ``paper`` and check the options; returns the config a run records."""
    if config.paper:
        config = dataclasses.replace(config, paper=False, **PAPER)
    train, test = parse_protocol_pair(config.rotation)
    for name in ("n_points", "batch_size", "epochs", "eval_every", "width_divisor"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    return dataclasses.replace(
        config, frame=config.frame or DEFAULT_FRAME[config.task],
        scale=config.scale or DEFAULT_SCALE["vn" if is_equivariant(config.model) else "plain"],
        lr=DEFAULT_LR[config.optimizer] if config.lr is None else config.lr,
        out=config.out or Path("runs/pointcloud") / f"{config.model}-{config.task}-{train}-{test}")


# --- data ---------------------------------------------------------------------------------------

def load_split(config: PointCloudTrainConfig, split: str):
    """The train or test split named by ``config``."""
    synthetic = config.dataset == "synthetic"
    per_class = config.per_class if split == "train" else config.test_per_class
    extra = dict(per_class=per_class, progress=config.progress) if synthetic else {}
    return make_dataset(config.dataset, config.root, split, config.n_points, config.task, seed=config.seed,
                        sample="random" if split == "train" and not synthetic else "first", **extra)


def seg_table(dataset) -> list[list[int]]:
    """Each category's global part ids, in label order."""
    return [list(dataset.seg_classes[name]) for name in dataset.class_names]


# --- steps --------------------------------------------------------------------------------------

def forward(model: nn.Module, batch: dict[str, Tensor], task: str, num_classes: int) -> Tensor:
    """Logits ``[B, classes]`` or ``[B, N, parts]`` for a batch (seg models also get the category one-hot)."""
    if task == "cls":
        return model(batch["points"])
    return model(batch["points"], F.one_hot(batch["label"], num_classes).to(batch["points"].dtype))


def loss_and_target(logits: Tensor, batch: dict[str, Tensor], task: str, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """Cross-entropy (void parts ``-1`` ignored) and the targets it compared against."""
    target = batch["label"] if task == "cls" else batch["parts"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-1,
                           label_smoothing=label_smoothing)
    return loss, target


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def make_optimizer(config: PointCloudTrainConfig, model: nn.Module, steps_per_epoch: int):
    """SGD (momentum, weight decay) or Adam at ``config.lr`` (set by :func:`resolve`); per-batch schedule: linear
    warm-up, then cosine decay to lr / 100."""
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ModelTrainer:
    """The checkpoint state of a trainer: its attributes named in ``STATE`` (``model`` first, whose weights
    :func:`load_weights` checks against ``self.checkpoint``)."""

    STATE = ("model", "optimizer")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_weights(self.model, state["model"], self.checkpoint)
        for name in self.STATE[1:]:
            getattr(self, name).load_state_dict(state[name])


class PointCloudTrainer(ModelTrainer):
    """One engine step = one epoch over the train split with augmentation (every rank its shard)."""

    STATE = ("model", "optimizer", "scheduler")

    def __init__(self, config: PointCloudTrainConfig, model: nn.Module, train_set, context: distributed.DistContext,
                 checkpoint: Path):
        self.config, self.model, self.train_set, self.context = config, model, train_set, context
        self.checkpoint = checkpoint
        self.ddp_model = distributed.wrap(model, context)
        self.sampler = DistributedSampler(train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                          seed=config.seed, drop_last=True)
        self.loader = DataLoader(train_set, batch_size=config.batch_size, sampler=self.sampler, drop_last=True)
        self.optimizer, self.scheduler = make_optimizer(config, model, len(self.loader))
        self.up_axis = config.up_axis or train_set.up_axis
        self.augmentation = AugmentConfig(rotation=parse_protocol_pair(config.rotation)[0], scale_low=config.scale[0],
                                          scale_high=config.scale[1], jitter_sigma=config.jitter,
                                          jitter_clip=5 * config.jitter)

    def step(self, epoch: int) -> dict[str, float]:
        """Train one epoch; the learning rate at its start, and loss and accuracy averaged over all ranks."""
        config, context = self.config, self.context
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 1009 + context.rank)
        lr = self.optimizer.param_groups[0]["lr"]
        self.ddp_model.train()
        totals = torch.zeros(3, dtype=torch.float64)  # loss · items, correct, counted
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}", leave=False,
                   disable=not (config.progress and context.is_main))
        for batch in bar:
            batch = to_device(augment(batch, self.augmentation, generator, self.up_axis), context.device)
            logits = forward(self.ddp_model, batch, config.task, self.train_set.num_classes)
            loss, target = loss_and_target(logits, batch, config.task, config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            with torch.no_grad():
                valid = target >= 0
                correct = ((logits.argmax(-1) == target) & valid).sum()
                totals += torch.tensor([loss.item() * len(target), correct.item(), valid.sum().item()],
                                       dtype=torch.float64)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        totals = distributed.all_reduce_sum(totals, context)
        distributed.average_buffers(self.model, context)
        items = len(self.loader) * config.batch_size * context.world_size
        return {"lr": lr, "train/loss": totals[0].item() / max(items, 1),
                "train/acc": totals[1].item() / max(totals[2].item(), 1)}


@torch.no_grad()
def evaluate_model(model: nn.Module, config: PointCloudTrainConfig, test_set, test_protocol: str,
                   context: distributed.DistContext, batch_size: int | None = None,
                   examples: int = 0) -> dict[str, Any]:
    """Evaluate ``model`` on this rank's shard of ``test_set`` under ``test_protocol``: item ``i`` is rotated by
    the run's fixed test rotation ``i`` (:func:`priors3d.so3.evaluation_rotations` of the seed).

    Returns ``{"metrics": {...}, "confusion": [C, C] or None, "examples": [(points, truth, prediction)]}``;
    metrics are summed over ranks: ``loss``, ``oa``, ``macc`` (cls) or ``instance_miou``, ``class_miou``,
    ``point_acc`` (seg).
    """
    task, num_classes = config.task, test_set.num_classes
    shard = range(context.rank, len(test_set), context.world_size)
    loader = DataLoader(test_set, batch_size=batch_size or config.batch_size, sampler=shard)
    rotations = evaluation_rotations(test_protocol, len(test_set), config.seed, config.up_axis or test_set.up_axis)
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    meter = SegmentationMeter(seg_table(test_set)) if task == "seg" else None
    totals = torch.zeros(4, dtype=torch.float64)  # loss · items, correct points, counted points, items
    totals[3] = len(shard)
    kept = []
    batches = tqdm(loader, desc="test", leave=False, disable=not (config.progress and context.is_main))
    for batch, index in zip(batches, torch.tensor(shard).split(loader.batch_size)):
        batch = to_device(dict(batch, points=batch["points"] @ rotations[index]), context.device)
        logits = forward(model, batch, task, num_classes)
        loss, target = loss_and_target(logits, batch, task, config.label_smoothing)
        totals[0] += loss.item() * len(target)
        if task == "cls":
            confusion += confusion_matrix(logits.argmax(-1).cpu(), target.cpu(), num_classes)
            continue
        pred = restricted_prediction(logits, batch["label"], meter.seg_classes)
        meter.update(pred, target, batch["label"])
        valid = target >= 0
        totals[1] += ((pred == target) & valid).sum().item()
        totals[2] += valid.sum().item()
        for i in range(min(examples - len(kept), len(pred))):
            kept.append((batch["points"][i].cpu(), target[i].cpu(), pred[i].cpu()))
    totals = distributed.all_reduce_sum(totals, context)
    metrics = {"loss": totals[0].item() / max(totals[3].item(), 1)}
    if task == "cls":
        confusion = distributed.all_reduce_sum(confusion, context)
        metrics.update(classification_metrics(confusion))
    else:
        iou_sum, shape_count = (distributed.all_reduce_sum(x, context) for x in (meter.iou_sum, meter.count))
        metrics.update(segmentation_metrics(iou_sum, shape_count),
                       point_acc=totals[1].item() / max(totals[2].item(), 1))
    return {"metrics": metrics, "confusion": confusion if task == "cls" else None, "examples": kept}


# --- run directory ------------------------------------------------------------------------------

def write_csv(run: RunDir, records: list[dict[str, Any]]) -> None:
    """``metrics.csv``: one row per record, the union of their keys as columns."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(records)
    atomic_write(run.path("metrics.csv"), lambda p: p.write_text(buffer.getvalue()))


def save_pictures(run: RunDir, result: dict[str, Any], class_names: list[str], num_parts: int, title: str) -> None:
    """``confusion.png`` (cls) or ``segmentation.png`` (truth and prediction of a few test shapes)."""
    if result["confusion"] is not None:
        save_figure(run.path("confusion.png"), viz.confusion_figure(result["confusion"], class_names, title=title))
    if result["examples"]:
        clouds, labels, titles = zip(*[(points, label, f"shape {i}: {kind}")
                                       for i, (points, truth, pred) in enumerate(result["examples"])
                                       for label, kind in ((truth, "truth"), (pred, "prediction"))])
        save_figure(run.path("segmentation.png"),
                    viz.point_clouds(clouds, labels, titles, columns=4, num_labels=num_parts))


CURVES = ("train/loss", "test/loss", "train/acc", "test/oa", "test/macc", "test/instance_miou", "test/class_miou")


# --- runs ---------------------------------------------------------------------------------------

def train_pointcloud(config: PointCloudTrainConfig,
                     context: distributed.DistContext) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or resume) the run ``config`` describes; returns the model and its final test metrics.

    Every rank of a data-parallel run calls this with its ``context``; rank 0 writes the run.
    """
    config = resolve(config)
    test_protocol = parse_protocol_pair(config.rotation)[1]
    title = f"{config.model} {config.task} {config.rotation}"
    with engine.start(config, KIND, writer=context.is_main) as run:
        train_set, test_set = load_split(config, "train"), load_split(config, "test")
        if len(train_set) < config.batch_size * context.world_size:
            raise ValueError(f"the train split has {len(train_set)} items, fewer than one batch of "
                             f"{config.batch_size} x {context.world_size} processes")
        model = build_run_model(config, train_set).to(context.device)
        trainer = PointCloudTrainer(config, model, train_set, context, run.path("checkpoint.pt"))
        distributed.barrier(context)

        def test(examples: int = 0) -> dict[str, Any]:
            return evaluate_model(model, config, test_set, test_protocol, context, examples=examples)

        def report(rows: list[dict[str, Any]], final: bool = False) -> None:
            if final or rows[-1]["step"] < config.epochs:  # the last epoch's row waits for the final test
                write_csv(run, rows)
                save_figure(run.path("curves.png"), viz.training_curves(rows, CURVES, title=title))

        done = run.train(trainer, config.epochs, eval_every=config.eval_every, desc=title,
                         evaluate=lambda step: {f"test/{k}": v for k, v in test()["metrics"].items()},
                         on_log=report if context.is_main else None)
        result = test(examples=4)
        if context.is_main:
            rows = run.read_metrics()
            rows[-1] = rows[-1] | {f"test/{k}": v for k, v in result["metrics"].items()}
            report(rows, final=True)
            save_pictures(run, result, train_set.class_names, train_set.num_parts, title)
            save_json(run.path("metrics.json"), {**done, "rotation": test_protocol, **result["metrics"]})
        distributed.barrier(context)
    return model, result["metrics"]


def build_run_model(config: PointCloudTrainConfig, dataset) -> nn.Module:
    """The model a run's (resolved) config describes, sized for ``dataset``'s classes and parts."""
    return build_model(config.model, config.task, dataset.num_classes, dataset.num_parts or None, k=config.k,
                       pooling=config.pooling, width_divisor=config.width_divisor, frame=config.frame)


def load_weights(model: nn.Module, state: dict[str, Tensor], path: Path) -> nn.Module:
    """``model`` after ``model.load_state_dict(state)``, or a ValueError naming the checkpoint when they do not
    match."""
    own = model.state_dict()
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    resized = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or resized:
        raise ValueError(f"{path} does not fit the {type(model).__name__} that the run's options describe "
                         f"({len(missing)} missing, {len(unexpected)} unexpected and {len(resized)} resized tensors, "
                         f"e.g. {(missing + unexpected + resized)[0]!r}): resume with the options of the run's "
                         f"config.json (same model and sizes), or train into another --out")
    model.load_state_dict(state)
    return model


def open_trained(run_dir: Path, config_class: type, kind: str, command: str) -> tuple[Any, dict[str, Tensor], Path]:
    """A trained run's config (a ``config_class``), model weights and checkpoint path (for :func:`load_weights`)."""
    run = open_run(run_dir, kind, command)
    config = config_from_dict(config_class, run.read_config()["config"], str(run.path("config.json")))
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"{run.path('checkpoint.pt')} not found: the run has not finished an epoch")
    return config, checkpoint["trainer"]["model"], run.path("checkpoint.pt")


def load_run(run_dir: Path, device: torch.device) -> tuple[PointCloudTrainConfig, nn.Module, Any]:
    """A trained run's config, model (weights loaded, eval mode) and test split."""
    config, weights, path = open_trained(run_dir, PointCloudTrainConfig, KIND, "priors3d pointcloud eval")
    test_set = load_split(dataclasses.replace(config, progress=False), "test")
    return config, load_weights(build_run_model(config, test_set), weights, path).to(device).eval(), test_set


def protocol_table(results: dict[str, dict[str, float]], protocols: tuple[str, ...], metric: str,
                   spread: dict[str, dict[str, float]] | None = None) -> str:
    """Markdown table, a row per model and a column per ``TRAIN/TEST`` protocol, values in percent
    (``mean ± spread`` where ``spread`` is given)."""
    titles = ["/".join(parse_protocol_pair(pair)).replace("so3", "SO(3)") for pair in protocols]
    lines = [f"| Model ({metric}, %) | " + " | ".join(titles) + " |", "|---" * (len(protocols) + 1) + "|"]
    for model, row in results.items():
        cells = [("–" if pair not in row else f"{100 * row[pair]:.1f}"
                  + (f" ± {100 * spread[model][pair]:.1f}" if spread else "")) for pair in protocols]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_run_name(model: str, train_protocol: str, seed: int | None = None) -> str:
    """The directory, inside the protocols' ``out``, of one run: ``<model>-<protocol>[-seed<S>]``."""
    return f"{model}-{train_protocol}" + ("" if seed is None else f"-seed{seed}")


def run_protocols(train: PointCloudTrainConfig, models: tuple[str, ...], protocols: tuple[str, ...], out: Path,
                  seeds: tuple[int, ...], context: distributed.DistContext) -> dict[str, dict[str, float]]:
    """Train each model once per train protocol of the ``TRAIN/TEST`` pairs (and per seed; none: ``train.seed``)
    into ``out/<model>-<protocol>[-seed<S>]``, evaluate every pair, write ``protocols.md`` (the table, mean ±
    standard deviation over several seeds) and ``protocols.json``; returns the metric per model and pair (the
    mean over seeds)."""
    pairs = [parse_protocol_pair(p) for p in protocols]
    metric = "oa" if train.task == "cls" else "instance_miou"
    per_seed: dict[str, dict[str, list[float]]] = {}
    for model_name in models:
        per_seed[model_name] = {f"{a}/{b}": [] for a, b in pairs}
        for seed in seeds or (train.seed,):
            for train_protocol in dict.fromkeys(a for a, _ in pairs):
                tests = [b for a, b in pairs if a == train_protocol]
                name = protocol_run_name(model_name, train_protocol, seed if seeds else None)
                config = resolve(dataclasses.replace(train, model=model_name, seed=seed, out=out / name,
                                                     rotation=f"{train_protocol}/{tests[0]}"))
                model, metrics = train_pointcloud(config, context)
                per_seed[model_name][f"{train_protocol}/{tests[0]}"].append(metrics[metric])
                test_set = load_split(dataclasses.replace(config, progress=False), "test")
                for test in tests[1:]:
                    result = evaluate_model(model, config, test_set, test, context)
                    per_seed[model_name][f"{train_protocol}/{test}"].append(result["metrics"][metric])
    results = {m: {pair: statistics.mean(v) for pair, v in row.items()} for m, row in per_seed.items()}
    spread = ({m: {pair: statistics.stdev(v) for pair, v in row.items()} for m, row in per_seed.items()}
              if len(seeds) > 1 else None)
    if context.is_main:
        table = protocol_table(results, tuple(f"{a}/{b}" for a, b in pairs), metric, spread)
        save_json(out / "protocols.json", {"metric": metric, "results": results, "per_seed": per_seed,
                                           "config": {"models": models, "protocols": protocols, "seeds": seeds,
                                                      "train": train}})
        atomic_write(out / "protocols.md", lambda p: p.write_text(table + "\n"))
        print(table)
    return results
