"""InfoGaussian commands: ``priors3d splat shape`` (shape a decoder over fitted Gaussians) and
``priors3d splat edit`` (click a pixel; move, recolour or remove the object under it).

``shape`` labels every Gaussian with the mask id of the pixels it contributes most to (its blending
weights summed per label over the training views; Gaussians that reach no labelled pixel take the
majority id of their nearest labelled neighbours in 3D), then fine-tunes a ``GaussianDecoder`` with
InfoNCE on the cosines of a random ~7 % of the Gaussians' Jacobians, a 3D-neighbour smoothness term,
a Jacobian-norm penalty and the photometric loss of the decoded field. A shape run directory holds
``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (decoder, labels, the fit run it came from) and
``metrics.json`` (held-out PSNR before and after).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field as dataclass_field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from scipy import ndimage
from torch import Tensor
from tqdm import tqdm

from priors3d.fields.gaussians import GaussianField
from priors3d.fields.splat import render_gaussians
from priors3d.fields.splat_fit import SplatSetup, load_splats, photometric_loss
from priors3d.fields.formats import open_scene
from priors3d.metrics import psnr
from priors3d.viz import save_png
from priors3d.fields.rays import scene_aabb
from priors3d.fields.views import Scene, Views
from priors3d.runs import RunDir, save_json, seed_everything
from priors3d.shaping.decoder import (OUTPUTS, GaussianDecoder, decoded_attributes, decoder_deltas, knn,
                                      recall_leakage, render_decoded, shaping_terms, solve_edit)
from priors3d.shaping.edit import edit_picture
from priors3d.shaping.propagate import Click


@dataclass
class DecoderConfig:
    """Architecture of the shaped decoder (``GaussianDecoder``)."""

    n_freqs: int = 4
    feature_dim: int = 8
    """Learned per-Gaussian feature appended to the positional encoding (0 = positions only)."""
    hidden: int = 64
    layers: int = 2


@dataclass
class SplatShapeConfig:
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
    labels: Literal["instance", "semantic"] = "instance"
    """Which label maps give each Gaussian its mask id."""
    decoder: DecoderConfig = dataclass_field(default_factory=DecoderConfig)
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = False


@dataclass
class SplatEditConfig:
    """Options of ``priors3d splat edit``."""

    run: tyro.conf.Positional[Path]
    """A ``splat shape`` run (or a ``splat fit`` run: an unshaped decoder, for comparison)."""
    click: str = "0/32/32"
    """The clicked pixel ``view/x/y`` in the training views."""
    op: Literal["move", "recolor", "remove"] = "move"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.3)
    """Move: the clicked Gaussian's translation in world units (metres)."""
    color: tuple[float, float, float] = (0.1, 0.8, 0.2)
    """Recolour: the clicked Gaussian's new RGB."""
    steps: int = 2
    """Gauss-Newton steps of the edit (one is exact for the default ``θ_D``)."""
    views: int = 3
    """Test views drawn before | after | changed pixels."""
    out: Path | None = None
    """Where the PNG and metrics go (default ``<run>/edit-<op>``)."""


def label_weights(field: GaussianField, deltas: Tensor, c2w: Tensor, intrinsics: Tensor, labels: Tensor,
                  n_labels: int, setup: SplatSetup) -> Tensor:
    """``[G, n_labels]``: each Gaussian's blending weights ``alpha_i T_i`` summed over the pixels of each label.

    One view (``c2w [4, 4]``, ``intrinsics [4]``) of ``field`` decoded with ``deltas [G, 7]``;
    ``labels [H, W]`` int64 (-1 = void: counted nowhere). The rendered image is linear in the
    colours, ``rgb_p = Σ_i w_pi c_i``, so rendering zero colours with one channel per label and
    differentiating ``Σ_p rgb_p · onehot(label_p)`` with respect to them gives ``Σ_p w_pi [label_p = k]``
    (the tiled rasteriser's weights, so each Gaussian counts where its 3σ box reaches).
    """
    height, width = labels.shape
    decoded = decoded_attributes(field, deltas.detach())
    colors = torch.zeros(len(field), n_labels, requires_grad=True)
    out = render_gaussians(decoded["means"].detach(), field.covariances().detach(),
                           torch.sigmoid(decoded["opacity_logits"]).detach(), colors, c2w, intrinsics, height, width,
                           **{**setup.options(), "background": None})
    onehot = F.one_hot(labels.clamp_min(0), n_labels).float() * (labels >= 0)[..., None]
    (weights,) = torch.autograd.grad((out["rgb"] * onehot).sum(), colors)
    return weights


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
    filled = ids.clone()
    filled[missing] = ids[labelled][near].mode(dim=1).values
    return filled


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


def decoded_psnr(field: GaussianField, deltas: Tensor, views: Views, setup: SplatSetup) -> float:
    """Mean PSNR (dB) of the decoded field over ``views``."""
    height, width = views.hw
    with torch.no_grad():
        values = [psnr(render_decoded(field, deltas, views.c2w[v], views.intrinsics[v], height, width,
                                      **setup.options())["rgb"].clamp(0, 1), views.images[v])
                  for v in range(len(views))]
    return float(np.mean(values))


def shape_splats(field: GaussianField, setup: SplatSetup, scene: Scene, cfg: SplatShapeConfig) -> dict:
    """Shape a decoder over fitted Gaussians (see the module docstring); writes ``cfg.out``."""
    if not 0 < cfg.fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {cfg.fraction}")
    labels = getattr(scene.train, cfg.labels)
    if labels is None:
        raise ValueError(f"the scene's training views have no {cfg.labels} maps to label the Gaussians with")
    run = RunDir(cfg.out)
    generator = seed_everything(cfg.seed)
    aabb = scene_aabb(scene)
    decoder = make_decoder(field, aabb, cfg.decoder, cfg.seed)
    head = [p for name, p in decoder.named_parameters() if name.startswith("head.")]
    rest = [p for name, p in decoder.named_parameters() if not name.startswith("head.")]
    optimiser = torch.optim.Adam([{"params": rest}, {"params": head, "lr": cfg.head_lr}], lr=cfg.lr)
    checkpoint = run.load_checkpoint() if cfg.resume else None
    step, train_time = 0, 0.0
    if checkpoint is None:
        voted = voted_labels(field, scene.train, labels, setup)
        ids = fill_from_neighbours(field.means.detach(), voted, cfg.neighbours)
        voted_fraction = float((voted >= 0).float().mean())
        run.write_config(cfg, cfg.seed)
        run.path("metrics.jsonl").unlink(missing_ok=True)
    else:
        decoder.load_state_dict(checkpoint["decoder"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        generator.set_state(checkpoint["generator"])
        ids, voted_fraction = checkpoint["ids"], checkpoint["voted_fraction"]
        step, train_time = checkpoint["step"], checkpoint["train_time_s"]
    neighbours = knn(field.means.detach(), cfg.neighbours)
    images = scene.train.images.float()
    height, width = scene.train.hw
    field.requires_grad_(False)

    def photometric(deltas: Tensor) -> Tensor:
        v = int(torch.randint(len(scene.train), (), generator=generator))
        out = render_decoded(field, deltas, scene.train.c2w[v], scene.train.intrinsics[v], height, width,
                             **setup.options())
        return photometric_loss(out["rgb"], images[v])

    def save_checkpoint() -> None:
        run.save_checkpoint({"decoder": decoder.state_dict(), "decoder_config": asdict(cfg.decoder), "aabb": aabb,
                             "ids": ids, "labels": cfg.labels, "voted_fraction": voted_fraction,
                             "fit_run": str(cfg.run), "optimiser": optimiser.state_dict(),
                             "generator": generator.get_state(), "step": step, "train_time_s": train_time})

    before = decoded_psnr(field, torch.zeros(len(field), 7), scene.test, setup)
    bar = tqdm(total=cfg.iterations, initial=step, desc="splat shape", dynamic_ncols=True)
    while step < cfg.iterations:
        start = time.perf_counter()
        terms = shaping_step(decoder, optimiser, ids, neighbours, cfg, generator, photometric)
        step += 1
        train_time += time.perf_counter() - start
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
        if step % 10 == 0 or step == cfg.iterations:
            run.log_metrics({"step": step, "train_time_s": train_time, **terms})
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    save_checkpoint()
    with torch.no_grad():
        after = decoded_psnr(field, decoder_deltas(decoder), scene.test, setup)
    summary = {"step": step, "train_time_s": train_time, "time_per_iter_s": train_time / max(step, 1),
               "psnr_before": before, "psnr_after": after, "gaussians": len(field),
               "voted_fraction": voted_fraction}
    save_json(run.path("metrics.json"), summary)
    return summary


def shape(cfg: SplatShapeConfig) -> dict:
    """Shape a decoder over fitted Gaussians (InfoGaussian) so that objects move, recolour and vanish together."""
    field, setup = load_splats(cfg.run)
    summary = shape_splats(field, setup, open_scene(setup.scene), cfg)
    print(f"shaped in {summary['train_time_s']:.0f} s: test PSNR {summary['psnr_before']:.2f} -> "
          f"{summary['psnr_after']:.2f} dB -> {cfg.out}")
    return summary


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
    checkpoint = RunDir(run_dir).load_checkpoint() if Path(run_dir).is_dir() else None
    if checkpoint is not None and "decoder" in checkpoint:
        field, setup = load_splats(checkpoint["fit_run"])
        scene = open_scene(setup.scene)
        decoder = make_decoder(field, checkpoint["aabb"], DecoderConfig(**checkpoint["decoder_config"]))
        decoder.load_state_dict(checkpoint["decoder"])
        ids, masks = checkpoint["ids"], getattr(scene.train, checkpoint["labels"])
    else:
        field, setup = load_splats(run_dir)
        scene = open_scene(setup.scene)
        decoder, ids, masks = make_decoder(field, scene_aabb(scene), DecoderConfig()), None, None
    field.requires_grad_(False)
    return ShapedRun(field, setup, decoder, scene, ids, masks)


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
    height, width = views.hw
    if not (0 <= click.view < len(views) and 0 <= click.x < width and 0 <= click.y < height):
        raise ValueError(f"click view/x/y = {click.view}/{click.x}/{click.y} is outside the {len(views)} views "
                         f"of {width}x{height} pixels")
    pixel = torch.full((height, width), -1, dtype=torch.long)
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


def edit_target(field: GaussianField, deltas: Tensor, g: int, cfg: SplatEditConfig) -> tuple[str, Tensor]:
    """Which output group the edit changes and by how much (for Gaussian ``g``)."""
    if cfg.op == "move":
        return "motion", torch.tensor(cfg.offset, dtype=torch.float32)
    if cfg.op == "recolor":
        return "color", torch.tensor(cfg.color, dtype=torch.float32) - (field.colors[g] + deltas[g, 3:6])
    if cfg.op == "remove":  # down to opacity 0.001
        return "opacity", torch.tensor([-6.9]) - (field.opacity_logits[g] + deltas[g, 6]).reshape(1)
    raise ValueError(f"op must be 'move', 'recolor' or 'remove', got {cfg.op!r}")


def parse_pixel(text: str) -> Click:
    """``"view/x/y"`` -> Click (label 0)."""
    if text.count("/") != 2:
        raise ValueError(f"a click must be 'view/x/y' (three integers), got {text!r}")
    return Click.parse(f"{text}/0")


def render_set(field: GaussianField, deltas: Tensor, views: Views, setup: SplatSetup) -> Tensor:
    """``[V, H, W, 3]`` renders of the decoded field."""
    height, width = views.hw
    with torch.no_grad():
        return torch.stack([render_decoded(field, deltas, views.c2w[v], views.intrinsics[v], height, width,
                                           **setup.options())["rgb"].clamp(0, 1) for v in range(len(views))])


def edit(cfg: SplatEditConfig) -> dict:
    """Click a pixel; move, recolour or remove what the shaped decoder groups with it; before/after PNGs."""
    click = parse_pixel(cfg.click)
    run = load_shaped(cfg.run)
    field, setup, decoder, scene = run.field, run.setup, run.decoder, run.scene
    with torch.no_grad():
        deltas = decoder_deltas(decoder)
    g = clicked_gaussian(field, deltas, scene.train, setup, click, run.ids, run.masks)
    output, target = edit_target(field, deltas, g, cfg)
    theta = solve_edit(decoder, g, output, target, cfg.steps)
    with torch.no_grad():
        edited = decoder_deltas(decoder, theta)
    change = (edited - deltas)[:, OUTPUTS[output]].norm(dim=-1)
    affected = change > 0.5 * target.norm()
    picks = np.linspace(0, len(scene.test) - 1, min(cfg.views, len(scene.test))).round().astype(int).tolist()
    views = _join(scene.train.subset([click.view]), scene.test.subset(picks))
    before, after = render_set(field, deltas, views, setup), render_set(field, edited, views, setup)
    changed = (after - before).abs().amax(dim=-1) > 0.05
    out = cfg.out or Path(cfg.run) / f"edit-{cfg.op}"
    picture = save_png(out / f"{cfg.op}.png", edit_picture(before, after, changed))
    summary = {"op": cfg.op, "click": cfg.click, "gaussian": g, "affected_gaussians": int(affected.sum()),
               "affected_fraction": float(affected.float().mean()), "changed_pixels": float(changed.float().mean()),
               "picture": str(picture)}
    save_json(out / f"{cfg.op}.json", summary)
    print(f"{cfg.op}: Gaussian {g}, {summary['affected_gaussians']} Gaussians changed by more than half the edit "
          f"({summary['affected_fraction']:.1%}) -> {picture}")
    return summary


def _join(a: Views, b: Views) -> Views:
    return Views(images=torch.cat([a.images, b.images]), c2w=torch.cat([a.c2w, b.c2w]),
                 intrinsics=torch.cat([a.intrinsics, b.intrinsics]), names=a.names + b.names)


def object_clicks(instance: Tensor, views: list[int] | None = None) -> list[Click]:
    """One click per instance id in ``instance [V, H, W]``: the pixel deepest inside it (farthest from
    its outline and the image border), in the view where that depth is largest, among ``views`` (all
    when None). Label = the instance id."""
    best: dict[int, tuple[float, Click]] = {}
    for v in range(instance.shape[0]) if views is None else views:
        image = instance[v].numpy()
        for k in sorted(set(np.unique(image).tolist()) - {-1}):
            depth = ndimage.distance_transform_edt(np.pad(image == k, 1))[1:-1, 1:-1]
            y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
            if k not in best or depth[y, x] > best[k][0]:
                best[k] = (float(depth[y, x]), Click(v, int(x), int(y), int(k)))
    return [best[k][1] for k in sorted(best)]


def move_metrics(field: GaussianField, setup: SplatSetup, decoder: GaussianDecoder, ids: Tensor, views: Views,
                 masks: Tensor, clicks: list[Click], offset: float = 0.3) -> dict:
    """Recall and leakage of an upward move of ``offset`` from each click (``recall_leakage`` over all
    Gaussians, objects = ``ids [G]``), per object (the click's label) and averaged. Clicks select their
    Gaussian with ``clicked_gaussian`` and the label maps ``masks [V, H, W]`` of ``views``."""
    with torch.no_grad():
        deltas = decoder_deltas(decoder)
    per_object = {}
    for click in tqdm(clicks, desc="edits", leave=False):
        g = clicked_gaussian(field, deltas, views, setup, click, ids, masks)
        theta = solve_edit(decoder, g, "motion", torch.tensor([0.0, 0.0, offset]))
        with torch.no_grad():
            moved = decoder_deltas(decoder, theta)[:, :3] - deltas[:, :3]
        per_object[click.label] = {**recall_leakage(moved, ids == click.label, offset),
                                   "clicked_gaussian_label": int(ids[g])}
    recalls = [m["recall"] for m in per_object.values() if not np.isnan(m["recall"])]
    return {"recall": float(np.mean(recalls)) if recalls else float("nan"),
            "leakage": float(np.mean([m["leakage"] for m in per_object.values()])),
            "drift": float(np.mean([m["drift"] for m in per_object.values()])), "per_object": per_object}
