"""Fit a ``NeRF`` to a scene (``fit_nerf``, the ``priors3d field fit`` command) and load it back (``load_field``).

A fit run directory holds ``config.json``, ``metrics.jsonl`` (held-out PSNR against training wall
time), ``checkpoint.pt`` (the engine's; its trainer state is ``{field, setup, optimiser, generator}``),
``metrics.json`` and PNG grids ``GT | render | depth`` of a few test views.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import tyro
from torch import Tensor

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.fields.formats import SceneOptions
from priors3d.fields.nerf import NeRF, NeRFConfig, field_from_state, field_state
from priors3d.fields.rays import pixel_rays, scene_aabb, views_rays
from priors3d.fields.render import FieldSetup, distortion_loss, render_nerf_views, render_rays
from priors3d.fields.views import Scene, Views
from priors3d.metrics import psnr
from priors3d.runs import config_from_dict, open_run, save_json
from priors3d.viz import depth_image, save_png


@dataclass(kw_only=True)
class FitConfig(SceneOptions, RunConfig):
    """Options of ``priors3d field fit``."""

    scene: tyro.conf.Positional[Path]
    """Scene folder (read with ``priors3d.fields.formats.load_scene``) or ``room`` for the procedural room."""
    out: Path = Path("runs/field-fit")
    iterations: int = 3000
    batch_rays: int = 1024
    lr: float = 1e-2
    lr_final: float = 1e-3
    """Learning rate at the end (exponential decay from ``lr``, see ``learning_rate``)."""
    n_samples: int = 64
    """Intervals per ray rendered by the field."""
    n_proposal: int = 0
    """Intervals per ray read from the cached density grid to place the rendered ones by importance (0: the
    rendered intervals are stratified; see ``PROPOSAL_SAMPLING``)."""
    skip: float = 1e-2
    """Empty-space skipping (Instant-NGP's occupancy grid): a rendered interval whose optical thickness under the
    cached density grid is below this counts as empty and is not evaluated (0: evaluate every sample)."""
    density_grid_every: int = 16
    """Refresh the cached density grid every this many iterations."""
    density_grid_decay: float = 0.8
    """Each refresh keeps ``max(decay * old, new)``: how fast densities the field no longer has fade from the grid
    (and its starting value of 1 everywhere), so that skipping starts within a few hundred steps."""
    distortion: float | None = None
    """Weight of mip-NeRF 360's distortion loss (``distortion_loss``), which gathers each ray's weight into one
    stretch. None: ``UNBOUNDED_PRIORS`` for unbounded scenes, 0 otherwise."""
    sparsity: float | None = None
    """Weight of a Cauchy sparsity loss on the sampled densities, mean ``log(1 + 2 sigma^2)`` (Plenoxels' prior for
    real 360-degree captures), which clears haze that no training view contradicts. None: ``UNBOUNDED_PRIORS`` for
    unbounded scenes, 0 otherwise."""
    near: float | None = None
    """Ray start in scene units (default: the loader's)."""
    far: float | None = None
    """Ray end (default: the loader's)."""
    supersample: int = 1
    """Rays per pixel side, for frames rendered or photographed anti-aliased (each pixel the mean over its area):
    training rays land uniformly inside their pixel and renders average k x k rays per pixel. 1: one ray through
    each pixel centre (the procedural room is rendered that way)."""
    random_background: bool = True
    """With RGBA frames, every training ray gets a random background colour (its target recomposited with the
    frame's alpha), so empty space must become transparent instead of background-coloured fog."""
    unbounded: bool | None = None
    """Contract what lies outside the box into the field's grid and sample to ``far`` in disparity (mip-NeRF 360).
    None: as the loader says (photo captures with a background are unbounded; objects on transparent frames and
    rooms are not)."""
    eval_every: int = 500
    checkpoint_every: int = 500
    picture_views: int = 3
    """Test views drawn as ``GT | render | depth`` grids at the end."""
    time_budget_s: float | None = None
    """Stop early once training (evaluation excluded) has run this long."""
    field: NeRFConfig = field(default_factory=NeRFConfig)
    """Field architecture; its ``aabb`` is replaced by the scene's box."""


PROPOSAL_SAMPLING = {"n_samples": 24, "n_proposal": 48, "skip": 0.0, "density_grid_decay": 0.95}
"""The sampling of the procedural-room results (``make demo``, the room and shaping benchmarks): 24 intervals placed
by importance from 48 look-ups in the cached density grid. On the room (every ray ends on a wall) it trains 2.4 times
as many steps as the default in the same time and ends 0.9 dB higher after 120 s; on the object and the capture it
stalls far below the default (21-23 against 29.6 dB; 15.2 against 22.5 dB on the capture without the floater
priors; docs/scenes.md)."""


UNBOUNDED_PRIORS = {"distortion": 0.002, "sparsity": 0.01}
"""The regularisers' weights when a fit leaves them to the scene and the scene is unbounded (a photo capture). On the
procedural capture they clear a sky-coloured haze in front of a test camera, in space that the training cameras see
only against the sky (held-out PSNR after 10 minutes: 25.85 dB, 22.50 without); on the bounded object they cost
1 dB (docs/scenes.md)."""


def learning_rate(cfg: FitConfig, step: int, train_time: float) -> float:
    """Exponential decay from ``lr`` to ``lr_final`` over the run: over the iterations, or over the time
    budget when that is the tighter limit (so a budgeted run still ends at ``lr_final``)."""
    progress = step / max(cfg.iterations, 1)
    if cfg.time_budget_s is not None:
        progress = max(progress, train_time / cfg.time_budget_s)
    return cfg.lr * (cfg.lr_final / cfg.lr) ** min(progress, 1.0)


class _NerfTrainer:
    """One step: ``batch_rays`` random training rays, MSE, Adam; the cached density grid is refreshed
    every ``density_grid_every`` steps. The run's training time so far drives a budgeted schedule."""

    def __init__(self, run: engine.Run, setup: FieldSetup, scene: Scene, cfg: FitConfig):
        self.model = NeRF(replace(cfg.field, aabb=setup.aabb, contract=setup.unbounded))  # drawn after the engine seeded the run
        self.run, self.setup, self.cfg, self.generator = run, setup, cfg, run.generator
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, eps=1e-15, fused=True)
        origins, directions = views_rays(scene.train)
        o, d = origins.reshape(-1, 3).contiguous(), directions.reshape(-1, 3).contiguous()
        near, far = setup.bounds(o, d)
        self.rays = {"o": o, "d": d, "near": near, "far": far, "rgb": scene.train.images.reshape(-1, 3).float()}
        if cfg.random_background and scene.train.alpha is not None and setup.background is not None:
            self.rays["clear"] = 1.0 - scene.train.alpha.reshape(-1, 1).float()
        self.sampling = setup.sampling(self.model)
        self.c2w, self.intrinsics, self.width = scene.train.c2w, scene.train.intrinsics, scene.train.hw[1]
        self.pixels = scene.train.hw[0] * self.width

    def step(self, step: int) -> dict[str, float]:
        cfg, rays = self.cfg, self.rays
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step, self.run.train_time)
        index = torch.randint(rays["o"].shape[0], (cfg.batch_rays,), generator=self.generator)
        sampling, target = self.sampling, rays["rgb"][index]
        if self.setup.supersample > 1:  # a ray through a uniform point of its pixel
            view, pixel = index // self.pixels, index % self.pixels
            uv = torch.stack([pixel % self.width, pixel // self.width], -1) + torch.rand(
                cfg.batch_rays, 2, generator=self.generator)
            o, d = pixel_rays(self.c2w[view], self.intrinsics[view], uv)
            near, far = self.setup.bounds(o, d)
        else:
            o, d, near, far = rays["o"][index], rays["d"][index], rays["near"][index], rays["far"][index]
        if "clear" in rays:  # recomposite over a random colour per ray
            background = torch.rand(cfg.batch_rays, 3, generator=self.generator)
            target = target + (background - sampling["background"]) * rays["clear"][index]
            sampling = {**sampling, "background": background}
        out = render_rays(self.model, o, d, near, far, generator=self.generator, **sampling)
        loss = torch.mean((out["rgb"] - target) ** 2)
        if cfg.distortion > 0:
            loss = loss + cfg.distortion * distortion_loss(out["weights"], out["s_edges"]).mean()
        if cfg.sparsity > 0:
            loss = loss + cfg.sparsity * torch.log1p(2 * out["sigmas"].square()).mean()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        if (step + 1) % cfg.density_grid_every == 0:
            self.model.update_density_grid(cfg.density_grid_decay, self.generator)
        return {"loss": loss.item()}

    def render(self, views: Views) -> list[dict[str, Tensor]]:
        return render_nerf_views(self.model, views, self.setup)

    def numbers(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"field": field_state(self.model), "setup": asdict(self.setup),
                "optimiser": self.optimiser.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["field"]["state_dict"])  # weights and the cached density grid
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])


def view_psnr(renders: list[dict[str, Tensor]], views: Views) -> dict:
    """Mean and per-view PSNR (dB) of ``renders`` (``rgb [H, W, 3]`` each) against ``views``."""
    per_view = [psnr(r["rgb"], gt) for r, gt in zip(renders, views.images)]
    return {"psnr": float(np.mean(per_view)), "psnr_per_view": per_view}


def run_fit(cfg: RunConfig, kind: str, scene: Scene, new_trainer: Callable[[engine.Run], Any], desc: str,
            time_budget_s: float | None = None, rates: dict[str, int] | None = None) -> dict:
    """Fit a field to ``scene.train`` in a ``kind`` run (``fit_nerf``, ``fit_splats``) and report it on ``scene.test``.

    ``new_trainer(run)`` gives the engine trainer, which also has ``render(views) -> [{rgb, depth}]`` and
    ``numbers() -> {name: number}`` (final numbers besides the PSNR). It trains ``cfg.iterations`` steps with the
    test PSNR every ``cfg.eval_every``; the final test PSNR and numbers go into the metric row of the last step (a
    new row when a time budget stopped training between logged steps) and, with the steps, training time, time per
    step and ``rates`` (``{name: count per step}``, per second), into ``metrics.json`` (the summary returned).
    ``test_<view>.png`` grids ``truth | render | depth`` show the first ``cfg.picture_views`` test views.
    """
    engine.resolve_device(cfg.device)  # CPU only
    with engine.start(cfg, kind) as run:
        trainer = new_trainer(run)
        done = run.train(trainer, cfg.iterations, log_every=cfg.eval_every or max(cfg.iterations, 1),
                         eval_every=cfg.eval_every, time_budget_s=time_budget_s, desc=desc,
                         evaluate=lambda step: {"psnr": view_psnr(trainer.render(scene.test), scene.test)["psnr"]})
        result, numbers = view_psnr(trainer.render(scene.test), scene.test), trainer.numbers()
        rows = run.read_metrics()
        if not rows or rows[-1]["step"] != done["step"]:
            rows.append({"step": done["step"], "train_time_s": done["train_time_s"]})
        rows[-1].update(psnr=result["psnr"], **numbers)
        run.write_metrics(rows)
        steps = max(done["step"], 1)
        summary = {**result, "step": done["step"], **numbers, "train_time_s": done["train_time_s"],
                   "time_per_iter_s": done["train_time_s"] / steps,
                   **{name: n * steps / max(done["train_time_s"], 1e-9) for name, n in (rates or {}).items()}}
        save_json(run.path("metrics.json"), summary)
        pictures = scene.test.subset(list(range(min(cfg.picture_views, len(scene.test)))))
        for name, gt, r in zip(pictures.names, pictures.images, trainer.render(pictures)):
            grid = np.concatenate([(gt.numpy() * 255 + 0.5).astype(np.uint8),
                                   (r["rgb"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8),
                                   depth_image(r["depth"])], axis=1)
            save_png(run.path(f"test_{name}.png"), grid)
    return summary


def fit_nerf(scene: Scene, cfg: FitConfig) -> dict:
    """Fit a ``NeRF`` to ``scene.train`` (read with ``read_scene(cfg.scene, cfg)``); evaluate on ``scene.test``;
    write the run to ``cfg.out`` (``run_fit``). The setup records the scene's box, background and boundedness,
    with ``cfg.near``, ``cfg.far``, ``cfg.unbounded`` and ``cfg.supersample`` applied; regularisers left to the
    scene (None) get ``UNBOUNDED_PRIORS`` on unbounded scenes and 0 on the others, as the run's config records.

    Returns the summary also written to ``metrics.json`` (test PSNR, steps, training time, speed).
    """
    near, far = (float(loaded if given is None else given) for given, loaded in ((cfg.near, scene.near),
                                                                             (cfg.far, scene.far)))
    if not 0 <= near < far or cfg.supersample < 1:
        raise ValueError(f"need 0 <= near < far and supersample >= 1, got near={near}, far={far}, "
                         f"supersample={cfg.supersample}")
    setup = FieldSetup(scene=str(cfg.scene), aabb=tuple(scene_aabb(scene).flatten().tolist()), near=near, far=far,
                       n_samples=cfg.n_samples, n_proposal=cfg.n_proposal, background=scene.background,
                       downscale=cfg.downscale, unbounded=scene.unbounded if cfg.unbounded is None else cfg.unbounded,
                       supersample=cfg.supersample, skip=cfg.skip)
    scene_priors = {name: weight if setup.unbounded else 0.0 for name, weight in UNBOUNDED_PRIORS.items()}
    cfg = replace(cfg, **{name: weight for name, weight in scene_priors.items() if getattr(cfg, name) is None})
    return run_fit(cfg, "field fit", scene, lambda run: _NerfTrainer(run, setup, scene, cfg), desc="fit",
                   time_budget_s=cfg.time_budget_s, rates={"rays_per_s": cfg.batch_rays})


def trained_state(run_dir: str | Path, kinds: str | tuple[str, ...], command: str) -> tuple[dict, str]:
    """The trainer state in the checkpoint of a ``kinds`` run (``command`` names the reader in the error for a run
    of another kind), and where its setup is read from (for error messages)."""
    run = open_run(run_dir, kinds, command)
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"no {run.path('checkpoint.pt')}: the run stopped before its first checkpoint")
    return checkpoint["trainer"], f"{run.path('checkpoint.pt')} setup"


def load_field(run_dir: str | Path, command: str = "field render") -> tuple[NeRF, FieldSetup]:
    """The field of a ``field fit`` (or ``field shape``) run and how to render it (scene, box, ray bounds,
    sampling). ``command`` names the reader in the error for a run of another kind."""
    state, where = trained_state(run_dir, ("field fit", "field shape"), command)
    return field_from_state(state["field"]).eval(), config_from_dict(FieldSetup, state["setup"], where)
