"""The default procedural room and a NeRF fitted to it, shared by the shaping benchmarks.

``add_fit_arguments`` adds ``--out``, ``--fit-run`` and ``--fit-iterations``; ``room_and_field`` then
fits ``<out>/fit`` (or reuses ``--fit-run``) and returns the scene, the field, its setup and the fit run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from priors3d.fields.scenes import RoomConfig, generate_room  # noqa: E402
from priors3d.fields.fit import PROPOSAL_SAMPLING, FitConfig, fit_nerf, load_field  # noqa: E402


def add_fit_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--fit-run", type=Path, default=None, help="reuse a fitted run instead of fitting")
    parser.add_argument("--fit-iterations", type=int, default=500)


def room_and_field(args: argparse.Namespace):
    """``(scene, field, setup, fit_run)``: room seed 0 and its NeRF (fitted to ``args.out / "fit"`` if needed)."""
    scene = generate_room(RoomConfig(seed=0))
    fit_run = args.fit_run or args.out / "fit"
    if args.fit_run is None:
        fit_nerf(scene, FitConfig(scene=Path("room"), out=fit_run, iterations=args.fit_iterations,
                                  batch_rays=2048, eval_every=10**9, picture_views=1, overwrite=True,
                                  **PROPOSAL_SAMPLING))
    field, setup = load_field(fit_run)
    return scene, field, setup, fit_run
