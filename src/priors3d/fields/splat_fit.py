"""Fit a ``GaussianField`` to a scene's views (``fit_splats``, the ``priors3d splat fit`` command) and load it
back (``load_splats``).

The 3DGS recipe, cut down for small scenes on a CPU: initialise from the depth maps (or a box),
render one random training view per step with the tiled rasteriser, L1 (+ optional L2) photometric
loss, Adam with one learning rate per attribute (the means' decaying exponentially), and every
``densify_every`` steps clone small / split large Gaussians whose mean view-space position gradient
is large, and prune the nearly transparent ones.

A run directory holds ``config.json``, ``metrics.jsonl`` (held-out PSNR against training time),
``checkpoint.pt`` (the engine's; its trainer state holds the Gaussians, render setup, optimiser,
densification statistics and generator), ``metrics.json`` and ``test_<view>.png`` grids
``truth | render | depth``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from torch import Tensor
from tqdm import tqdm

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.fields.fit import run_fit, trained_state
from priors3d.fields.formats import SceneOptions
from priors3d.fields.gaussians import ATTRIBUTES, GaussianField, quaternion_to_matrix
from priors3d.fields.rays import scene_aabb
from priors3d.fields.views import Scene, Views
from priors3d.runs import config_from_dict


@dataclass
class SplatSetup:
    """How a fitted Gaussian field is rendered: which scene, background and rasteriser options."""

    scene: str
    background: tuple[float, float, float] | None = None
    cull_sigma: float = 3.0
    tile: int = 16
    downscale: int = 1

    def options(self) -> dict:
        """Keyword arguments of ``GaussianField.__call__`` / ``render_gaussians``."""
        return {"background": None if self.background is None else torch.tensor(self.background),
                "cull_sigma": self.cull_sigma, "tile": self.tile}


@dataclass(kw_only=True)
class SplatFitConfig(SceneOptions, RunConfig):
    """Options of ``priors3d splat fit``."""

    scene: tyro.conf.Positional[Path] = Path("room")
    """Scene folder (read with ``priors3d.fields.formats.load_scene``) or ``room`` for the procedural room."""
    out: Path = Path("runs/splat-fit")
    iterations: int = 1200
    init: Literal["auto", "depth", "box"] = "auto"
    """Gaussians from back-projected depth pixels, or uniformly random in the scene box; auto: depth when the
    training views have depth maps (a real capture has none)."""
    init_stride: int = 4
    """Depth init: one Gaussian per ``init_stride``-th pixel (each way) ..."""
    init_view_step: int = 2
    """... of every ``init_view_step``-th training view."""
    init_count: int = 6000
    """Box init: number of Gaussians."""
    init_opacity: float = 0.1
    lr_means: float = 2e-3
    """Learning rate of the means (metres), decaying exponentially to ``lr_means_final``."""
    lr_means_final: float = 2e-4
    lr_scales: float = 5e-3
    lr_quaternions: float = 1e-3
    lr_opacity: float = 5e-2
    lr_colors: float = 1e-2
    l2_weight: float = 0.0
    """Loss = mean |render - truth| + l2_weight * mean (render - truth)²."""
    densify_every: int = 100
    densify_from: int = 100
    densify_until: int = 900
    densify_grad: float = 1e-5
    """Clone/split Gaussians whose mean view-space position gradient (pixels) reaches this."""
    dense_scale: float = 0.01
    """Gaussians larger than this fraction of the scene box diagonal split, smaller ones clone."""
    prune_opacity: float = 0.01
    """Gaussians less opaque than this are pruned at each densification step."""
    max_new_gaussians: int = 12000
    """Densification adds no more than this many Gaussians in total (largest gradients first)."""
    cull_sigma: float = 3.0
    """Tiles see the Gaussians whose k-sigma box meets them (see ``splat.rasterize``)."""
    tile: int = 16
    eval_every: int = 400
    checkpoint_every: int = 200
    picture_views: int = 3
    """Test views drawn as ``truth | render | depth`` grids at the end."""


def gaussian_state(field: GaussianField) -> dict[str, Tensor]:
    """The Gaussians' tensors, detached: ``{attribute: [G, ...]}`` (enough to rebuild the field)."""
    return {name: getattr(field, name).detach().clone() for name in ATTRIBUTES}


def gaussians_from_state(state: dict[str, Tensor]) -> GaussianField:
    """Inverse of ``gaussian_state``."""
    missing = [name for name in ATTRIBUTES if name not in state]
    if missing:
        raise ValueError(f"a Gaussian field state needs {list(ATTRIBUTES)}, missing {missing}")
    return GaussianField(*(state[name] for name in ATTRIBUTES))


def initial_field(scene: Scene, cfg: SplatFitConfig, generator: torch.Generator) -> GaussianField:
    """Gaussians from the training views' depth maps (``init="depth"``) or random in the scene box."""
    init = ("depth" if scene.train.depth is not None else "box") if cfg.init == "auto" else cfg.init
    if init == "depth":
        if scene.train.depth is None:
            raise ValueError("init 'depth' needs depth maps, and the scene's training views have none; use --init box")
        views = scene.train.subset(list(range(0, len(scene.train), max(cfg.init_view_step, 1))))
        return GaussianField.from_depth(views, cfg.init_stride, cfg.init_opacity)
    if init == "box":
        if scene.unbounded:
            warnings.warn("the scene is unbounded (a photo capture): a box start puts the Gaussians among the "
                          "cameras, and nothing models what lies beyond the box, so expect a poor fit (13.5 dB "
                          "on the procedural capture, docs/scenes.md); `priors3d field fit` contracts the "
                          "background", stacklevel=2)
        return GaussianField.from_box(scene_aabb(scene), cfg.init_count, generator, cfg.init_opacity)
    raise ValueError(f"init must be 'auto', 'depth' or 'box', got {cfg.init!r}")


def make_optimiser(field: GaussianField, cfg: SplatFitConfig) -> torch.optim.Adam:
    """Adam with one parameter group (and learning rate) per attribute, named like the attribute."""
    rates = (cfg.lr_means, cfg.lr_scales, cfg.lr_quaternions, cfg.lr_opacity, cfg.lr_colors)
    groups = [{"params": [getattr(field, name)], "lr": lr, "name": name} for name, lr in zip(ATTRIBUTES, rates)]
    return torch.optim.Adam(groups, eps=1e-15)


def means_lr(cfg: SplatFitConfig, step: int) -> float:
    """Exponential decay of the means' learning rate from ``lr_means`` to ``lr_means_final``."""
    progress = min(step / max(cfg.iterations, 1), 1.0)
    return cfg.lr_means * (cfg.lr_means_final / cfg.lr_means) ** progress


def photometric_loss(rgb: Tensor, target: Tensor, l2_weight: float = 0.0) -> Tensor:
    """``mean |rgb - target| + l2_weight * mean (rgb - target)²`` over images ``[..., 3]``."""
    diff = rgb - target
    return diff.abs().mean() + l2_weight * (diff * diff).mean()


def densify_and_prune(state: dict[str, Tensor], mean_grads: Tensor, grad_threshold: float, dense_scale: float,
                      prune_opacity: float, budget: int, generator: torch.Generator) -> tuple[dict[str, Tensor], Tensor]:
    """One 3DGS-style densification step on plain tensors.

    Gaussians whose ``mean_grads [G]`` reach ``grad_threshold`` (at most ``budget``, largest first) are
    cloned when their largest scale is at most ``dense_scale`` and otherwise split into two, drawn from
    the Gaussian itself with scales divided by 1.6. Then Gaussians with opacity below ``prune_opacity``
    go (new ones included).

    Returns:
        the new state ``{attribute: [G', ...]}`` and ``source [G']``: which old Gaussian each new one
        came from (used to carry optimiser moments; -1 would mean none, never produced here).
    """
    g = state["means"].shape[0]
    if mean_grads.shape != (g,):
        raise ValueError(f"mean_grads must be [G] = [{g}], got {list(mean_grads.shape)}")
    grow = torch.nonzero(mean_grads >= grad_threshold).squeeze(-1)
    grow = grow[torch.argsort(mean_grads[grow], descending=True)][:max(budget, 0)]
    big = state["log_scales"][grow].exp().amax(dim=-1) > dense_scale
    clone, split = grow[~big], grow[big]
    # Split: two samples from N(mean, Σ), scales / 1.6; the parent is dropped.
    scales = state["log_scales"][split].exp()
    rotations = quaternion_to_matrix(state["quaternions"][split])
    samples = [state["means"][split] + (rotations @ (scales * torch.randn(scales.shape, generator=generator,
                                                                           dtype=scales.dtype))[..., None])[..., 0]
               for _ in range(2)]
    keep = torch.ones(g, dtype=torch.bool)
    keep[split] = False
    kept = torch.nonzero(keep).squeeze(-1)
    source = torch.cat([kept, clone, split, split])
    new = {name: value[source] for name, value in state.items()}
    n_base = kept.numel() + clone.numel()
    new["means"] = torch.cat([new["means"][:n_base], *samples])
    new["log_scales"] = torch.cat([new["log_scales"][:n_base], new["log_scales"][n_base:] - math.log(1.6)])
    alive = torch.sigmoid(new["opacity_logits"]) >= prune_opacity
    return {name: value[alive] for name, value in new.items()}, source[alive]


def _carry_optimiser(optimiser: torch.optim.Adam, field: GaussianField, source: Tensor) -> None:
    """Point the optimiser's groups at ``field``'s new parameters, moments indexed by ``source [G']``."""
    for group in optimiser.param_groups:
        old = group["params"][0]
        new = getattr(field, group["name"])
        state = optimiser.state.pop(old, None)
        if state:
            optimiser.state[new] = {key: (value[source].clone() if torch.is_tensor(value) and value.ndim > 0 else value)
                                    for key, value in state.items()}
        group["params"] = [new]


@torch.no_grad()
def render_splat_views(field: GaussianField, views: Views, setup: SplatSetup, progress: bool = False,
                       return_index: bool = False) -> list[dict[str, Tensor]]:
    """Render every view of ``views``: one dict per view with ``rgb [H, W, 3]``, ``alpha``, ``depth`` (and ``index``)."""
    h, w = views.hw
    return [field(views.c2w[v], views.intrinsics[v], h, w, return_index=return_index, **setup.options())
            for v in tqdm(range(len(views)), desc="render", disable=not progress, leave=False)]


class _SplatTrainer:
    """One step: one random training view, photometric loss, Adam; densification every ``densify_every``
    steps from the mean view-space position gradients accumulated since the last one."""

    def __init__(self, run: engine.Run, setup: SplatSetup, scene: Scene, cfg: SplatFitConfig):
        field = initial_field(scene, cfg, run.generator)
        self.setup, self.views, self.cfg, self.generator = setup, scene.train, cfg, run.generator
        self.images = scene.train.images.float()
        self.extent = float((scene_aabb(scene)[1] - scene_aabb(scene)[0]).norm())
        self._use(field, make_optimiser(field, cfg))
        self.added = 0

    def _use(self, field: GaussianField, optimiser: torch.optim.Adam) -> None:
        self.field, self.optimiser = field, optimiser
        self.grad_sum, self.grad_count = torch.zeros(len(field)), torch.zeros(len(field))

    def step(self, step: int) -> dict[str, float]:
        cfg, views = self.cfg, self.views
        self.optimiser.param_groups[0]["lr"] = means_lr(cfg, step)
        v = int(torch.randint(len(views), (), generator=self.generator))
        offsets = torch.zeros(len(self.field), 2, requires_grad=True)
        out = self.field(views.c2w[v], views.intrinsics[v], *views.hw, screen_offsets=offsets, **self.setup.options())
        loss = photometric_loss(out["rgb"], self.images[v], cfg.l2_weight)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        with torch.no_grad():
            norms = offsets.grad.norm(dim=-1)
            self.grad_sum += norms
            self.grad_count += (norms > 0).float()
            if cfg.densify_from <= step + 1 <= cfg.densify_until and (step + 1) % cfg.densify_every == 0:
                state, source = densify_and_prune(gaussian_state(self.field),
                                                  self.grad_sum / self.grad_count.clamp_min(1), cfg.densify_grad,
                                                  cfg.dense_scale * self.extent, cfg.prune_opacity,
                                                  cfg.max_new_gaussians - self.added, self.generator)
                self.added += max(len(source) - len(self.field), 0)
                field = gaussians_from_state(state)
                _carry_optimiser(self.optimiser, field, source)
                self._use(field, self.optimiser)
        return {"loss": loss.item(), "gaussians": len(self.field)}

    def render(self, views: Views) -> list[dict[str, Tensor]]:
        return [{**r, "rgb": r["rgb"].clamp(0, 1)} for r in render_splat_views(self.field, views, self.setup)]

    def numbers(self) -> dict:
        return {"gaussians": len(self.field)}

    def state_dict(self) -> dict:
        return {"gaussians": gaussian_state(self.field), "setup": asdict(self.setup),
                "optimiser": self.optimiser.state_dict(), "generator": self.generator.get_state(),
                "grad_sum": self.grad_sum, "grad_count": self.grad_count, "added": self.added}

    def load_state_dict(self, state: dict) -> None:
        field = gaussians_from_state(state["gaussians"])
        self._use(field, make_optimiser(field, self.cfg))
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.grad_sum, self.grad_count, self.added = state["grad_sum"], state["grad_count"], state["added"]


def fit_splats(scene: Scene, cfg: SplatFitConfig) -> dict:
    """Fit Gaussians to ``scene.train`` (read with ``read_scene(cfg.scene, cfg)``: the setup records its background);
    evaluate on ``scene.test``; write the run to ``cfg.out`` (``run_fit``).

    Returns the summary also written to ``metrics.json`` (test PSNR, Gaussians, steps, training time).
    """
    if cfg.iterations < 0 or cfg.densify_every < 1:
        raise ValueError(f"need iterations >= 0 and densify_every >= 1, got {cfg.iterations}, {cfg.densify_every}")
    setup = SplatSetup(scene=str(cfg.scene), background=scene.background, cull_sigma=cfg.cull_sigma, tile=cfg.tile,
                       downscale=cfg.downscale)
    return run_fit(cfg, "splat fit", scene, lambda run: _SplatTrainer(run, setup, scene, cfg), desc="splat fit")


def load_splats(run_dir: str | Path, command: str = "splat shape") -> tuple[GaussianField, SplatSetup]:
    """The fitted Gaussians of a ``splat fit`` run and how to render them. ``command`` names the reader in
    the error for a run of another kind."""
    state, where = trained_state(run_dir, "splat fit", command)
    return gaussians_from_state(state["gaussians"]), config_from_dict(SplatSetup, state["setup"], where)
