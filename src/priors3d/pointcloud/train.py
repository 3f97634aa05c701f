"""Train and evaluate point-cloud models under rotation protocols: ``priors3d pointcloud train|eval|protocols``.

A protocol ``TRAIN/TEST`` (``z/so3``) says how shapes are rotated: during training (fresh random
rotations every step: ``none``, ``z`` about the data set's up axis, or ``so3``) and at test time (one
fixed rotation per test shape, drawn from the seed, so every model sees the same test set).

Runs are single-process by default and data-parallel under ``torchrun --nproc_per_node=K`` (see
:mod:`priors3d.pointcloud.distributed`). A run directory holds ``config.json``, ``metrics.jsonl`` /
``metrics.csv`` (one row per epoch), ``checkpoint.pt`` (written atomically after every epoch, resumed
with ``--resume``) and pictures: ``curves.png``, ``confusion.png`` (classification) or
``segmentation.png`` (a few test shapes, truth and prediction).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from priors3d import viz
from priors3d.pointcloud import distributed
from priors3d.pointcloud.data import make_dataset
from priors3d.pointcloud.data.transforms import AugmentConfig, augment
from priors3d.pointcloud.metrics import (
    SegmentationMeter,
    classification_metrics,
    restricted_prediction,
    segmentation_metrics,
)
from priors3d.metrics import confusion_matrix
from priors3d.pointcloud.models import DEFAULT_FRAME, build_model
from priors3d.runs import RunDir, atomic_write, save_figure, save_json, seed_everything
from priors3d.so3 import parse_protocol_pair, rotations_for_protocol

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-2}
ModelName = Literal["vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn"]
PAPER = dict(n_points=1024, k=None, width_divisor=1, batch_size=32, epochs=250, per_class=None, test_per_class=None,
             optimizer="sgd", frame="point")


@dataclasses.dataclass
class TrainConfig:
    """Options of ``priors3d pointcloud train``. Defaults finish in minutes on two CPU cores."""

    model: ModelName = "vn_dgcnn"
    task: Literal["cls", "seg"] = "cls"
    """cls: shape classification; seg: part segmentation (the category is given as a one-hot input)."""
    dataset: Literal["synthetic", "modelnet40", "shapenetpart"] = "synthetic"
    root: Path | None = None
    """Data folder (cache folder for synthetic, default ~/.cache/priors3d)."""
    per_class: int | None = 64
    """Synthetic only: train shapes per category (None: the data set's default, 256)."""
    test_per_class: int | None = 16
    """Synthetic only: test shapes per category (None: the data set's default, 64)."""
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
    scale: tuple[float, float] = (0.8, 1.25)
    """Training augmentation: anisotropic scale range ((1, 1) turns it off)."""
    jitter: float = 0.01
    """Training augmentation: per-point Gaussian noise (std, clipped at 5 sigma)."""
    seed: int = 0
    device: str = "auto"
    """auto (cuda if available), cpu, cuda, cuda:1..."""
    threads: int | None = None
    """torch CPU threads per process (None: torch's default)."""
    out: Path | None = None
    """Run directory (None: runs/pointcloud/<model>-<task>-<train>-<test>)."""
    resume: bool = False
    """Continue from out/checkpoint.pt."""
    eval_every: int = 1
    """Evaluate on the test split every this many epochs (and after the last)."""
    progress: bool = True


@dataclasses.dataclass
class EvalConfig:
    """Options of ``priors3d pointcloud eval``."""

    run: tyro.conf.Positional[Path]
    """Run directory written by ``priors3d pointcloud train``."""
    rotation: Literal["none", "z", "so3"] | None = None
    """Test rotation protocol (None: the run's)."""
    batch_size: int | None = None
    device: str = "auto"
    threads: int | None = None


@dataclasses.dataclass
class ProtocolsConfig:
    """Options of ``priors3d pointcloud protocols``: train every model once per train protocol, test each pair."""

    models: tuple[ModelName, ...] = ("vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn")
    protocols: tuple[str, ...] = ("z/z", "z/so3", "so3/so3")
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Training options shared by every run (model, rotation and out are set per run)."""
    seeds: tuple[int, ...] = ()
    """Several seeds: one run per model, protocol and seed (``<model>-<protocol>-seed<S>``), and the table
    gives mean ± standard deviation over seeds. Empty: one run with ``train.seed``."""
    out: Path = Path("runs/pointcloud/protocols")


# --- configuration ------------------------------------------------------------------------------

def resolve(config: TrainConfig) -> TrainConfig:
    """Apply ``paper`` and check the options; returns the config a run records."""
    if config.paper:
        config = dataclasses.replace(config, paper=False, **PAPER)
    parse_protocol_pair(config.rotation)
    if config.frame is None:
        config = dataclasses.replace(config, frame=DEFAULT_FRAME[config.task])
    if config.lr is None:
        config = dataclasses.replace(config, lr=DEFAULT_LR[config.optimizer])
    for name in ("n_points", "batch_size", "epochs", "eval_every", "width_divisor"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    if config.out is None:
        train, test = parse_protocol_pair(config.rotation)
        config = dataclasses.replace(config, out=Path("runs/pointcloud") / f"{config.model}-{config.task}-{train}-{test}")
    return config


def config_from_json(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from the ``config`` entry of a run's ``config.json``."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"config.json has unknown training options {unknown}")
    values = dict(values)
    for name in ("root", "out"):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    if "scale" in values:
        values["scale"] = tuple(values["scale"])
    return TrainConfig(**values)


# --- data ---------------------------------------------------------------------------------------

class Indexed(Dataset):
    """Adds ``index`` to each item of a dict data set (to look up per-item test rotations)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return dict(self.dataset[index], index=torch.tensor(index))


def load_split(config: TrainConfig, split: str):
    """The train or test split named by ``config``."""
    extra = {}
    if config.dataset == "synthetic":
        per_class = config.per_class if split == "train" else config.test_per_class
        extra = dict(per_class=per_class, progress=config.progress)
    sample = "random" if split == "train" and config.dataset != "synthetic" else "first"
    return make_dataset(config.dataset, config.root, split, config.n_points, config.task, sample=sample,
                        seed=config.seed, **extra)


def seg_table(dataset) -> list[list[int]]:
    """Each category's global part ids, in label order."""
    return [list(dataset.seg_classes[name]) for name in dataset.class_names]


def test_rotations(protocol: str, n: int, up_axis: str, seed: int) -> Tensor:
    """``[n, 3, 3]``: one fixed rotation per test item, from ``seed`` (the same for every model)."""
    return rotations_for_protocol(protocol, n, up_axis, torch.Generator().manual_seed(seed + 104729))


# --- steps --------------------------------------------------------------------------------------

def forward(model: nn.Module, batch: dict[str, Tensor], task: str, num_classes: int) -> Tensor:
    """Logits ``[B, classes]`` or ``[B, N, parts]`` for a batch (seg models also get the category one-hot)."""
    if task == "cls":
        return model(batch["points"])
    return model(batch["points"], F.one_hot(batch["label"], num_classes).to(batch["points"].dtype))


def loss_and_target(logits: Tensor, batch: dict[str, Tensor], task: str, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """Cross-entropy (void parts ``-1`` ignored) and the targets it compared against."""
    if task == "cls":
        target = batch["label"]
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing), target
    target = batch["parts"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-1,
                           label_smoothing=label_smoothing)
    return loss, target


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def make_optimizer(config: TrainConfig, model: nn.Module, steps_per_epoch: int):
    """SGD (momentum, weight decay) or Adam; per-batch schedule: linear warm-up, then cosine decay to lr / 100."""
    lr = DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(model: nn.Module, loader: DataLoader, optimizer, scheduler, config: TrainConfig, num_classes: int,
                up_axis: str, generator: torch.Generator, context: distributed.DistContext,
                description: str) -> dict[str, float]:
    """One pass over ``loader`` with augmentation; returns loss and accuracy averaged over all ranks."""
    model.train()
    train_protocol, _ = parse_protocol_pair(config.rotation)
    augmentation = AugmentConfig(rotation=train_protocol, scale_low=config.scale[0], scale_high=config.scale[1],
                                 jitter_sigma=config.jitter, jitter_clip=5 * config.jitter)
    totals = torch.zeros(3, dtype=torch.float64)  # loss · items, correct, counted
    bar = tqdm(loader, desc=description, leave=False, disable=not (config.progress and context.is_main))
    for batch in bar:
        batch = to_device(augment(batch, augmentation, generator, up_axis), context.device)
        logits = forward(model, batch, config.task, num_classes)
        loss, target = loss_and_target(logits, batch, config.task, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            valid = target >= 0
            correct = ((logits.argmax(-1) == target) & valid).sum()
            totals += torch.tensor([loss.item() * len(target), correct.item(), valid.sum().item()], dtype=torch.float64)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    totals = distributed.all_reduce_sum(totals, context)
    items = len(loader) * loader.batch_size * context.world_size
    return {"train/loss": totals[0].item() / max(items, 1), "train/acc": totals[1].item() / max(totals[2].item(), 1)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, rotations: Tensor, task: str, num_classes: int,
             seg_classes: list[list[int]] | None, context: distributed.DistContext, label_smoothing: float = 0.0,
             examples: int = 0, progress: bool = True) -> dict[str, Any]:
    """Metrics on a test loader whose items carry ``index``; item ``i`` is rotated by ``rotations[i]``.

    Returns ``{"metrics": {...}, "confusion": [C, C] or None, "examples": [(points, truth, prediction)]}``;
    metrics are summed over ranks: ``loss``, ``oa``, ``macc`` (cls) or ``instance_miou``, ``class_miou``,
    ``point_acc`` (seg).
    """
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    meter = SegmentationMeter(seg_classes) if task == "seg" else None
    totals = torch.zeros(3, dtype=torch.float64)  # loss · items, correct points, counted points
    kept = []
    for batch in tqdm(loader, desc="test", leave=False, disable=not (progress and context.is_main)):
        batch = dict(batch, points=batch["points"] @ rotations[batch["index"]])
        batch = to_device(batch, context.device)
        logits = forward(model, batch, task, num_classes)
        loss, target = loss_and_target(logits, batch, task, label_smoothing)
        totals[0] += loss.item() * len(target)
        if task == "cls":
            confusion += confusion_matrix(logits.argmax(-1).cpu(), target.cpu(), num_classes)
            continue
        pred = restricted_prediction(logits, batch["label"], seg_classes)
        meter.update(pred, target, batch["label"])
        valid = target >= 0
        totals[1] += ((pred == target) & valid).sum().item()
        totals[2] += valid.sum().item()
        for i in range(min(examples - len(kept), len(pred))):
            kept.append((batch["points"][i].cpu(), target[i].cpu(), pred[i].cpu()))
    totals = distributed.all_reduce_sum(totals, context)
    count = torch.tensor([float(len(loader.sampler))], dtype=torch.float64)
    count = distributed.all_reduce_sum(count, context).item()
    metrics = {"loss": totals[0].item() / max(count, 1)}
    if task == "cls":
        confusion = distributed.all_reduce_sum(confusion, context)
        metrics.update(classification_metrics(confusion))
        return {"metrics": metrics, "confusion": confusion, "examples": kept}
    iou_sum = distributed.all_reduce_sum(meter.iou_sum, context)
    shape_count = distributed.all_reduce_sum(meter.count, context)
    metrics.update(segmentation_metrics(iou_sum, shape_count), point_acc=totals[1].item() / max(totals[2].item(), 1))
    return {"metrics": metrics, "confusion": None, "examples": kept}


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
        save_figure(run.path("confusion.png"), viz.confusion_matrix(result["confusion"], class_names, title=title))
    if result["examples"]:
        clouds, labels, titles = [], [], []
        for i, (points, truth, pred) in enumerate(result["examples"]):
            clouds += [points, points]
            labels += [truth, pred]
            titles += [f"shape {i}: truth", f"shape {i}: prediction"]
        save_figure(run.path("segmentation.png"),
                    viz.point_clouds(clouds, labels, titles, columns=4, num_labels=num_parts))


CURVES = ("train/loss", "test/loss", "train/acc", "test/oa", "test/macc", "test/instance_miou", "test/class_miou")


# --- commands -----------------------------------------------------------------------------------

def fit(config: TrainConfig, context: distributed.DistContext) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or resume) the run ``config`` describes; returns the model and the final test metrics."""
    config = resolve(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    train_set, test_set = load_split(config, "train"), load_split(config, "test")
    if len(train_set) < config.batch_size * context.world_size:
        raise ValueError(f"the train split has {len(train_set)} items, fewer than one batch of "
                         f"{config.batch_size} x {context.world_size} processes")
    up_axis = config.up_axis or train_set.up_axis
    _, test_protocol = parse_protocol_pair(config.rotation)
    num_classes = train_set.num_classes
    seg_classes = seg_table(train_set) if config.task == "seg" else None
    model = build_run_model(config, train_set).to(context.device)

    ddp_model = distributed.wrap(model, context)
    sampler = DistributedSampler(train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    optimizer, scheduler = make_optimizer(config, model, len(train_loader))
    test_loader = DataLoader(Indexed(test_set), batch_size=config.batch_size,
                             sampler=distributed.ShardSampler(len(test_set), context.rank, context.world_size))
    rotations = test_rotations(test_protocol, len(test_set), up_axis, config.seed)
    title = f"{config.model} {config.task} {config.rotation}"

    run = RunDir(config.out)
    start_epoch = 0
    checkpoint = run.load_checkpoint() if config.resume else None
    if checkpoint is not None:
        load_weights(model, checkpoint["model"], run.path("checkpoint.pt"))
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch = checkpoint["epoch"]
    elif context.is_main:
        run.write_config(config, config.seed)
        for stale in ("metrics.jsonl", "metrics.csv"):
            run.path(stale).unlink(missing_ok=True)
    distributed.barrier(context)

    result: dict[str, Any] = {"metrics": checkpoint.get("test", {}) if checkpoint else {}}
    for epoch in range(start_epoch, config.epochs):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 1009 + context.rank)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record |= train_epoch(ddp_model, train_loader, optimizer, scheduler, config, num_classes, up_axis, generator,
                              context, f"epoch {epoch + 1}/{config.epochs}")
        distributed.average_buffers(model, context)
        evaluated = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
        if evaluated:
            result = evaluate(model, test_loader, rotations, config.task, num_classes, seg_classes, context,
                              config.label_smoothing, examples=4, progress=config.progress)
            record |= {f"test/{key}": value for key, value in result["metrics"].items()}
        record["seconds"] = time.perf_counter() - start
        if context.is_main:
            run.log_metrics(record)
            records = run.read_metrics()
            write_csv(run, records)
            run.save_checkpoint({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "test": result["metrics"]})
            save_figure(run.path("curves.png"), viz.training_curves(records, CURVES, title=title))
            if evaluated:
                save_pictures(run, result, train_set.class_names, train_set.num_parts, title)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                  flush=True)
        distributed.barrier(context)
    return model, result["metrics"]


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a point-cloud model under a rotation protocol (run with torchrun for several processes)."""
    context = distributed.setup(config.device)
    try:
        return fit(config, context)[1]
    finally:
        distributed.cleanup(context)


def build_run_model(config: TrainConfig, dataset) -> nn.Module:
    """The model a run's (resolved) config describes, sized for ``dataset``'s classes and parts."""
    return build_model(config.model, config.task, dataset.num_classes, dataset.num_parts or None, k=config.k,
                       pooling=config.pooling, width_divisor=config.width_divisor, frame=config.frame)


def load_weights(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``, with an error that names the checkpoint when they do not match."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the {type(model).__name__} that the run's config.json describes "
                         f"(a checkpoint of an earlier priors3d version?): {error}") from None


def load_run(run_dir: Path, device: torch.device) -> tuple[TrainConfig, nn.Module, Any]:
    """A finished run's config, model (weights loaded, eval mode) and test split."""
    run = RunDir(run_dir)
    if not run.path("config.json").is_file():
        raise FileNotFoundError(f"{run.path('config.json')} not found: expected a run directory written by "
                                "'priors3d pointcloud train'")
    config = config_from_json(json.loads(run.path("config.json").read_text())["config"])
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"{run.path('checkpoint.pt')} not found: the run has not finished an epoch")
    test_set = load_split(dataclasses.replace(config, progress=False), "test")
    model = build_run_model(config, test_set)
    load_weights(model, checkpoint["model"], run.path("checkpoint.pt"))
    return config, model.to(device).eval(), test_set


def evaluate_model(model: nn.Module, config: TrainConfig, test_set, test_protocol: str,
                   context: distributed.DistContext, batch_size: int | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``test_set`` under ``test_protocol`` with the run's fixed test rotations."""
    loader = DataLoader(Indexed(test_set), batch_size=batch_size or config.batch_size,
                        sampler=distributed.ShardSampler(len(test_set), context.rank, context.world_size))
    rotations = test_rotations(test_protocol, len(test_set), config.up_axis or test_set.up_axis, config.seed)
    seg_classes = seg_table(test_set) if config.task == "seg" else None
    return evaluate(model, loader, rotations, config.task, test_set.num_classes, seg_classes, context,
                    config.label_smoothing, progress=config.progress)


def evaluate_run(config: EvalConfig) -> dict[str, float]:
    """Evaluate a trained run on its test split under a rotation protocol; writes eval-<protocol>.json."""
    context = distributed.setup(config.device)
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        train_config, model, test_set = load_run(config.run, context.device)
        protocol = config.rotation or parse_protocol_pair(train_config.rotation)[1]
        result = evaluate_model(model, train_config, test_set, protocol, context, config.batch_size)
        metrics = result["metrics"]
        if context.is_main:
            save_json(Path(config.run) / f"eval-{protocol}.json", {"rotation": protocol, **metrics})
            print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        return metrics
    finally:
        distributed.cleanup(context)


PROTOCOL_TITLES = {"none": "none", "z": "z", "so3": "SO(3)"}


def protocol_table(results: dict[str, dict[str, float]], protocols: tuple[str, ...], metric: str,
                   spread: dict[str, dict[str, float]] | None = None) -> str:
    """Markdown table, a row per model and a column per ``TRAIN/TEST`` protocol, values in percent
    (``mean ± spread`` where ``spread`` is given)."""
    titles = ["/".join(PROTOCOL_TITLES[p] for p in parse_protocol_pair(pair)) for pair in protocols]
    lines = [f"| Model ({metric}, %) | " + " | ".join(titles) + " |", "|---" * (len(protocols) + 1) + "|"]
    for model, row in results.items():
        cells = [("–" if pair not in row else f"{100 * row[pair]:.1f}"
                  + (f" ± {100 * spread[model][pair]:.1f}" if spread else "")) for pair in protocols]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_run_name(model: str, train_protocol: str, seed: int | None = None) -> str:
    """The directory, inside ``ProtocolsConfig.out``, of one run: ``<model>-<protocol>[-seed<S>]``."""
    return f"{model}-{train_protocol}" + ("" if seed is None else f"-seed{seed}")


def protocols(config: ProtocolsConfig) -> dict[str, dict[str, float]]:
    """Train each model once per train protocol (and seed), evaluate every TRAIN/TEST pair, write a Markdown
    table; returns the metric per model and pair (the mean over seeds)."""
    pairs = [parse_protocol_pair(p) for p in config.protocols]
    metric = "oa" if config.train.task == "cls" else "instance_miou"
    context = distributed.setup(config.train.device)
    per_seed: dict[str, dict[str, list[float]]] = {}
    try:
        for model_name in config.models:
            per_seed[model_name] = {f"{a}/{b}": [] for a, b in pairs}
            for seed in config.seeds or (config.train.seed,):
                for train_protocol in dict.fromkeys(train for train, _ in pairs):
                    tests = [test for train, test in pairs if train == train_protocol]
                    name = protocol_run_name(model_name, train_protocol, seed if config.seeds else None)
                    run_config = dataclasses.replace(config.train, model=model_name, seed=seed, out=config.out / name,
                                                     rotation=f"{train_protocol}/{tests[0]}")
                    model, metrics = fit(run_config, context)
                    per_seed[model_name][f"{train_protocol}/{tests[0]}"].append(metrics[metric])
                    run_config = resolve(run_config)
                    test_set = load_split(dataclasses.replace(run_config, progress=False), "test")
                    for test in tests[1:]:
                        result = evaluate_model(model, run_config, test_set, test, context)
                        per_seed[model_name][f"{train_protocol}/{test}"].append(result["metrics"][metric])
        results = {m: {pair: statistics.mean(v) for pair, v in row.items()} for m, row in per_seed.items()}
        spread = ({m: {pair: statistics.stdev(v) for pair, v in row.items()} for m, row in per_seed.items()}
                  if len(config.seeds) > 1 else None)
        if context.is_main:
            table = protocol_table(results, tuple(f"{a}/{b}" for a, b in pairs), metric, spread)
            save_json(config.out / "protocols.json", {"metric": metric, "results": results, "per_seed": per_seed,
                                                      "config": config})
            atomic_write(config.out / "protocols.md", lambda p: p.write_text(table + "\n"))
            print(table)
        return results
    finally:
        distributed.cleanup(context)
