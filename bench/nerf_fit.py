"""Benchmark: fit the NeRF to the default procedural room within a wall-time budget on the CPU.

Writes the section ``nerf-fit`` of docs/benchmarks.md (speed) and docs/results.md (quality):
time per iteration, rays per second, held-out PSNR against training wall time, and whether
28 dB was reached and when. Evaluation time is excluded from the training wall time.

    PYTHONPATH=src .venv/bin/python bench/nerf_fit.py            # the full 10-minute run
    PYTHONPATH=src .venv/bin/python bench/nerf_fit.py --budget-s 60 --no-write-docs   # a smoke run
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from priors3d.fields.scenes import RoomConfig, generate_room  # noqa: E402
from priors3d.fields.fit import PROPOSAL_SAMPLING, FitConfig, fit_nerf  # noqa: E402
from priors3d.runs import RunDir  # noqa: E402


@dataclass
class Bench:
    budget_s: float = 600.0
    """Training wall-time budget (evaluation excluded)."""
    iterations: int = 2000
    """Iteration cap; the learning rate decays over it."""
    eval_every: int = 100
    threads: int = 2
    """torch threads; a value other than 2 writes its own docs section."""
    target_db: float = 28.0
    out: Path = Path("runs/bench-nerf-fit")
    write_docs: bool = True


def main(bench: Bench) -> None:
    torch.set_num_threads(bench.threads)
    start = time.perf_counter()
    scene = generate_room(RoomConfig())
    scene_s = time.perf_counter() - start
    cfg = FitConfig(scene=Path("room"), out=bench.out, iterations=bench.iterations, eval_every=bench.eval_every,
                    checkpoint_every=bench.eval_every, time_budget_s=bench.budget_s, overwrite=True,
                    **PROPOSAL_SAMPLING)
    summary = fit_nerf(scene, cfg)
    curve = RunDir(bench.out).read_metrics()
    reached = next((r for r in curve if r["psnr"] >= bench.target_db), None)
    verdict = (f"**{bench.target_db:.0f} dB reached** at iteration {reached['step']} after "
               f"{reached['train_time_s']:.0f} s of training (budget {bench.budget_s:.0f} s; the last iteration may "
               f"end past it)" if reached else
               f"**{bench.target_db:.0f} dB not reached** within {summary['train_time_s']:.0f} s "
               f"({summary['step']} iterations)")
    h, w = scene.train.hw
    setup = (f"Default procedural room (`RoomConfig()`: {len(scene.train)} train / {len(scene.test)} test views, "
             f"{w}x{h} px; generating it took {scene_s:.0f} s, not counted). `FitConfig` defaults: "
             f"{cfg.batch_rays} rays per batch, {cfg.n_samples} rendered samples per ray placed by "
             f"{cfg.n_proposal} density-grid look-ups, grids {list(cfg.field.resolutions)} x {cfg.field.features} "
             f"features, Adam lr {cfg.lr} -> {cfg.lr_final}. Machine: {machine()}.")
    speed = (f"{summary['time_per_iter_s'] * 1000:.0f} ms per iteration, {summary['rays_per_s']:.0f} rays/s "
             f"(training only, {summary['step']} iterations in {summary['train_time_s']:.0f} s).")
    rows = "\n".join(f"| {r['step']} | {r['train_time_s']:.0f} | {r['psnr']:.2f} |" for r in curve)
    table = f"| iteration | training time (s) | test PSNR (dB) |\n|---|---|---|\n{rows}"
    flags = "" if bench.threads == 2 else f" --threads {bench.threads}"
    command = f"`PYTHONPATH=src .venv/bin/python bench/nerf_fit.py{flags}`"
    section = "nerf-fit" if bench.threads == 2 else f"nerf-fit-{bench.threads}-threads"
    print(setup, speed, verdict, table, sep="\n\n")
    if bench.write_docs:
        title = f" ({bench.threads} torch threads)"
        write_section("benchmarks.md", section, f"## NeRF fit speed (CPU){title}\n\n{command}\n\n{setup}\n\n{speed}\n")
        write_section("results.md", section,
                      f"## NeRF on the procedural room{title}\n\n{command}\n\n{setup}\n\n{verdict}; final test PSNR "
                      f"{summary['psnr']:.2f} dB.\n\n{table}\n")


if __name__ == "__main__":
    main(tyro.cli(Bench))
