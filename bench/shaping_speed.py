"""Vectorised (vmap of grad) shaping step against the reference's Python loop of autograd calls.

Both compute the Jacobians of the same batch of pixels of a fitted (or freshly initialised) room
NeRF, with the graph kept, then the JacobiNeRF loss and its backward pass. The script checks that
the two Jacobians agree to 1e-6 and writes a section of docs/benchmarks.md.

    PYTHONPATH=src .venv/bin/python bench/shaping_speed.py [--fit-run runs/x] [--rays 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import machine, write_section  # noqa: E402

from priors3d.fields.nerf import NeRF, NeRFConfig  # noqa: E402
from priors3d.fields.scenes import RoomConfig, generate_room  # noqa: E402
from priors3d.fields.fit import load_field  # noqa: E402
from priors3d.fields.render import FieldSetup  # noqa: E402
from priors3d.fields.rays import scene_aabb  # noqa: E402
from priors3d.shaping.jacobian import loop_pixel_jacobians, pixel_jacobians  # noqa: E402
from priors3d.shaping.losses import shaping_loss  # noqa: E402
from priors3d.shaping.pairs import mask_pairs  # noqa: E402
from priors3d.shaping.propagate import view_rays  # noqa: E402


def step(model, jacobian_fn, args, ids, kwargs) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    jac = jacobian_fn(model, *args, **kwargs)
    loss = shaping_loss(torch.zeros(()), jac, mask_pairs(ids))["loss"]
    model.zero_grad(set_to_none=True)
    loss.backward()
    return time.perf_counter() - start, jac.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fit-run", type=Path, default=None, help="a fitted run (default: an untrained field)")
    parser.add_argument("--rays", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    scene = generate_room(RoomConfig(seed=0))
    if args.fit_run:
        model, setup = load_field(args.fit_run)
    else:
        torch.manual_seed(0)
        aabb = tuple(scene_aabb(scene).flatten().tolist())
        model = NeRF(NeRFConfig(aabb=aabb))
        setup = FieldSetup("room", aabb, scene.near, scene.far, n_samples=32, n_proposal=64)
    o, d, near, far = view_rays(scene.train.subset([0]), setup)
    pix = torch.randperm(o.shape[1], generator=torch.Generator().manual_seed(0))[:args.rays]
    batch = (o[0, pix], d[0, pix], near[0, pix], far[0, pix])
    ids = scene.train.semantic[0].flatten()[pix]
    kwargs = setup.sampling(model)
    times = {"vmap": [], "loop": []}
    for _ in range(args.repeats):
        t_vec, j_vec = step(model, pixel_jacobians, batch, ids, kwargs)
        t_loop, j_loop = step(model, lambda *a, **k: loop_pixel_jacobians(*a, create_graph=True, **k), batch, ids,
                              kwargs)
        times["vmap"].append(t_vec)
        times["loop"].append(t_loop)
    diff = float((j_vec - j_loop).abs().max())
    vec, loop = min(times["vmap"]), min(times["loop"])
    ok = diff <= 1e-6
    table = (f"| shaping step ({args.rays} pixels, P = {j_vec.shape[1]}) | best of {args.repeats} (s) |\n"
             f"|---|---|\n| Python loop of autograd.grad (reference style) | {loop:.3f} |\n"
             f"| vmap(grad) (priors3d.shaping) | {vec:.3f} |\n| speed-up | {loop / vec:.1f}x |\n")
    text = (f"## JacobiNeRF shaping step: vectorised vs loop\n\n{table}\n"
            f"Jacobians agree to {diff:.1e} (max abs difference; required <= 1e-6: {'yes' if ok else 'NO'}). "
            f"Field: {'fitted run ' + str(args.fit_run) if args.fit_run else 'untrained room NeRF'}; "
            f"{setup.n_samples} samples + {setup.n_proposal} proposal samples per ray.\n\n"
            f"Machine: {machine()}.\n\n"
            f"`PYTHONPATH=src .venv/bin/python bench/shaping_speed.py"
            f"{' --fit-run ' + str(args.fit_run) if args.fit_run else ''} --rays {args.rays}`\n")
    print(text)
    if not args.no_write_docs:
        write_section("benchmarks.md", "shaping-speed", text)
    if not ok:
        raise SystemExit(f"vectorised and loop Jacobians differ by {diff:.2e} > 1e-6")


if __name__ == "__main__":
    main()
