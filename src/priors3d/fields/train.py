"""Fit a ``NeRF`` to a scene (``priors3d field fit``), render it (``priors3d field render``), load it back.

A fit run directory holds ``config.json``, ``metrics.jsonl`` (held-out PSNR against training wall
time), ``checkpoint.pt`` (field config and weights, optimiser, step, training time, RNG state
and the render setup), ``metrics.json`` and PNG grids ``GT | render | depth`` of a few test views.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from torch import Tensor
from tqdm import tqdm

from priors3d.fields.nerf import NeRF, NeRFConfig, field_from_state, field_state
from priors3d.fields.formats import open_scene
from priors3d.fields.rays import ray_bounds, scene_aabb, views_rays
from priors3d.fields.render import FieldSetup, render_nerf_views, render_rays
from priors3d.fields.views import Scene, Views
from priors3d.metrics import psnr
from priors3d.runs import RunDir, save_json, seed_everything
from priors3d.viz import depth_image, save_png


@dataclass
class FitConfig:
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
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 500
    picture_views: int = 3
    """Test views drawn as ``GT | render | depth`` grids at the end."""
    time_budget_s: float | None = None
    """Stop early once training (evaluation excluded) has run this long."""
    resume: bool = False
    """Continue from ``out/checkpoint.pt`` when it exists."""
    field: NeRFConfig = field(default_factory=NeRFConfig)
    """Field architecture; its ``aabb`` is replaced by the scene's box."""


@dataclass
class RenderConfig:
    """Options of ``priors3d field render``."""

    run: tyro.conf.Positional[Path]
    """A run directory written by ``priors3d field fit``."""
    split: Literal["train", "test"] = "test"
    out: Path | None = None
    """Where the PNGs go (default ``<run>/renders/<split>``)."""
    chunk: int = 8192


def learning_rate(cfg: FitConfig, step: int, train_time: float) -> float:
    """Exponential decay from ``lr`` to ``lr_final`` over the run: over the iterations, or over the time
    budget when that is the tighter limit (so a budgeted run still ends at ``lr_final``)."""
    progress = step / max(cfg.iterations, 1)
    if cfg.time_budget_s is not None:
        progress = max(progress, train_time / cfg.time_budget_s)
    return cfg.lr * (cfg.lr_final / cfg.lr) ** min(progress, 1.0)


def _train_rays(scene: Scene, aabb: Tensor, near: float, far: float) -> dict[str, Tensor]:
    origins, directions = views_rays(scene.train)
    o, d = origins.reshape(-1, 3).contiguous(), directions.reshape(-1, 3).contiguous()
    t_near, t_far = ray_bounds(o, d, aabb, near, far)
    return {"o": o, "d": d, "near": t_near, "far": t_far, "rgb": scene.train.images.reshape(-1, 3).float()}


def _evaluate(model: NeRF, views: Views, setup: FieldSetup) -> dict:
    renders = render_nerf_views(model, views, setup)
    per_view = [psnr(r["rgb"], gt) for r, gt in zip(renders, views.images)]
    return {"psnr": float(np.mean(per_view)), "psnr_per_view": per_view}


def train_field(scene: Scene, cfg: FitConfig) -> dict:
    """Fit a ``NeRF`` to ``scene.train``; evaluate on ``scene.test``; write everything to ``cfg.out``."""
    run = RunDir(cfg.out)
    aabb = scene_aabb(scene)
    setup = FieldSetup(scene=str(cfg.scene), aabb=tuple(aabb.flatten().tolist()), near=float(scene.near),
                       far=float(scene.far), n_samples=cfg.n_samples, n_proposal=cfg.n_proposal,
                       background=cfg.background)
    generator = seed_everything(cfg.seed)
    checkpoint = run.load_checkpoint() if cfg.resume else None
    if checkpoint is not None:
        model = field_from_state(checkpoint["field"])
    else:
        model = NeRF(replace(cfg.field, aabb=setup.aabb))
        run.write_config(cfg, cfg.seed)
        run.path("metrics.jsonl").unlink(missing_ok=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-15, fused=True)
    step, train_time = 0, 0.0
    if checkpoint is not None:
        optimiser.load_state_dict(checkpoint["optimiser"])
        generator.set_state(checkpoint["generator"])
        step, train_time = checkpoint["step"], checkpoint["train_time_s"]

    def save_checkpoint() -> None:
        run.save_checkpoint({"field": field_state(model), "setup": asdict(setup), "optimiser": optimiser.state_dict(),
                             "generator": generator.get_state(), "step": step, "train_time_s": train_time})

    rays = _train_rays(scene, aabb, setup.near, setup.far)
    background = None if cfg.background is None else torch.tensor(cfg.background)
    n_rays = rays["o"].shape[0]
    bar = tqdm(total=cfg.iterations, initial=step, desc="fit", dynamic_ncols=True)
    while step < cfg.iterations and (cfg.time_budget_s is None or train_time < cfg.time_budget_s):
        start = time.perf_counter()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step, train_time)
        index = torch.randint(n_rays, (cfg.batch_rays,), generator=generator)
        out = render_rays(model, rays["o"][index], rays["d"][index], rays["near"][index], rays["far"][index],
                          cfg.n_samples, cfg.n_proposal, proposal=model.grid_density, generator=generator,
                          background=background)
        loss = torch.mean((out["rgb"] - rays["rgb"][index]) ** 2)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        if step % cfg.density_grid_every == 0:
            model.update_density_grid(generator=generator)
        train_time += time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{-10 * math.log10(max(loss.item(), 1e-10)):.1f}")
        if step % cfg.eval_every == 0 and step < cfg.iterations:
            record = _evaluate(model, scene.test, setup)
            run.log_metrics({"step": step, "train_time_s": train_time, "loss": loss.item(), "psnr": record["psnr"]})
            bar.write(f"step {step}: test PSNR {record['psnr']:.2f} dB after {train_time:.0f} s of training")
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    save_checkpoint()

    result = _evaluate(model, scene.test, setup)
    run.log_metrics({"step": step, "train_time_s": train_time, "psnr": result["psnr"]})
    steps_done = max(step, 1)
    summary = {"psnr": result["psnr"], "psnr_per_view": result["psnr_per_view"], "step": step,
               "train_time_s": train_time, "time_per_iter_s": train_time / steps_done,
               "rays_per_s": cfg.batch_rays * steps_done / max(train_time, 1e-9)}
    save_json(run.path("metrics.json"), summary)
    n_pictures = min(cfg.picture_views, len(scene.test))
    if n_pictures:
        pictures = scene.test.subset(list(range(n_pictures)))
        for name, gt, r in zip(pictures.names, pictures.images, render_nerf_views(model, pictures, setup)):
            grid = np.concatenate([(gt.numpy() * 255 + 0.5).astype(np.uint8),
                                   (r["rgb"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8),
                                   depth_image(r["depth"])], axis=1)
            save_png(run.path(f"test_{name}.png"), grid)
    return summary


def fit(cfg: FitConfig) -> dict:
    """Fit a CPU-fast NeRF to a scene; writes metrics, checkpoints and test-view pictures to ``--out``."""
    return train_field(open_scene(cfg.scene), cfg)


def load_field(run_dir: str | Path) -> tuple[NeRF, FieldSetup]:
    """The fitted field of a ``fit`` run and how to render it (scene, box, ray bounds, sampling)."""
    checkpoint = RunDir(run_dir).load_checkpoint() if Path(run_dir).is_dir() else None
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint.pt in {run_dir}; expected a run directory written by 'field fit'")
    setup = dict(checkpoint["setup"])
    setup["aabb"] = tuple(setup["aabb"])
    if setup["background"] is not None:
        setup["background"] = tuple(setup["background"])
    model = field_from_state(checkpoint["field"])
    model.eval()
    return model, FieldSetup(**setup)


def render(cfg: RenderConfig) -> dict:
    """Render the views of a split from a fitted field to PNGs (colour and depth); report PSNR."""
    model, setup = load_field(cfg.run)
    scene = open_scene(setup.scene)
    views = scene.test if cfg.split == "test" else scene.train
    out = cfg.out or cfg.run / "renders" / cfg.split
    renders = render_nerf_views(model, views, setup, cfg.chunk, progress=True)
    per_view = {}
    for name, gt, r in zip(views.names, views.images, renders):
        save_png(out / f"{name}.png", r["rgb"].clamp(0, 1).numpy())
        save_png(out / f"{name}_depth.png", depth_image(r["depth"]))
        per_view[name] = psnr(r["rgb"], gt)
    summary = {"split": cfg.split, "psnr": float(np.mean(list(per_view.values()))), "psnr_per_view": per_view}
    save_json(out / "metrics.json", summary)
    print(f"rendered {len(views)} {cfg.split} views to {out}: PSNR {summary['psnr']:.2f} dB")
    return summary
