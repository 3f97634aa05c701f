"""Fit a ``NeRF`` to a scene (``fit_nerf``, the ``priors3d field fit`` command) and load it back (``load_field``).

A fit run directory holds ``config.json``, ``metrics.jsonl`` (held-out PSNR against training wall
time), ``checkpoint.pt`` (the engine's; its trainer state is ``{field, setup, optimiser, generator}``),
``metrics.json`` and PNG grids ``GT | render | depth`` of a few test views.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import tyro

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.fields.nerf import NeRF, NeRFConfig, field_from_state, field_state
from priors3d.fields.rays import ray_bounds, scene_aabb, views_rays
from priors3d.fields.render import FieldSetup, render_nerf_views, render_rays
from priors3d.fields.views import Scene, Views
from priors3d.metrics import psnr
from priors3d.runs import RunDir, config_from_dict, open_run, save_json
from priors3d.viz import depth_image, save_png


@dataclass(kw_only=True)
class FitConfig(RunConfig):
    """Options of ``priors3d field fit``."""

    scene: tyro.conf.Positional[Path]
    """Scene folder (read with ``priors3d.fields.formats.load_scene``) or ``room`` for the procedural room."""
    out: Path = Path("runs/field-fit")
    iterations: int = 3000
    batch_rays: int = 1024
    lr: float = 1e-2
    lr_final: float = 1e-3
    """Learning rate at the end (exponential decay from ``lr``, see ``learning_rate``)."""
    n_samples: int = 24
    """Intervals per ray rendered by the field."""
    n_proposal: int = 48
    """Intervals per ray read from the cached density grid to place the rendered ones (0 = stratified)."""
    density_grid_every: int = 16
    """Refresh the cached density grid every this many iterations."""
    background: tuple[float, float, float] | None = None
    """Colour behind the field (None = black; rooms are closed)."""
    eval_every: int = 500
    checkpoint_every: int = 500
    picture_views: int = 3
    """Test views drawn as ``GT | render | depth`` grids at the end."""
    time_budget_s: float | None = None
    """Stop early once training (evaluation excluded) has run this long."""
    field: NeRFConfig = field(default_factory=NeRFConfig)
    """Field architecture; its ``aabb`` is replaced by the scene's box."""


def learning_rate(cfg: FitConfig, step: int, train_time: float) -> float:
    """Exponential decay from ``lr`` to ``lr_final`` over the run: over the iterations, or over the time
    budget when that is the tighter limit (so a budgeted run still ends at ``lr_final``)."""
    progress = step / max(cfg.iterations, 1)
    if cfg.time_budget_s is not None:
        progress = max(progress, train_time / cfg.time_budget_s)
    return cfg.lr * (cfg.lr_final / cfg.lr) ** min(progress, 1.0)


class _NerfTrainer:
    """One step: ``batch_rays`` random training rays, MSE, Adam; the cached density grid is refreshed
    every ``density_grid_every`` steps. ``train_time`` (seconds trained so far) drives a budgeted schedule."""

    def __init__(self, model: NeRF, setup: FieldSetup, scene: Scene, cfg: FitConfig, generator: torch.Generator,
                 train_time: float):
        self.model, self.setup, self.cfg, self.generator, self.train_time = model, setup, cfg, generator, train_time
        self.optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-15, fused=True)
        origins, directions = views_rays(scene.train)
        o, d = origins.reshape(-1, 3).contiguous(), directions.reshape(-1, 3).contiguous()
        near, far = ray_bounds(o, d, torch.tensor(setup.aabb).reshape(2, 3), setup.near, setup.far)
        self.rays = {"o": o, "d": d, "near": near, "far": far, "rgb": scene.train.images.reshape(-1, 3).float()}
        self.background = None if cfg.background is None else torch.tensor(cfg.background)

    def step(self, step: int) -> dict[str, float]:
        start, cfg, rays = time.perf_counter(), self.cfg, self.rays
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step, self.train_time)
        index = torch.randint(rays["o"].shape[0], (cfg.batch_rays,), generator=self.generator)
        out = render_rays(self.model, rays["o"][index], rays["d"][index], rays["near"][index], rays["far"][index],
                          cfg.n_samples, cfg.n_proposal, proposal=self.model.grid_density, generator=self.generator,
                          background=self.background)
        loss = torch.mean((out["rgb"] - rays["rgb"][index]) ** 2)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        if (step + 1) % cfg.density_grid_every == 0:
            self.model.update_density_grid(generator=self.generator)
        self.train_time += time.perf_counter() - start
        return {"loss": loss.item()}

    def state_dict(self) -> dict:
        return {"field": field_state(self.model), "setup": asdict(self.setup),
                "optimiser": self.optimiser.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["field"]["state_dict"])  # weights and the cached density grid
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])


def _evaluate(model: NeRF, views: Views, setup: FieldSetup) -> dict:
    renders = render_nerf_views(model, views, setup)
    per_view = [psnr(r["rgb"], gt) for r, gt in zip(renders, views.images)]
    return {"psnr": float(np.mean(per_view)), "psnr_per_view": per_view}


def save_view_grids(run: RunDir, views: Views, renders: list[dict]) -> None:
    """``test_<view>.png``: ``truth | render | depth`` for each view of ``views`` (``renders``: ``rgb``, ``depth``)."""
    for name, gt, r in zip(views.names, views.images, renders):
        grid = np.concatenate([(gt.numpy() * 255 + 0.5).astype(np.uint8),
                               (r["rgb"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8),
                               depth_image(r["depth"])], axis=1)
        save_png(run.path(f"test_{name}.png"), grid)


def log_final(run: RunDir, done: dict, numbers: dict[str, float]) -> None:
    """Put the final evaluation ``numbers`` into the metric row of the last step ``done["step"]`` (a new
    row when a time budget stopped training between logged steps)."""
    rows = run.read_metrics()
    if not rows or rows[-1]["step"] != done["step"]:
        rows.append({"step": done["step"], "train_time_s": done["train_time_s"]})
    rows[-1].update(numbers)
    run.write_metrics(rows)


def fit_nerf(scene: Scene, cfg: FitConfig) -> dict:
    """Fit a ``NeRF`` to ``scene.train``; evaluate on ``scene.test``; write the run to ``cfg.out``.

    Returns the summary also written to ``metrics.json`` (test PSNR, steps, training time, speed).
    """
    engine.resolve_device(cfg.device)  # CPU only
    aabb = scene_aabb(scene)
    setup = FieldSetup(scene=str(cfg.scene), aabb=tuple(aabb.flatten().tolist()), near=float(scene.near),
                       far=float(scene.far), n_samples=cfg.n_samples, n_proposal=cfg.n_proposal,
                       background=cfg.background)
    with engine.start(cfg, "field fit") as run:
        model = NeRF(replace(cfg.field, aabb=setup.aabb))
        trainer = _NerfTrainer(model, setup, scene, cfg, run.generator,
                               run.checkpoint["train_time_s"] if run.checkpoint else 0.0)
        done = run.train(trainer, cfg.iterations, log_every=cfg.eval_every or max(cfg.iterations, 1),
                         eval_every=cfg.eval_every, time_budget_s=cfg.time_budget_s, desc="fit",
                         evaluate=lambda step: {"psnr": _evaluate(model, scene.test, setup)["psnr"]})
        result = _evaluate(model, scene.test, setup)
        log_final(run, done, {"psnr": result["psnr"]})
        steps = max(done["step"], 1)
        summary = {**result, **done, "time_per_iter_s": done["train_time_s"] / steps,
                   "rays_per_s": cfg.batch_rays * steps / max(done["train_time_s"], 1e-9)}
        save_json(run.path("metrics.json"), summary)
        pictures = scene.test.subset(list(range(min(cfg.picture_views, len(scene.test)))))
        save_view_grids(run, pictures, render_nerf_views(model, pictures, setup))
    return summary


def load_field(run_dir: str | Path, command: str = "field render") -> tuple[NeRF, FieldSetup]:
    """The field of a ``field fit`` (or ``field shape``) run and how to render it (scene, box, ray bounds,
    sampling). ``command`` names the reader in the error for a run of another kind."""
    run = open_run(run_dir, ("field fit", "field shape"), command)
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"no {run.path('checkpoint.pt')}: the run stopped before its first checkpoint")
    state = checkpoint["trainer"]
    model = field_from_state(state["field"])
    model.eval()
    return model, config_from_dict(FieldSetup, state["setup"], f"{run.path('checkpoint.pt')} setup")
