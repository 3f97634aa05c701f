"""JacobiNeRF shaping of a fitted NeRF, and label propagation from clicks through its Jacobians.

``shape_field`` shapes a fitted NeRF with the JacobiNeRF objective through the engine (kind ``field
shape``): by default a separate shaping head (``NeRF.add_shaping_head``) with density and colours frozen,
its positive pairs from a label-free source (``shaping.sources``). Its checkpoint holds the field and its
setup as a ``field fit`` checkpoint does, so everything that takes a fitted field (``field render``,
``propagate``, ...) takes a shaped one too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from torch import Tensor

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.fields.nerf import NeRF, field_state
from priors3d.fields.render import FieldSetup, render_nerf_views, render_rays
from priors3d.fields.views import Scene
from priors3d.metrics import psnr
from priors3d.runs import save_json
from priors3d.shaping.clicks import Click, auto_clicks, click_labels, dense_clicks
from priors3d.shaping.jacobian import pixel_jacobians
from priors3d.shaping.losses import shaping_loss
from priors3d.shaping.pairs import adaptive_feature_pairs, corrupt_masks, mask_pairs
from priors3d.shaping.propagate import (argmax_labels, click_jacobians, click_point_jacobians, first_order_responses,
                                        perturb_responses, prototypes, view_jacobians, view_rays, volume_responses)
from priors3d.shaping.sources import SegmentConfig, label_free_source, surface


@dataclass(kw_only=True)
class ShapeConfig(RunConfig):
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
    """Training views those pixels come from. Above 1, pixels of different views pair up (by mask id or
    descriptor), which needs ids that mean the same object or class in every view (``descriptors``, ``consistent``,
    semantic or instance maps; not ``segments``): the parts of an object seen from different sides are then
    pulled together."""
    balanced: bool = True
    """Draw those pixels evenly across the view's masks (each mask equally likely, void never), so that small
    objects are anchors as often as walls; off: uniformly over the view. Mask pairs and descriptors."""
    lr: float = 2e-3
    lam: float = 1e-2
    """Weight of the InfoNCE term (the reference code's default)."""
    gamma: float = 1e-2
    """Weight of the Jacobian-norm penalty ``mean((||J|| - 1)^2)``."""
    temperature: float = 1.0
    absolute: bool = True
    """Use ``|cos|`` between Jacobians (the reference code's choice)."""
    pairs: Literal["descriptors", "consistent", "segments", "features", "semantic", "instance"] = "descriptors"
    """Positive pairs. Label-free, computed from the training images and depth (the views' depth maps, else the
    field's rendered depth; see ``shaping.sources``): ``descriptors``, feature cosine (as DINO features are used)
    between the descriptors of the pixels' 3D segments, which makes like things alike (pixels drawn evenly across
    those segments); ``consistent``, same 3D segment; ``segments``, same per-view segment. ``features``: cosine of
    the scene's ``features/`` maps (e.g. DINO). ORACLE, for comparison only: the ground-truth ``semantic`` /
    ``instance`` maps (dense labels of every training view)."""
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    """Options of the label-free sources."""
    head: bool = True
    """Shape a separate head (``NeRF.add_shaping_head``) with density and colours frozen, as InfoGaussian shapes a
    decoder: appearance is unchanged and no photometric term is needed. Off: fine-tune the whole field with the
    photometric term (JacobiNeRF's way; costs held-out PSNR)."""
    head_features: int = 64
    """Outputs of the shaping head (its Jacobians have three times as many numbers)."""
    feature_threshold: float = 0.7
    """Starting cosine threshold for ``pairs=descriptors`` and ``pairs=features``; adapted to keep 5-15 %
    positives."""
    merge: float = 0.0
    """Mask corruption: probability that a mask is merged into another one of its view."""
    split: float = 0.0
    """Mask corruption: probability that a mask is cut in two."""
    noise: float = 0.0
    """Mask corruption: fraction of pixels given a random mask id of their view."""
    names: tuple[str, ...] | None = None
    """Parameter subset theta_D (default: the field's ``shaping_parameter_names()``: the shaping head's last layer
    with ``head``, else the RGB branch's)."""
    channel: int | None = None
    """Shape the Jacobians of one colour channel (0, 1, 2) instead of the grey value."""
    density_grid_every: int = 16

    def __post_init__(self) -> None:
        if self.views_per_step < 1:
            raise ValueError(f"views_per_step must be at least 1, got {self.views_per_step}")
        if self.views_per_step > 1 and self.pairs == "segments":
            raise ValueError("views_per_step > 1 pairs pixels of different views by mask id, but per-view segments "
                             "have per-view ids; use views_per_step=1 or pairs=consistent")


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
    valid = None if ids is None else ids >= 0
    if valid is None or not balanced or not bool(valid.any()):
        return torch.randperm(n_pix, generator=generator)[:count]
    sizes = torch.bincount(ids[valid])
    weights = torch.where(valid, 1.0 / sizes[ids.clamp(min=0)].clamp(min=1), 0.0)
    return torch.multinomial(weights, min(count, int(valid.sum())), replacement=False, generator=generator)


class FieldShaper:
    """The engine's trainer for ``shape_field``: one step = one JacobiNeRF update of ``model``."""

    def __init__(self, model: NeRF, setup: FieldSetup, scene: Scene, cfg: ShapeConfig, masks: Tensor | None,
                 features: Tensor | None, generator: torch.Generator):
        self.model, self.setup, self.cfg, self.masks, self.generator = model, setup, cfg, masks, generator
        self.features = None if features is None else features.flatten(1, 2)
        self.rays = view_rays(scene.train, setup)
        self.colours = scene.train.images.flatten(1, 2).float()
        if cfg.head:  # only the shaping head's body moves: density and colours stay those of the fitted field
            model.requires_grad_(False)
            model.shaping.requires_grad_(True)
        self.optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-15)
        self.threshold = cfg.feature_threshold
        self.sampling = setup.sampling(model)

    def step(self, step: int) -> dict[str, float]:
        cfg, generator = self.cfg, self.generator
        n_views, n_pix = self.rays[0].shape[:2]
        photo = torch.zeros(())
        if not cfg.head:
            v_all = torch.randint(n_views, (cfg.batch_rays,), generator=generator)
            i_all = torch.randint(n_pix, (cfg.batch_rays,), generator=generator)
            out = render_rays(self.model, *(r[v_all, i_all] for r in self.rays), **self.sampling, generator=generator)
            photo = torch.mean((out["rgb"] - self.colours[v_all, i_all]) ** 2)
        view, pix = jacobian_batch(self.masks, n_views, n_pix, cfg, generator)
        jac = pixel_jacobians(self.model, *(r[view, pix] for r in self.rays), names=cfg.names, channel=cfg.channel,
                              **self.sampling)
        if self.features is not None:
            positives, self.threshold = adaptive_feature_pairs(self.features[view, pix], self.threshold)
        else:
            positives = mask_pairs(self.masks.flatten(1)[view, pix])
        losses = shaping_loss(photo, jac, positives, cfg.lam, cfg.gamma, cfg.temperature, cfg.absolute)
        self.optimiser.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimiser.step()
        if not cfg.head and (step + 1) % cfg.density_grid_every == 0:
            self.model.update_density_grid(generator=generator)
        return {**{k: v.item() for k, v in losses.items()}, "threshold": self.threshold}

    def state_dict(self) -> dict:
        """``field`` and ``setup`` as a ``field fit`` checkpoint has them (``load_field`` reads both)."""
        return {"field": field_state(self.model), "setup": asdict(self.setup),
                "optimiser": self.optimiser.state_dict(), "generator": self.generator.get_state(),
                "threshold": self.threshold, "shaped_from": str(self.cfg.run)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["field"]["state_dict"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.threshold = state["threshold"]


def shape_field(model: NeRF, setup: FieldSetup, scene: Scene, cfg: ShapeConfig) -> dict:
    """Shape ``model`` in place with ``L_photo + lam * L_MI + gamma * norm`` (no ``L_photo`` when only the shaping
    head moves); write a run to ``cfg.out``. The summary has the held-out PSNR before and after (``psnr_before``,
    ``psnr_after``)."""
    engine.resolve_device(cfg.device)
    if cfg.views_per_step > len(scene.train):  # at least 1 is checked by ShapeConfig
        raise ValueError(f"views_per_step must be in 1..{len(scene.train)} (the training views), "
                         f"got {cfg.views_per_step}")
    if cfg.pairs == "features" and scene.train.features is None:
        raise ValueError("pairs=features needs per-pixel features [V, H, W, D] loaded with the scene (a features/ "
                         "folder); use a label-free source: pairs=descriptors (the default), consistent or segments")
    if cfg.pairs in ("semantic", "instance") and getattr(scene.train, cfg.pairs) is None:
        raise ValueError(f"pairs={cfg.pairs} (oracle) needs {cfg.pairs} maps [V, H, W] in the scene's training views; "
                         f"use a label-free source: pairs=descriptors (the default), consistent or segments")
    with engine.start(cfg, "field shape") as run:
        psnr_before = held_out_psnr(model, setup, scene)
        masks, features = pair_sources(model, setup, scene, cfg, run.generator)
        if cfg.head and not model.config.shaping_features:
            model.add_shaping_head(cfg.head_features)  # drawn after the engine seeded the run
        model.train()
        result = run.train(FieldShaper(model, setup, scene, cfg, masks, features, run.generator), cfg.iterations,
                           log_every=10, desc="shape")
        model.eval().requires_grad_(True)
        last = (run.read_metrics() or [{}])[-1]
        summary = {**result, "time_per_iter_s": result["train_time_s"] / max(result["step"], 1),
                   **{k: v for k, v in last.items() if k in ("photo", "mi", "norm")},
                   "psnr_before": psnr_before, "psnr_after": held_out_psnr(model, setup, scene)}
        save_json(run.path("metrics.json"), summary)
    return summary


def pair_sources(model: NeRF, setup: FieldSetup, scene: Scene, cfg: ShapeConfig,
                 generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    """What ``cfg.pairs`` pairs the training views' pixels by: mask ids ``[V, H, W]`` (drawn evenly across; paired
    by id unless there are features) and per-pixel features ``[V, H, W, D]`` (paired by cosine), each None where
    unused. Masks are damaged by ``cfg.merge/split/noise`` (descriptors follow their damaged segment). The
    label-free sources read the images and depth, never label maps."""
    if cfg.pairs == "features":
        return None, scene.train.features
    if cfg.pairs in ("semantic", "instance"):
        return corrupt_masks(getattr(scene.train, cfg.pairs), cfg.merge, cfg.split, cfg.noise, generator), None
    geometry = surface(model, setup, scene.train, cfg.segments.measured_depth)
    source = label_free_source(scene.train, geometry, setup.aabb, cfg.segments)
    masks = corrupt_masks(source.segments if cfg.pairs == "segments" else source.consistent, cfg.merge, cfg.split,
                          cfg.noise, generator)
    return masks, source.features(masks) if cfg.pairs == "descriptors" else None


def held_out_psnr(model: NeRF, setup: FieldSetup, scene: Scene) -> float:
    """Mean held-out PSNR (dB) of ``model`` over ``scene.test``."""
    renders = render_nerf_views(model, scene.test, setup)
    return float(np.mean([psnr(r["rgb"], gt) for r, gt in zip(renders, scene.test.images)]))


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
    if method not in ("first-order", "perturb", "3d"):
        raise ValueError(f"method must be 'first-order', 'perturb' or '3d', got {method!r}")
    labels = click_labels(clicks)
    active = torch.bincount(labels, minlength=n_classes) > 0
    start = time.perf_counter()
    click_jacobians_of = click_point_jacobians if method == "3d" else click_jacobians
    protos = prototypes(click_jacobians_of(model, setup, source, clicks, names, channel), labels, n_classes)
    shared = 0.0
    if method == "first-order":
        jac = view_jacobians(model, setup, targets, names=names, channel=channel, progress=progress)
        shared = time.perf_counter() - start
        responses = first_order_responses(jac, protos)
    elif method == "perturb":
        responses = perturb_responses(model, setup, targets, protos, sigma, names, channel, progress)
    else:
        responses = volume_responses(model, setup, targets, protos, names=names, channel=channel, progress=progress)
    seconds = time.perf_counter() - start
    return {"labels": argmax_labels(responses, active, min_response), "responses": responses, "active": active,
            "seconds": seconds, "shared_seconds": shared,
            "per_class_seconds": (seconds - shared) / max(int(active.sum()), 1)}


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


TUNED = {"lam": 0.1, "temperature": 0.1, "lr": 1e-2, "views_per_step": 4}
"""Shaping settings used by the demo and the benchmarks (stronger than the reference defaults; see docs/shaping.md)."""
