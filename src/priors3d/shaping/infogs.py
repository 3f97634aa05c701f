"""InfoGaussian: shape a decoder over fitted Gaussians (``shape_splats``) and find what a click selects.

``shape_splats`` labels every Gaussian with the mask id of the pixels it contributes most to (its
blending weights summed per label over the training views; Gaussians that reach no labelled pixel take
the majority id of their nearest labelled neighbours in 3D), the masks being label-free ``consistent``
segments by default (``shaping.sources``: the training images lifted with the views' depth maps or the
Gaussians' rendered depth) or ORACLE ground-truth maps, then fine-tunes a ``GaussianDecoder``
through the engine (kind ``splat shape``) with InfoNCE on the cosines of a random ~7 % of the
Gaussians' Jacobians, a 3D-neighbour smoothness term, a Jacobian-norm penalty and the photometric loss
of the decoded field. A shape run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``
(decoder, optimiser, generator, the Gaussians' ids and the masks they came from) and ``metrics.json``
(held-out PSNR before and after).
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from torch import Tensor
from tqdm import tqdm

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.fields.formats import fitted_scene
from priors3d.fields.gaussians import GaussianField
from priors3d.fields.rays import scene_aabb
from priors3d.fields.splat import render_gaussians
from priors3d.fields.splat_fit import SplatSetup, load_splats, photometric_loss
from priors3d.fields.views import Scene, Views
from priors3d.metrics import psnr
from priors3d.runs import config_from_dict, open_run, save_json
from priors3d.shaping.clicks import Click
from priors3d.shaping.sources import SegmentConfig, depth_geometry, label_free_source
from priors3d.shaping.decoder import (GaussianDecoder, decoded_attributes, decoder_deltas, nearest_neighbours,
                                      recall_leakage, render_decoded, shaping_terms, solve_edit)


@dataclass
class DecoderConfig:
    """Architecture of the shaped decoder (``GaussianDecoder``)."""

    n_freqs: int = 4
    feature_dim: int = 8
    """Learned per-Gaussian feature appended to the positional encoding (0 = positions only)."""
    hidden: int = 64
    layers: int = 2


@dataclass(kw_only=True)
class SplatShapeConfig(RunConfig):
    """Options of ``priors3d splat shape``."""

    run: tyro.conf.Positional[Path]
    """A run directory written by ``priors3d splat fit``."""
    out: Path = Path("runs/splat-shape")
    iterations: int = 600
    fraction: float = 0.07
    """Fraction of the Gaussians whose Jacobians enter each step."""
    lr: float = 1e-2
    head_lr: float = 1e-3
    """Learning rate of the last layer, which only the photometric term moves (noisy: one view a step)."""
    lam: float = 1.0
    """Weight of InfoNCE on the Jacobian cosines."""
    temperature: float = 0.3
    """InfoNCE temperature. Lower (0.05) leaves other objects' Jacobians correlated, so edits leak."""
    smooth: float = 0.1
    """Weight of ``mean(1 - cos)`` between each sampled Gaussian and its 3D neighbours."""
    neighbours: int = 8
    gamma: float = 1.0
    """Weight of the Jacobian-norm penalty ``mean((||J|| - 1)²)`` (equal lengths = equal moves)."""
    photo: float = 1.0
    """Weight of the L1 photometric loss of the decoded field on one random training view."""
    labels: Literal["consistent", "instance", "semantic"] = "consistent"
    """Which masks give each Gaussian its id: label-free ``consistent`` segments (``shaping.sources``), or the
    ORACLE ground-truth ``instance`` / ``semantic`` maps (for comparison only)."""
    segments: SegmentConfig = dataclass_field(default_factory=SegmentConfig)
    """Options of the label-free segments."""
    decoder: DecoderConfig = dataclass_field(default_factory=DecoderConfig)


def label_weights(field: GaussianField, deltas: Tensor, c2w: Tensor, intrinsics: Tensor, labels: Tensor,
                  n_labels: int, setup: SplatSetup) -> Tensor:
    """``[G, n_labels]``: each Gaussian's blending weights ``alpha_i T_i`` summed over the pixels of each label.

    One view (``c2w [4, 4]``, ``intrinsics [4]``) of ``field`` decoded with ``deltas [G, 7]``;
    ``labels [H, W]`` int64 (-1 = void: counted nowhere). The rendered image is linear in the
    colours, ``rgb_p = Σ_i w_pi c_i``, so rendering zero colours with one channel per label and
    differentiating ``Σ_p rgb_p · onehot(label_p)`` with respect to them gives ``Σ_p w_pi [label_p = k]``
    (the tiled rasteriser's weights, so each Gaussian counts where its 3σ box reaches).
    """
    decoded = decoded_attributes(field, deltas.detach())
    colors = torch.zeros(len(field), n_labels, requires_grad=True)
    out = render_gaussians(decoded["means"].detach(), field.covariances().detach(),
                           torch.sigmoid(decoded["opacity_logits"]).detach(), colors, c2w, intrinsics, *labels.shape,
                           **{**setup.options(), "background": None})
    onehot = F.one_hot(labels.clamp_min(0), n_labels).float() * (labels >= 0)[..., None]
    return torch.autograd.grad((out["rgb"] * onehot).sum(), colors)[0]


def fill_from_neighbours(points: Tensor, ids: Tensor, k: int = 8, chunk: int = 1024) -> Tensor:
    """``[G]`` ids where each -1 in ``ids [G]`` takes the most common id of its ``k`` nearest labelled
    ``points [G, 3]`` (all -1 if none is labelled)."""
    labelled = torch.nonzero(ids >= 0).squeeze(-1)
    missing = torch.nonzero(ids < 0).squeeze(-1)
    if labelled.numel() == 0 or missing.numel() == 0:
        return ids.clone()
    k = min(k, labelled.numel())
    near = torch.cat([torch.cdist(points[part], points[labelled]).topk(k, dim=1, largest=False).indices
                      for part in missing.split(chunk)])  # [M, k] positions in `labelled`
    return ids.index_put((missing,), ids[labelled][near].mode(dim=1).values)


def voted_labels(field: GaussianField, views: Views, labels: Tensor, setup: SplatSetup) -> Tensor:
    """``[G]`` mask id of each Gaussian: the label of the pixels it contributes most to in ``views``
    (blending weights summed per label, ``label_weights``); -1 for Gaussians that reach no labelled pixel.

    Args:
        labels: ``[V, H, W]`` int64 label maps of ``views`` (-1 void), with ids shared across views.
    """
    if labels.shape != (len(views), *views.hw):
        raise ValueError(f"labels must be [V, H, W] = [{len(views)}, {views.hw[0]}, {views.hw[1]}], "
                         f"got {list(labels.shape)}")
    n_labels = int(labels.max()) + 1
    votes = torch.zeros(len(field), max(n_labels, 1))
    deltas = torch.zeros(len(field), 7)
    for v in tqdm(range(len(views)) if n_labels > 0 else [], desc="label Gaussians", leave=False):
        votes += label_weights(field, deltas, views.c2w[v], views.intrinsics[v], labels[v], n_labels, setup)
    best, ids = votes.max(dim=1)
    return torch.where(best > 0, ids, torch.full_like(ids, -1))


def make_decoder(field: GaussianField, aabb: Tensor, cfg: DecoderConfig, seed: int = 0) -> GaussianDecoder:
    """A fresh (identity) decoder over ``field``'s Gaussians, seeded."""
    return GaussianDecoder(field.means.detach(), aabb, cfg.n_freqs, cfg.feature_dim, cfg.hidden, cfg.layers,
                           generator=torch.Generator().manual_seed(seed))


def shaping_step(decoder: GaussianDecoder, optimiser: torch.optim.Optimizer, ids: Tensor, neighbours: Tensor,
                 cfg: SplatShapeConfig, generator: torch.Generator,
                 photometric: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """One InfoGaussian step on ``cfg.fraction`` of the Gaussians; ``photometric(deltas [G, 7])`` adds
    the decoded field's image loss. Returns the loss terms."""
    n = max(2, round(cfg.fraction * len(decoder)))
    sample = torch.randperm(len(decoder), generator=generator)[:n]
    terms = shaping_terms(decoder, sample, ids, neighbours, cfg.temperature)
    loss = cfg.lam * terms["mi"] + cfg.smooth * terms["smooth"] + cfg.gamma * terms["norm"]
    if photometric is not None and cfg.photo > 0:
        terms["photo"] = photometric(decoder_deltas(decoder))
        loss = loss + cfg.photo * terms["photo"]
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return {name: value.item() for name, value in terms.items()}


def render_set(field: GaussianField, deltas: Tensor, views: Views, setup: SplatSetup) -> Tensor:
    """``[V, H, W, 3]`` renders of the decoded field."""
    with torch.no_grad():
        return torch.stack([render_decoded(field, deltas, views.c2w[v], views.intrinsics[v], *views.hw,
                                           **setup.options())["rgb"].clamp(0, 1) for v in range(len(views))])


def decoded_psnr(field: GaussianField, deltas: Tensor, views: Views, setup: SplatSetup) -> float:
    """Mean PSNR (dB) of the decoded field over ``views``."""
    return float(np.mean([psnr(r, gt) for r, gt in zip(render_set(field, deltas, views, setup), views.images)]))


class SplatShaper:
    """The engine's trainer for ``shape_splats``: one step = one ``shaping_step`` of a fresh decoder. A fresh
    run gives every Gaussian its mask id from the label maps ``labels [V, H, W]`` of ``views`` (None: resuming)."""

    def __init__(self, field: GaussianField, setup: SplatSetup, views: Views, aabb: Tensor, cfg: SplatShapeConfig,
                 generator: torch.Generator, labels: Tensor | None):
        self.field, self.setup, self.views, self.cfg, self.generator = field, setup, views, cfg, generator
        self.decoder = make_decoder(field, aabb, cfg.decoder, cfg.seed)
        head = [p for name, p in self.decoder.named_parameters() if name.startswith("head.")]
        rest = [p for name, p in self.decoder.named_parameters() if not name.startswith("head.")]
        self.optimiser = torch.optim.Adam([{"params": rest}, {"params": head, "lr": cfg.head_lr}], lr=cfg.lr)
        self.neighbours = nearest_neighbours(field.means.detach(), cfg.neighbours)
        self.images = views.images.float()
        self.ids: Tensor | None = None
        self.voted_fraction: float | None = None
        self.masks = labels
        if labels is not None:
            voted = voted_labels(field, views, labels, setup)
            self.ids = fill_from_neighbours(field.means.detach(), voted, cfg.neighbours)
            self.voted_fraction = float((voted >= 0).float().mean())

    def photometric(self, deltas: Tensor) -> Tensor:
        """L1 loss of the field decoded with ``deltas [G, 7]`` on one random training view."""
        v = int(torch.randint(len(self.views), (), generator=self.generator))
        out = render_decoded(self.field, deltas, self.views.c2w[v], self.views.intrinsics[v], *self.views.hw,
                             **self.setup.options())
        return photometric_loss(out["rgb"], self.images[v])

    def step(self, step: int) -> dict[str, float]:
        return shaping_step(self.decoder, self.optimiser, self.ids, self.neighbours, self.cfg, self.generator,
                            self.photometric)

    def state_dict(self) -> dict:
        return {"decoder": self.decoder.state_dict(), "optimiser": self.optimiser.state_dict(),
                "generator": self.generator.get_state(), "ids": self.ids, "voted_fraction": self.voted_fraction,
                "masks": self.masks}

    def load_state_dict(self, state: dict) -> None:
        self.decoder.load_state_dict(state["decoder"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.ids, self.voted_fraction, self.masks = state["ids"], state["voted_fraction"], state["masks"]


def shape_splats(field: GaussianField, setup: SplatSetup, scene: Scene, cfg: SplatShapeConfig) -> dict:
    """Shape a decoder over fitted Gaussians (see the module docstring); writes the run ``cfg.out``."""
    engine.resolve_device(cfg.device)
    if not 0 < cfg.fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {cfg.fraction}")
    if cfg.labels != "consistent" and getattr(scene.train, cfg.labels) is None:
        raise ValueError(f"labels={cfg.labels} (oracle) needs {cfg.labels} maps in the scene's training views; use "
                         f"the label-free labels=consistent")
    field.requires_grad_(False)
    with engine.start(cfg, "splat shape") as run:
        labels = None
        if run.checkpoint is None:
            labels = (splat_masks(field, setup, scene, cfg.segments) if cfg.labels == "consistent"
                      else getattr(scene.train, cfg.labels))
        trainer = SplatShaper(field, setup, scene.train, scene_aabb(scene), cfg, run.generator, labels)
        result = run.train(trainer, cfg.iterations, log_every=10, desc="splat shape")
        summary = {**result, "time_per_iter_s": result["train_time_s"] / max(result["step"], 1),
                   "psnr_before": decoded_psnr(field, torch.zeros(len(field), 7), scene.test, setup),
                   "psnr_after": decoded_psnr(field, decoder_deltas(trainer.decoder).detach(), scene.test, setup),
                   "gaussians": len(field), "voted_fraction": trainer.voted_fraction}
        save_json(run.path("metrics.json"), summary)
    return summary


def splat_masks(field: GaussianField, setup: SplatSetup, scene: Scene, cfg: SegmentConfig) -> Tensor:
    """Label-free ``consistent`` ids ``[V, H, W]`` of the training views, lifted with their depth maps (when
    ``cfg.measured_depth`` and the scene has them) or the Gaussians' rendered depth (where opacity > 0.5)."""
    views = scene.train
    if not (cfg.measured_depth and views.depth is not None):
        deltas = torch.zeros(len(field), 7)
        with torch.no_grad():
            renders = [render_decoded(field, deltas, views.c2w[v], views.intrinsics[v], *views.hw, **setup.options())
                       for v in range(len(views))]
        z_depth = torch.stack([torch.where(r["alpha"] > 0.5, r["depth"], 0.0) for r in renders])
    else:
        z_depth = views.depth
    return label_free_source(views, depth_geometry(views, z_depth), tuple(scene_aabb(scene).flatten().tolist()),
                             cfg).consistent


@dataclass
class ShapedRun:
    """What ``splat edit`` needs: the fitted Gaussians, how to render them, the decoder, the scene and
    each Gaussian's mask id ``ids [G]`` and the training views' label maps ``masks [V, H, W]`` they came
    from (both None for a ``splat fit`` run, which has no labels)."""

    field: GaussianField
    setup: SplatSetup
    decoder: GaussianDecoder
    scene: Scene
    ids: Tensor | None
    masks: Tensor | None


def load_shaped(run_dir: str | Path) -> ShapedRun:
    """A ``splat shape`` run; a ``splat fit`` run gives a fresh (unshaped) decoder and no labels."""
    run = open_run(run_dir, ("splat shape", "splat fit"), "splat edit")
    shaped = run.kind() == "splat shape"
    if shaped:
        cfg = config_from_dict(SplatShapeConfig, run.read_config()["config"], str(run.path("config.json")))
        checkpoint = run.load_checkpoint()
        if checkpoint is None:
            raise FileNotFoundError(f"{run.path('checkpoint.pt')} not found: the splat shape run in {run_dir} has "
                                    f"not saved a checkpoint yet")
    field, setup = load_splats(cfg.run if shaped else run_dir, "splat edit")
    field.requires_grad_(False)
    scene = fitted_scene(setup)
    decoder = make_decoder(field, scene_aabb(scene), cfg.decoder if shaped else DecoderConfig())
    if not shaped:
        return ShapedRun(field, setup, decoder, scene, None, None)
    decoder.load_state_dict(checkpoint["trainer"]["decoder"])
    return ShapedRun(field, setup, decoder, scene, checkpoint["trainer"]["ids"], checkpoint["trainer"]["masks"])


def clicked_gaussian(field: GaussianField, deltas: Tensor, views: Views, setup: SplatSetup, click: Click,
                     ids: Tensor | None = None, masks: Tensor | None = None) -> int:
    """The Gaussian a click selects in the field decoded with ``deltas [G, 7]``.

    Without the Gaussians' mask ids ``ids [G]``: the one with the largest blending weight at the pixel.
    With them, the largest among the Gaussians of the clicked object: the clicked pixel's id in
    ``masks [V, H, W]`` (the label maps of ``views`` that ``ids`` came from) when given and some
    Gaussian of it reaches the pixel, else the id with the largest summed weight there (the label the
    Gaussians render). So a click does not land on a Gaussian of another object that happens to
    dominate the pixel (a large floor Gaussian under a small box, say).
    """
    click.check(views)
    pixel = torch.full(views.hw, -1, dtype=torch.long)
    pixel[click.y, click.x] = 0
    weights = label_weights(field, deltas, views.c2w[click.view], views.intrinsics[click.view], pixel, 1,
                            setup)[:, 0]  # [G] blending weights at the clicked pixel
    if not bool((weights > 0).any()):
        raise ValueError(f"no Gaussian covers pixel x={click.x}, y={click.y} of view {click.view}; click on an object")
    if ids is None or not bool((ids >= 0).any()):
        return int(weights.argmax())
    label = None if masks is None else int(masks[click.view, click.y, click.x])
    if label is None or not bool((weights[ids == label] > 0).any()):
        known = ids >= 0
        label = int(torch.zeros(int(ids.max()) + 1).index_add_(0, ids[known], weights[known]).argmax())
    return int(torch.where(ids == label, weights, torch.zeros_like(weights)).argmax())


def edit_target(field: GaussianField, deltas: Tensor, g: int, op: str,
                offset: tuple[float, float, float] = (0.0, 0.0, 0.3),
                color: tuple[float, float, float] = (0.1, 0.8, 0.2)) -> tuple[str, Tensor]:
    """The decoder output an edit of Gaussian ``g`` changes (see ``decoder.OUTPUTS``) and by how much, for the field
    decoded with ``deltas [G, 7]``: ``move`` by ``offset``, ``recolor`` to ``color``, ``remove`` down to opacity
    0.001 (logit -6.9). The pair is what ``decoder.solve_edit`` takes."""
    if op == "move":
        return "motion", torch.tensor(offset, dtype=torch.float32)
    if op == "recolor":
        return "color", torch.tensor(color, dtype=torch.float32) - (field.colors[g].detach() + deltas[g, 3:6])
    if op == "remove":
        return "opacity", torch.tensor([-6.9]) - (field.opacity_logits[g].detach() + deltas[g, 6]).reshape(1)
    raise ValueError(f"op must be 'move', 'recolor' or 'remove', got {op!r}")


def move_metrics(field: GaussianField, setup: SplatSetup, decoder: GaussianDecoder, ids: Tensor, views: Views,
                 masks: Tensor, clicks: list[Click], offset: float = 0.3, truth: Tensor | None = None) -> dict:
    """Recall and leakage of an upward move of ``offset`` from each click (``recall_leakage`` over all
    Gaussians, objects = ``truth [G]``, default ``ids``), per object (the click's label) and averaged. Clicks
    select their Gaussian with ``clicked_gaussian``, the Gaussians' shaping ids ``ids [G]`` and the masks
    ``masks [V, H, W]`` of ``views`` they came from."""
    truth = ids if truth is None else truth
    with torch.no_grad():
        deltas = decoder_deltas(decoder)
    per_object = {}
    for click in tqdm(clicks, desc="edits", leave=False):
        g = clicked_gaussian(field, deltas, views, setup, click, ids, masks)
        theta = solve_edit(decoder, g, "motion", torch.tensor([0.0, 0.0, offset]))
        with torch.no_grad():
            moved = decoder_deltas(decoder, theta)[:, :3] - deltas[:, :3]
        per_object[click.label] = {**recall_leakage(moved, truth == click.label, offset),
                                   "clicked_gaussian_label": int(truth[g])}
    recalls = [m["recall"] for m in per_object.values() if not np.isnan(m["recall"])]
    return {"recall": float(np.mean(recalls)) if recalls else float("nan"),
            "leakage": float(np.mean([m["leakage"] for m in per_object.values()])),
            "drift": float(np.mean([m["drift"] for m in per_object.values()])), "per_object": per_object}
