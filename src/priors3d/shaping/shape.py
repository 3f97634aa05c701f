"""Shaping commands: ``priors3d field shape | propagate | select | recolor`` and the README demo.

``shape`` fine-tunes a fitted NeRF (a ``priors3d field fit`` run) with the JacobiNeRF objective;
its run directory has the same checkpoint layout as a fit run, so every command that takes a
fitted field (``field render``, ``propagate``, ...) takes a shaped one too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from torch import Tensor
from tqdm import tqdm

from priors3d.fields.nerf import NeRF, field_state
from priors3d.fields.render import render_rays
from priors3d.fields.train import load_field
from priors3d.fields.render import FieldSetup
from priors3d.fields.formats import open_scene
from priors3d.viz import save_png
from priors3d.fields.views import Scene
from priors3d.runs import RunDir, save_json, save_torch, seed_everything
from priors3d.shaping.jacobian import pixel_jacobians
from priors3d.shaping.losses import shaping_loss
from priors3d.shaping.pairs import adaptive_feature_pairs, corrupt_masks, mask_pairs
from priors3d.shaping.propagate import (Click, auto_clicks, click_jacobians, click_point_jacobians, dense_clicks,
                                        first_order_responses, perturb_responses, prototypes, argmax_labels,
                                        sampling, view_jacobians, view_rays, volume_responses)
from priors3d.metrics import label_map_metrics


@dataclass
class ShapeConfig:
    """Options of ``priors3d field shape``."""

    run: tyro.conf.Positional[Path]
    """A run directory written by ``priors3d field fit`` (the field to shape)."""
    out: Path = Path("runs/field-shape")
    iterations: int = 300
    batch_rays: int = 1024
    """Rays per step for the photometric loss (random pixels of all training views)."""
    jacobian_rays: int = 256
    """Pixels per step whose Jacobians enter the InfoNCE loss (split evenly over ``views_per_step`` views)."""
    views_per_step: int = 1
    """Training views those pixels come from. Above 1, pixels of different views pair up by mask id, which
    needs ids that mean the same object or class in every view (clean semantic or instance maps, not
    corrupted ones): the parts of an object seen from different sides are then pulled together."""
    balanced: bool = True
    """Draw those pixels evenly across the view's masks (each mask equally likely, void never), so that small
    objects are anchors as often as walls; off: uniformly over the view. Mask pairs only."""
    lr: float = 2e-3
    lam: float = 1e-2
    """Weight of the InfoNCE term (the reference code's default)."""
    gamma: float = 1e-2
    """Weight of the Jacobian-norm penalty ``mean((||J|| - 1)^2)``."""
    temperature: float = 1.0
    absolute: bool = True
    """Use ``|cos|`` between Jacobians (the reference code's choice)."""
    pairs: Literal["semantic", "instance", "features"] = "semantic"
    """Positive pairs: same mask id in one view (``semantic`` or ``instance`` maps), or feature cosine."""
    feature_threshold: float = 0.7
    """Starting cosine threshold for ``pairs=features``; adapted to keep 5-15 % positives."""
    merge: float = 0.0
    """Mask corruption: probability that a mask is merged into another one of its view."""
    split: float = 0.0
    """Mask corruption: probability that a mask is cut in two."""
    noise: float = 0.0
    """Mask corruption: fraction of pixels given a random mask id of their view."""
    names: tuple[str, ...] | None = None
    """Parameter subset theta_D (default: the field's ``rgb_head_parameter_names()``)."""
    channel: int | None = None
    """Shape the Jacobians of one colour channel (0, 1, 2) instead of the grey value."""
    density_grid_every: int = 16
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = False

    def __post_init__(self) -> None:
        if self.views_per_step < 1:
            raise ValueError(f"views_per_step must be at least 1, got {self.views_per_step}")
        if self.views_per_step > 1 and (self.merge or self.split or self.noise):
            raise ValueError("views_per_step > 1 pairs pixels of different views by mask id, but corrupted masks "
                             "(merge/split/noise) have per-view ids; use views_per_step=1")


def _mask_source(scene: Scene, cfg: ShapeConfig, generator: torch.Generator) -> Tensor | None:
    if cfg.pairs == "features":
        if scene.train.features is None:
            raise ValueError("pairs=features needs per-pixel features [V, H, W, D] loaded with the scene; "
                             "use pairs=semantic or pairs=instance")
        return None
    labels = getattr(scene.train, cfg.pairs)
    if labels is None:
        raise ValueError(f"pairs={cfg.pairs} needs {cfg.pairs} maps [V, H, W] in the scene's training views")
    return corrupt_masks(labels, cfg.merge, cfg.split, cfg.noise, generator)


def jacobian_batch(masks: Tensor | None, n_views: int, n_pix: int, cfg: ShapeConfig,
                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """View and pixel indices ``([M], [M])`` of one step's Jacobian pixels: ``cfg.views_per_step`` distinct
    random views, ``cfg.jacobian_rays // views_per_step`` pixels from each (see :func:`jacobian_pixels`)."""
    if cfg.views_per_step == 1:
        views = torch.randint(n_views, (1,), generator=generator)
    else:
        views = torch.randperm(n_views, generator=generator)[:cfg.views_per_step]
    per_view = cfg.jacobian_rays // len(views)
    pix = [jacobian_pixels(None if masks is None else masks[v].flatten(), n_pix, per_view, cfg.balanced, generator)
           for v in views.tolist()]
    view = torch.cat([torch.full_like(p, v) for p, v in zip(pix, views.tolist())])
    return view, torch.cat(pix)


def jacobian_pixels(ids: Tensor | None, n_pix: int, count: int, balanced: bool,
                    generator: torch.Generator) -> Tensor:
    """``count`` distinct pixel indices of one view: uniform, or evenly across the masks ``ids [n_pix]``."""
    if ids is None or not balanced:
        return torch.randperm(n_pix, generator=generator)[:count]
    valid = ids >= 0
    sizes = torch.bincount(ids[valid])
    weights = torch.where(valid, 1.0 / sizes[ids.clamp(min=0)].clamp(min=1), 0.0)
    return torch.multinomial(weights, min(count, int(valid.sum())), replacement=False, generator=generator)


def shape_field(model: NeRF, setup: FieldSetup, scene: Scene, cfg: ShapeConfig) -> dict:
    """Fine-tune ``model`` in place with ``L_photo + lam * L_MI + gamma * norm``; write a run to ``cfg.out``."""
    run = RunDir(cfg.out)
    generator = seed_everything(cfg.seed)
    masks = _mask_source(scene, cfg, generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-15)
    step, train_time, threshold = 0, 0.0, cfg.feature_threshold
    checkpoint = run.load_checkpoint() if cfg.resume else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["field"]["state_dict"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        generator.set_state(checkpoint["generator"])
        step, train_time, threshold = checkpoint["step"], checkpoint["train_time_s"], checkpoint["threshold"]
    else:
        run.write_config(cfg, cfg.seed)
        run.path("metrics.jsonl").unlink(missing_ok=True)
    model.train()
    o, d, near, far = view_rays(scene.train, setup)
    colours = scene.train.images.flatten(1, 2).float()
    n_views, n_pix = o.shape[:2]
    if cfg.views_per_step > n_views:  # at least 1 is checked by ShapeConfig
        raise ValueError(f"views_per_step must be in 1..{n_views} (the training views), got {cfg.views_per_step}")
    kwargs = sampling(model, setup)

    def save_checkpoint() -> None:
        run.save_checkpoint({"field": field_state(model), "setup": asdict(setup), "optimiser": optimiser.state_dict(),
                             "generator": generator.get_state(), "step": step, "train_time_s": train_time,
                             "threshold": threshold, "shaped_from": str(cfg.run)})

    bar = tqdm(total=cfg.iterations, initial=step, desc="shape", dynamic_ncols=True)
    while step < cfg.iterations:
        start = time.perf_counter()
        v_all = torch.randint(n_views, (cfg.batch_rays,), generator=generator)
        i_all = torch.randint(n_pix, (cfg.batch_rays,), generator=generator)
        out = render_rays(model, o[v_all, i_all], d[v_all, i_all], near[v_all, i_all], far[v_all, i_all],
                          **{**kwargs, "generator": generator})
        photo = torch.mean((out["rgb"] - colours[v_all, i_all]) ** 2)
        view, pix = jacobian_batch(masks, n_views, n_pix, cfg, generator)
        jac = pixel_jacobians(model, o[view, pix], d[view, pix], near[view, pix], far[view, pix],
                              names=cfg.names, channel=cfg.channel, **kwargs)
        if masks is None:
            positives, threshold = adaptive_feature_pairs(scene.train.features.flatten(1, 2)[view, pix], threshold)
        else:
            positives = mask_pairs(masks.flatten(1)[view, pix])
        losses = shaping_loss(photo, jac, positives, cfg.lam, cfg.gamma, cfg.temperature, cfg.absolute)
        optimiser.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimiser.step()
        step += 1
        if step % cfg.density_grid_every == 0:
            model.update_density_grid(generator=generator)
        train_time += time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(photo=f"{losses['photo'].item():.4f}", mi=f"{losses['mi'].item():.3f}",
                        norm=f"{losses['norm'].item():.3f}")
        if step % 10 == 0 or step == cfg.iterations:
            run.log_metrics({"step": step, "train_time_s": train_time,
                             **{k: v.item() for k, v in losses.items()}, "threshold": threshold})
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    model.eval()
    save_checkpoint()
    summary = {"step": step, "train_time_s": train_time, "time_per_iter_s": train_time / max(step, 1),
               **{k: r for k, r in (run.read_metrics() or [{}])[-1].items() if k in ("photo", "mi", "norm")}}
    save_json(run.path("metrics.json"), summary)
    return summary


def shape(cfg: ShapeConfig) -> dict:
    """Shape a fitted NeRF with mutual-information gradients (JacobiNeRF) so objects resonate together."""
    model, setup = load_field(cfg.run)
    return shape_field(model, setup, open_scene(setup.scene), cfg)


Method = Literal["first-order", "perturb", "3d"]


def propagate_labels(model: NeRF, setup: FieldSetup, source, targets, clicks: list[Click], n_classes: int,
                     method: Method = "first-order", sigma: float = 0.1, min_response: float = 0.0,
                     names: tuple[str, ...] | None = None, channel: int | None = None,
                     progress: bool = False) -> dict:
    """Label every pixel of the views ``targets`` from ``clicks`` in the views ``source``.

    Returns:
        dict with ``labels [V, H, W]`` (-1 = no response), ``responses [V, H, W, K]``, ``active [K]``
        (classes with clicks), ``seconds`` (total), ``shared_seconds`` (work done once for all
        classes: target Jacobians, reference render) and ``per_class_seconds`` (the rest divided by
        the number of clicked classes).
    """
    labels = torch.tensor([c.label for c in clicks])
    active = torch.bincount(labels, minlength=n_classes) > 0
    start = time.perf_counter()
    if method == "3d":
        protos = prototypes(click_point_jacobians(model, setup, source, clicks, names, channel), labels, n_classes)
    else:
        protos = prototypes(click_jacobians(model, setup, source, clicks, names, channel), labels, n_classes)
    if method == "first-order":
        jac = view_jacobians(model, setup, targets, names=names, channel=channel, progress=progress)
        shared = time.perf_counter() - start
        responses = first_order_responses(jac, protos)
    elif method == "perturb":
        responses = perturb_responses(model, setup, targets, protos, sigma, names, channel, progress)
        shared = 0.0
    elif method == "3d":
        responses = volume_responses(model, setup, targets, protos, names=names, channel=channel, progress=progress)
        shared = 0.0
    else:
        raise ValueError(f"method must be 'first-order', 'perturb' or '3d', got {method!r}")
    seconds = time.perf_counter() - start
    n_active = max(int(active.sum()), 1)
    return {"labels": argmax_labels(responses, active, min_response), "responses": responses, "active": active,
            "seconds": seconds, "shared_seconds": shared, "per_class_seconds": (seconds - shared) / n_active}


def evaluation_clicks(scene: Scene, label_source: str = "semantic", dense: bool = False,
                      view: int | None = None) -> list[Click]:
    """Clicks from ground truth: one per class (deepest pixel) or every pixel (``dense``) of one training view.

    The view is ``view``, or the training view showing the most classes.
    """
    labels = getattr(scene.train, label_source)
    if labels is None:
        raise ValueError(f"the scene's training views have no {label_source} maps to sample clicks from")
    clicks = auto_clicks(labels, view)
    return dense_clicks(labels, clicks[0].view) if dense else clicks


def label_pictures(path: Path, scene: Scene, labels: Tensor, target_labels: Tensor, n_views: int = 3) -> Path:
    """PNG: one row per view, ``RGB | ground truth | propagated`` (void and no-response black)."""
    from priors3d.fields.scenes.generate import colorize

    colors = scene.class_colors if scene.class_colors is not None else _palette(int(target_labels.max()) + 1)
    rows = []
    for v in np.linspace(0, len(scene.test) - 1, min(n_views, len(scene.test))).round().astype(int).tolist():
        rgb = (scene.test.images[v].numpy() * 255 + 0.5).astype(np.uint8)
        rows.append(np.concatenate([rgb, colorize(target_labels[v], colors), colorize(labels[v], colors)], axis=1))
    image = np.concatenate(rows, axis=0)
    return save_png(path, np.kron(image, np.ones((2, 2, 1), dtype=np.uint8)))


def _palette(n: int) -> Tensor:
    from matplotlib import colormaps

    return torch.from_numpy((colormaps["tab20"](np.arange(n) % 20)[:, :3] * 255).astype(np.uint8))


@dataclass
class PropagateConfig:
    """Options of ``priors3d field propagate``."""

    run: tyro.conf.Positional[Path]
    """A fitted or shaped run directory."""
    clicks: tuple[str, ...] = ()
    """Clicks ``view/x/y/class`` in the training views; none = sampled from ground truth (one per class)."""
    dense: bool = False
    """With sampled clicks: use every pixel of the click view (one densely labelled view)."""
    click_view: int | None = None
    """Training view to sample clicks in (default: the one showing the most classes)."""
    label_source: Literal["semantic", "instance"] = "semantic"
    """Ground truth to sample clicks from and to evaluate against."""
    method: Method = "first-order"
    sigma: float = 0.1
    """Perturb-and-render: step length of ``theta_D`` along each class Jacobian."""
    min_response: float = 0.0
    """Pixels whose best response is below this get no label (-1)."""
    names: tuple[str, ...] | None = None
    channel: int | None = None
    out: Path | None = None
    """Where metrics and pictures go (default ``<run>/propagate-<method>``)."""


def propagate(cfg: PropagateConfig) -> dict:
    """Propagate labels from clicks to every test view through Jacobians; report mIoU and accuracies."""
    model, setup = load_field(cfg.run)
    scene = open_scene(setup.scene)
    clicks = ([Click.parse(c) for c in cfg.clicks] if cfg.clicks
              else evaluation_clicks(scene, cfg.label_source, cfg.dense, cfg.click_view))
    target = getattr(scene.test, cfg.label_source)
    n_classes = _n_classes(scene, cfg.label_source)
    result = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes, cfg.method, cfg.sigma,
                              cfg.min_response, cfg.names, cfg.channel, progress=True)
    out = cfg.out or cfg.run / f"propagate-{cfg.method}"
    summary = {"method": cfg.method, "n_clicks": len(clicks), "click_view": clicks[0].view,
               "clicked_classes": result["active"].nonzero().flatten().tolist(),
               **{k: result[k] for k in ("seconds", "shared_seconds", "per_class_seconds")}}
    if target is not None:
        summary.update(label_map_metrics(result["labels"], target, n_classes))
        label_pictures(out / "labels.png", scene, result["labels"], target)
        print(f"{cfg.method}: mIoU {summary['miou']:.3f}, accuracy {summary['accuracy']:.3f}, "
              f"class accuracy {summary['class_accuracy']:.3f} over {len(scene.test)} test views")
    save_json(out / "metrics.json", summary)
    save_torch(out / "labels.pt", result["labels"])
    return summary


def _n_classes(scene: Scene, label_source: str) -> int:
    if label_source == "semantic" and scene.class_names:
        return len(scene.class_names)
    maps = [m for m in (getattr(scene.train, label_source), getattr(scene.test, label_source)) if m is not None]
    return int(max(int(m.max()) for m in maps)) + 1


@dataclass
class SelectConfig:
    """Options of ``priors3d field select``."""

    run: tyro.conf.Positional[Path]
    click: str = "0/32/32"
    """The clicked pixel ``view/x/y`` in the training views."""
    threshold: float = 0.9
    """Pixels whose ``|cos|`` with the click's Jacobian reaches this are selected."""
    views: int = 3
    """How many test views to draw."""
    out: Path | None = None
    """Where the PNG goes (default ``<run>/select``)."""


@dataclass
class RecolorConfig:
    """Options of ``priors3d field recolor``."""

    run: tyro.conf.Positional[Path]
    click: str = "0/32/32"
    """The clicked pixel ``view/x/y`` in the training views."""
    color: tuple[float, float, float] = (0.1, 0.8, 0.2)
    """Target RGB in [0, 1] for the clicked pixel."""
    steps: int = 5
    keep: int = 512
    """Pixels of the click's view that do not resonate with it (``|cos| < 0.9``) and that the edit holds
    still (0: the plain minimum-norm step, which also moves whatever shares the click's gradient)."""
    views: int = 3
    out: Path | None = None
    """Where the before/after PNGs go (default ``<run>/recolor``)."""


def _parse_pixel(text: str) -> Click:
    return Click.parse(f"{text}/0") if text.count("/") == 2 else Click.parse(text)


def _test_subset(scene: Scene, n: int):
    return scene.test.subset(np.linspace(0, len(scene.test) - 1, min(n, len(scene.test))).round().astype(int).tolist())


def select_command(cfg: SelectConfig) -> dict:
    """Click one pixel; write the mask of everything that resonates with it in the test views."""
    from priors3d.shaping.edit import edit_picture, select

    model, setup = load_field(cfg.run)
    scene = open_scene(setup.scene)
    targets = _test_subset(scene, cfg.views)
    masks, _ = select(model, setup, scene.train, targets, _parse_pixel(cfg.click), cfg.threshold)
    out = cfg.out or cfg.run / "select"
    path = save_png(out / "select.png", edit_picture(targets.images, targets.images, masks))
    print(f"selected {float(masks.float().mean()):.1%} of the pixels of {len(targets)} test views -> {path}")
    return {"fraction": float(masks.float().mean()), "picture": str(path)}


def recolor_command(cfg: RecolorConfig) -> dict:
    """Click one pixel and a colour; every resonating pixel in every view recolours (before/after PNGs)."""
    from priors3d.shaping.edit import edit_picture, recolor, select
    from priors3d.shaping.propagate import render_grey

    model, setup = load_field(cfg.run)
    scene = open_scene(setup.scene)
    targets = _test_subset(scene, cfg.views)
    click = _parse_pixel(cfg.click)
    edited = recolor(model, setup, scene.train, click, cfg.color, cfg.steps, keep=cfg.keep)
    before = render_grey(model, setup, targets, rgb=True)
    after = render_grey(edited, setup, targets, rgb=True)
    masks, _ = select(model, setup, scene.train, targets, click)
    out = cfg.out or cfg.run / "recolor"
    path = save_png(out / "recolor.png", edit_picture(before, after, masks))
    changed = float(((after - before).abs().amax(-1) > 0.05).float().mean())
    print(f"recoloured: {changed:.1%} of the test pixels changed by more than 0.05 -> {path}")
    return {"changed_fraction": changed, "picture": str(path)}


def demo_pipeline(out_dir: str | Path = "runs/shaping-demo", quick: bool = True) -> dict:
    """Room -> NeRF fit -> shaping -> propagation from one click per class; mIoU before and after shaping.

    ``quick`` uses small budgets (a few minutes on two CPU cores); otherwise those of ``bench/propagation.py``.
    Writes ``fit/``, ``shape/`` and ``labels_{unshaped,shaped}.png`` under ``out_dir``.
    """
    from priors3d.fields.scenes import RoomConfig, generate_room
    from priors3d.fields.train import FitConfig, train_field

    out_dir = Path(out_dir)
    scene = generate_room(RoomConfig(seed=0))
    train_field(scene, FitConfig(scene=Path("room"), out=out_dir / "fit", iterations=500 if quick else 1000,
                                 batch_rays=1024 if quick else 2048, eval_every=10**9, picture_views=1))
    model, setup = load_field(out_dir / "fit")
    clicks = evaluation_clicks(scene)
    n_classes = len(scene.class_names)
    result = {}
    for name in ("unshaped", "shaped"):
        if name == "shaped":
            shape_field(model, setup, scene, ShapeConfig(run=out_dir / "fit", out=out_dir / "shape",
                                                         iterations=300 if quick else 1000, **TUNED))
        labels = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes)["labels"]
        metrics = label_map_metrics(labels, scene.test.semantic, n_classes)
        label_pictures(out_dir / f"labels_{name}.png", scene, labels, scene.test.semantic)
        result[name] = {k: metrics[k] for k in ("miou", "accuracy", "class_accuracy")}
        print(f"{name}: mIoU {metrics['miou']:.3f}, accuracy {metrics['accuracy']:.3f}")
    save_json(out_dir / "demo.json", result)
    return result


TUNED = {"lam": 0.1, "temperature": 0.1, "lr": 5e-3, "batch_rays": 512, "views_per_step": 4}
"""Shaping settings used by the demo and the benchmark (stronger than the reference defaults; see docs/shaping.md)."""
