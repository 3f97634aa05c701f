"""``priors3d field generate|fit|render`` and ``priors3d splat fit``: scenes, and NeRF and Gaussian fits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from priors3d.engine import CommandConfig
from priors3d.fields.fit import FitConfig, fit_nerf, load_field, view_psnr
from priors3d.fields.formats import fitted_scene, read_scene, write_nerfstudio
from priors3d.fields.render import render_nerf_views
from priors3d.fields.scenes.generate import contact_sheet
from priors3d.fields.scenes.capture import CaptureConfig, write_capture
from priors3d.fields.scenes.object import ObjectConfig, write_blender
from priors3d.fields.scenes.room import RoomConfig, generate_room
from priors3d.fields.splat_fit import SplatFitConfig, fit_splats
from priors3d.runs import save_json
from priors3d.viz import depth_image, save_png


@dataclass(kw_only=True)
class GenerateConfig(CommandConfig):
    """Options of ``priors3d field generate``."""

    out: tyro.conf.Positional[Path]
    """Scene folder to write (nerfstudio layout for a room, NeRF-synthetic layout for an object)."""
    kind: Literal["room", "object", "capture"] = "room"
    """A procedural room; an object captured as the NeRF-synthetic data sets are (``--object.*`` options); or a
    phone walk around a courtyard in nerfstudio's layout (distorted portrait JPEGs, ``--capture.*``)."""
    room: tyro.conf.OmitArgPrefixes[RoomConfig] = field(default_factory=RoomConfig)
    """The room and its cameras."""
    object: ObjectConfig = field(default_factory=ObjectConfig)
    """The object and its cameras."""
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    """The courtyard, the walk and the phone."""
    sheet_views: int = 4
    """Test views shown in contact_sheet.png."""


@dataclass(kw_only=True)
class RenderConfig(CommandConfig):
    """Options of ``priors3d field render``."""

    run: tyro.conf.Positional[Path]
    """A run directory written by ``priors3d field fit`` or ``priors3d field shape``."""
    split: Literal["train", "test"] = "test"
    out: Path | None = None
    """Where the PNGs go (default ``<run>/renders/<split>``)."""
    chunk: int = 8192


def generate(cfg: GenerateConfig) -> Path:
    """Render a procedural room (seeded) to OUT: nerfstudio transforms.json, images, depth, labels, contact sheet;
    with ``--kind object``, an object in the NeRF-synthetic layout (RGBA frames, transforms_{train,val,test}.json);
    with ``--kind capture``, a phone capture as ns-process-data writes one (no labels)."""
    start = time.perf_counter()
    if cfg.kind != "room":
        o, c = cfg.object, cfg.capture
        write, options, what = {
            "object": (write_blender, o, f"{o.n_train} train + {o.n_val} val + {o.n_test} test views "
                                         f"({o.width}x{o.height}; NeRF-synthetic layout)"),
            "capture": (write_capture, c, f"{c.n_frames} frames ({c.width}x{c.height}, distorted; nerfstudio layout)"),
        }[cfg.kind]
        transforms = write(cfg.out, options, progress=cfg.progress)
        print(f"rendered {what} in {time.perf_counter() - start:.1f} s; wrote {transforms}")
        return transforms
    scene = generate_room(cfg.room, progress=cfg.progress)
    seconds = time.perf_counter() - start
    transforms = write_nerfstudio(scene, cfg.out)
    sheet = contact_sheet(scene, Path(cfg.out) / "contact_sheet.png", cfg.sheet_views)
    print(f"rendered {len(scene.train)} train + {len(scene.test)} test views ({cfg.room.width}x{cfg.room.height}) "
          f"in {seconds:.1f} s; wrote {transforms.parent} and {sheet.name}")
    return transforms


def fit(cfg: FitConfig) -> dict:
    """Fit a CPU-fast NeRF to a scene; writes metrics, checkpoints and test-view pictures to ``--out``."""
    summary = fit_nerf(read_scene(cfg.scene, cfg), cfg)
    print(f"test PSNR {summary['psnr']:.2f} dB after {summary['step']} iterations "
          f"({summary['train_time_s']:.0f} s) -> {cfg.out}")
    return summary


def render(cfg: RenderConfig) -> dict:
    """Render the views of a split from a fitted field to PNGs (colour and depth); report PSNR."""
    model, setup = load_field(cfg.run)
    scene = fitted_scene(setup)
    views = scene.test if cfg.split == "test" else scene.train
    out = cfg.out or cfg.run / "renders" / cfg.split
    renders = render_nerf_views(model, views, setup, cfg.chunk, progress=cfg.progress)
    for name, r in zip(views.names, renders):
        save_png(out / f"{name}.png", r["rgb"].clamp(0, 1).numpy())
        save_png(out / f"{name}_depth.png", depth_image(r["depth"]))
    result = view_psnr(renders, views)
    summary = {"split": cfg.split, **result, "psnr_per_view": dict(zip(views.names, result["psnr_per_view"]))}
    save_json(out / "metrics.json", summary)
    print(f"rendered {len(views)} {cfg.split} views to {out}: PSNR {summary['psnr']:.2f} dB")
    return summary


def splat_fit(cfg: SplatFitConfig) -> dict:
    """Fit 3D Gaussians to a scene on the CPU; writes metrics, checkpoints and test-view pictures to ``--out``."""
    summary = fit_splats(read_scene(cfg.scene, cfg), cfg)
    print(f"{summary['gaussians']} Gaussians, test PSNR {summary['psnr']:.2f} dB after {summary['step']} steps "
          f"({summary['train_time_s']:.0f} s) -> {cfg.out}")
    return summary
