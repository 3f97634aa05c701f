"""Shaping commands: ``priors3d field shape | propagate | select | recolor`` (JacobiNeRF) and
``priors3d splat shape | edit`` (InfoGaussian)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from priors3d.engine import CommandConfig
from priors3d.fields.fit import load_field
from priors3d.fields.formats import fitted_scene
from priors3d.fields.nerf import NeRF
from priors3d.fields.render import FieldSetup
from priors3d.fields.splat_fit import load_splats
from priors3d.fields.views import Scene, Views
from priors3d.metrics import label_map_metrics
from priors3d.runs import save_json, save_torch
from priors3d.shaping.clicks import Click
from priors3d.shaping.decoder import OUTPUTS, decoder_deltas, solve_edit
from priors3d.shaping.edit import edit_picture, recolor as recolor_field, select as select_pixels
from priors3d.shaping.infogs import (SplatShapeConfig, clicked_gaussian, edit_target, load_shaped, render_set,
                                     shape_splats)
from priors3d.shaping.propagate import render_grey
from priors3d.shaping.shape import Method, ShapeConfig, evaluation_clicks, propagate_labels, shape_field
from priors3d.viz import label_pictures, save_png


MAP_FOLDERS = {"features": "features", "semantic": "semantic_class", "instance": "semantic_instance"}
"""The folder of a scene that holds each kind of map (nerfstudio as ``write_nerfstudio`` writes it, and Replica)."""


def check_source(scene: str, source: str) -> None:
    """Raise a ValueError before any image is read when the scene folder ``scene`` has no maps for ``source``
    (the label-free sources need only the images)."""
    if source in MAP_FOLDERS and scene != "room" and not (Path(scene) / MAP_FOLDERS[source]).is_dir():
        raise ValueError(f"{source} needs the folder {Path(scene) / MAP_FOLDERS[source]}, which does not exist; "
                         f"use a label-free source (descriptors, consistent or segments), which needs only the images")


def shape(cfg: ShapeConfig) -> dict:
    """Shape a fitted NeRF with mutual-information gradients (JacobiNeRF) so objects resonate together."""
    model, setup = load_field(cfg.run, "field shape")
    check_source(setup.scene, cfg.pairs)
    summary = shape_field(model, setup, fitted_scene(setup), cfg)
    print(f"shaped for {summary['step']} steps ({summary['train_time_s']:.0f} s), pairs {cfg.pairs}: test PSNR "
          f"{summary['psnr_before']:.2f} -> {summary['psnr_after']:.2f} dB -> {cfg.out}")
    return summary


@dataclass(kw_only=True)
class PropagateConfig(CommandConfig):
    """Options of ``priors3d field propagate``."""

    run: tyro.conf.Positional[Path]
    """A fitted or shaped run directory."""
    clicks: tuple[str, ...] = ()
    """Clicks ``view/x/y/class`` in the training views; none = sampled from ground truth (one per class; needs the
    scene's label maps, as does the scoring)."""
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
    clicks = [Click.parse(c) for c in cfg.clicks]
    model, setup = load_field(cfg.run, "field propagate")
    if not clicks:
        check_source(setup.scene, cfg.label_source)
    scene = fitted_scene(setup)
    clicks = clicks or evaluation_clicks(scene, cfg.label_source, cfg.dense, cfg.click_view)
    target = getattr(scene.test, cfg.label_source)
    n_classes = max(_n_classes(scene, cfg.label_source), max(c.label for c in clicks) + 1)
    result = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes, cfg.method, cfg.sigma,
                              cfg.min_response, cfg.names, cfg.channel, progress=cfg.progress)
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
    return int(max(int(m.max()) for m in maps)) + 1 if maps else 0


@dataclass(kw_only=True)
class _ClickConfig(CommandConfig):
    """Options shared by the commands that edit or select from one click."""

    run: tyro.conf.Positional[Path]
    """A fitted or shaped run directory."""
    click: str = "0/32/32"
    """The clicked pixel ``view/x/y`` in the training views."""
    views: int = 3
    """How many test views to draw."""
    out: Path | None = None
    """Where the pictures go (default ``<run>/<command>``, ``<run>/edit-<op>`` for ``splat edit``)."""


@dataclass(kw_only=True)
class SelectConfig(_ClickConfig):
    """Options of ``priors3d field select``."""

    threshold: float = 0.9
    """Pixels whose ``|cos|`` with the click's Jacobian reaches this are selected."""


@dataclass(kw_only=True)
class RecolorConfig(_ClickConfig):
    """Options of ``priors3d field recolor``."""

    color: tuple[float, float, float] = (0.1, 0.8, 0.2)
    """Target RGB in [0, 1] for the clicked pixel."""
    steps: int = 5
    keep: int = 512
    """Pixels of the click's view that do not resonate with it (``|cos| < 0.9``) and that the edit holds
    still (0: the plain minimum-norm step, which also moves whatever shares the click's gradient)."""


def _test_subset(scene: Scene, n: int) -> Views:
    """``n`` evenly spaced test views."""
    return scene.test.subset(np.linspace(0, len(scene.test) - 1, min(n, len(scene.test))).round().astype(int).tolist())


def _clicked_field(cfg: _ClickConfig, command: str) -> tuple[Click, NeRF, FieldSetup, Scene, Views]:
    """The click, the fitted field, its setup and scene, and the ``cfg.views`` test views to draw."""
    click = Click.parse(cfg.click, labelled=False)
    model, setup = load_field(cfg.run, command)
    scene = fitted_scene(setup)
    return click, model, setup, scene, _test_subset(scene, cfg.views)


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """``[V, H, W]`` bool: pixels of ``[V, H, W, 3]`` renders whose colour moved by more than 0.05."""
    return (after - before).abs().amax(dim=-1) > 0.05


def select(cfg: SelectConfig) -> dict:
    """Click one pixel; write the mask of everything that resonates with it in the test views."""
    click, model, setup, scene, targets = _clicked_field(cfg, "field select")
    masks, _ = select_pixels(model, setup, scene.train, targets, click, cfg.threshold)
    path = save_png((cfg.out or cfg.run / "select") / "select.png", edit_picture(targets.images, targets.images, masks))
    print(f"selected {float(masks.float().mean()):.1%} of the pixels of {len(targets)} test views -> {path}")
    return {"fraction": float(masks.float().mean()), "picture": str(path)}


def recolor(cfg: RecolorConfig) -> dict:
    """Click one pixel and a colour; every resonating pixel in every view recolours (before/after PNGs)."""
    click, model, setup, scene, targets = _clicked_field(cfg, "field recolor")
    edited = recolor_field(model, setup, scene.train, click, cfg.color, cfg.steps, keep=cfg.keep)
    before, after = (render_grey(field, setup, targets, rgb=True) for field in (model, edited))
    masks, _ = select_pixels(model, setup, scene.train, targets, click)
    path = save_png((cfg.out or cfg.run / "recolor") / "recolor.png", edit_picture(before, after, masks))
    changed = float(_changed(before, after).float().mean())
    print(f"recoloured: {changed:.1%} of the test pixels changed by more than 0.05 -> {path}")
    return {"changed_fraction": changed, "picture": str(path)}


def splat_shape(cfg: SplatShapeConfig) -> dict:
    """Shape a decoder over fitted Gaussians (InfoGaussian) so that objects move, recolour and vanish together."""
    field, setup = load_splats(cfg.run)
    check_source(setup.scene, cfg.labels)
    summary = shape_splats(field, setup, fitted_scene(setup), cfg)
    print(f"shaped ({cfg.labels} masks) in {summary['train_time_s']:.0f} s: test PSNR {summary['psnr_before']:.2f} -> "
          f"{summary['psnr_after']:.2f} dB -> {cfg.out}")
    return summary


@dataclass(kw_only=True)
class SplatEditConfig(_ClickConfig):
    """Options of ``priors3d splat edit``."""

    run: tyro.conf.Positional[Path]
    """A ``splat shape`` run (or a ``splat fit`` run: an unshaped decoder, for comparison)."""
    op: Literal["move", "recolor", "remove"] = "move"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.3)
    """Move: the clicked Gaussian's translation in world units (metres)."""
    color: tuple[float, float, float] = (0.1, 0.8, 0.2)
    """Recolour: the clicked Gaussian's new RGB."""
    steps: int = 2
    """Gauss-Newton steps of the edit (one is exact for the default ``θ_D``)."""


def splat_edit(cfg: SplatEditConfig) -> dict:
    """Click a pixel; move, recolour or remove what the shaped decoder groups with it; before/after PNGs."""
    click = Click.parse(cfg.click, labelled=False)
    run = load_shaped(cfg.run)
    deltas = decoder_deltas(run.decoder).detach()
    g = clicked_gaussian(run.field, deltas, run.scene.train, run.setup, click, run.ids, run.masks)
    output, target = edit_target(run.field, deltas, g, cfg.op, cfg.offset, cfg.color)
    theta = solve_edit(run.decoder, g, output, target, cfg.steps)
    edited = decoder_deltas(run.decoder, theta).detach()
    affected = (edited - deltas)[:, OUTPUTS[output]].norm(dim=-1) > 0.5 * target.norm()
    drawn = (run.scene.train.subset([click.view]), _test_subset(run.scene, cfg.views))
    before = torch.cat([render_set(run.field, deltas, views, run.setup) for views in drawn])
    after = torch.cat([render_set(run.field, edited, views, run.setup) for views in drawn])
    changed = _changed(before, after)
    out = cfg.out or Path(cfg.run) / f"edit-{cfg.op}"
    picture = save_png(out / f"{cfg.op}.png", edit_picture(before, after, changed))
    summary = {"op": cfg.op, "click": cfg.click, "gaussian": g, "affected_gaussians": int(affected.sum()),
               "affected_fraction": float(affected.float().mean()), "changed_pixels": float(changed.float().mean()),
               "picture": str(picture)}
    save_json(out / f"{cfg.op}.json", summary)
    print(f"{cfg.op}: Gaussian {g}, {summary['affected_gaussians']} Gaussians changed by more than half the edit "
          f"({summary['affected_fraction']:.1%}) -> {picture}")
    return summary
