"""Invariance of trained VN models on every test shape: logits under 20 random rotations (float32 or float64).

For each run (default: the z-trained VN runs of the protocol tables) and each test shape ``x``, draws
``--rotations`` uniform rotations ``R`` and compares, in eval mode, the logits ``f(x R)`` with ``f(x)``:
the relative difference ``‖f(x R) − f(x)‖ / ‖f(x)‖`` (over a shape's logits: its class scores, or every
point's part scores) and whether the predictions are identical (the class; for parts, every point's
part among its category's). The same weights also run in float64, which tells rounding apart from a loss
of invariance, and every k-nearest-neighbour graph the model builds is recorded, to count the
shape/rotation pairs whose change exceeds the limit and whether a neighbour set changed in them (the one
discontinuous step of these models); the rotated shape also runs with the unrotated shape's graphs
replayed, which leaves only the layers' rounding. Writes the ``pointcloud-invariance`` section of
docs/results.md.

    PYTHONPATH=src .venv/bin/python bench/pointcloud_invariance.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from unittest import mock

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from priors3d.pointcloud.metrics import restricted_prediction  # noqa: E402
from priors3d.pointcloud.train import forward, load_run, seg_table  # noqa: E402
from priors3d.so3 import random_rotation  # noqa: E402
from priors3d.vn import knn  # noqa: E402

RUNS = ["runs/pointcloud/protocols-cls-seeds0-1-2/vn_pointnet-z-seed0",
        "runs/pointcloud/protocols-cls-seeds0-1-2/vn_dgcnn-z-seed0",
        "runs/pointcloud/protocols-seg-seeds0-1-2/vn_dgcnn-z-seed0"]
LIMIT = 1e-4
DTYPES = (torch.float32, torch.float64)


@contextlib.contextmanager
def patched_knn(graph_builder):
    """The point-cloud models build their k-NN graphs with ``graph_builder`` instead of ``knn``."""
    with mock.patch("priors3d.pointcloud.models.heads.knn", graph_builder), \
            mock.patch("priors3d.pointcloud.models.vn_pointnet.knn", graph_builder):
        yield


@contextlib.contextmanager
def recorded_graphs():
    """Records the ``[B, N, k]`` neighbour indices of every k-NN graph the point-cloud models build."""
    graphs: list[torch.Tensor] = []

    def recording(*args, **kwargs):
        graphs.append(knn(*args, **kwargs))
        return graphs[-1]

    with patched_knn(recording):
        yield graphs


@contextlib.contextmanager
def replayed_graphs(graphs: list[torch.Tensor]):
    """The models use ``graphs``, in order, instead of building their own (another input's graphs)."""
    replay = iter(graphs)
    with patched_knn(lambda *args, **kwargs: next(replay)):
        yield


def changed_neighbours(before: list[torch.Tensor], after: list[torch.Tensor]) -> torch.Tensor:
    """``[graphs, B]``: does any point of a shape have another neighbour set, graph by graph (the first
    is built on the coordinates, the others in feature space)?"""
    return torch.stack([(a.sort(-1).values != b.sort(-1).values).flatten(1).any(1)
                        for a, b in zip(before, after)])


def relative_change(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``[B]``: ``‖logits − reference‖ / ‖reference‖`` over each shape's logits."""
    return (logits - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


def predictions(logits: torch.Tensor, batch: dict, task: str, seg_classes) -> torch.Tensor:
    """Class ``[B]``, or each point's part among its category's ``[B, N]``."""
    if task == "cls":
        return logits.argmax(-1)
    return restricted_prediction(logits, batch["label"], seg_classes)


@torch.no_grad()
def measure(run: Path, n_rotations: int, seed: int, dtype: torch.dtype) -> dict:
    """Worst and median relative logit change and the share of shapes whose predictions never change."""
    config, model, test_set = load_run(run, torch.device("cpu"))
    model.to(dtype)
    seg_classes = seg_table(test_set) if config.task == "seg" else None
    generator = torch.Generator().manual_seed(seed)
    errors, stable, over, over_flipped, over_xyz, worst_fixed = [], [], 0, 0, 0, 0.0
    for batch in DataLoader(test_set, batch_size=16):
        batch = dict(batch, points=batch["points"].to(dtype))
        with recorded_graphs() as reference_graphs:
            reference = forward(model, batch, config.task, test_set.num_classes)
        predicted = predictions(reference, batch, config.task, seg_classes)
        worst = torch.zeros(len(reference))
        same = torch.ones(len(reference), dtype=torch.bool)
        for _ in range(n_rotations):
            rotation = random_rotation(len(reference), generator, dtype)        # [B, 3, 3]
            rotated = dict(batch, points=batch["points"] @ rotation)
            with recorded_graphs() as graphs:
                logits = forward(model, rotated, config.task, test_set.num_classes)
            change = relative_change(logits, reference)
            with replayed_graphs(reference_graphs):
                fixed = forward(model, rotated, config.task, test_set.num_classes)
            worst_fixed = max(worst_fixed, relative_change(fixed, reference).max().item())
            changed = changed_neighbours(reference_graphs, graphs)
            over += int((change > LIMIT).sum())
            over_flipped += int(((change > LIMIT) & changed.any(0)).sum())
            over_xyz += int(((change > LIMIT) & changed[0]).sum())
            worst = torch.maximum(worst, change)
            unchanged = predictions(logits, rotated, config.task, seg_classes) == predicted
            same &= unchanged.reshape(len(same), -1).all(1)
        errors.append(worst)
        stable.append(same)
    errors, stable = torch.cat(errors), torch.cat(stable)
    return {"run": str(run), "model": config.model, "task": config.task, "dtype": str(dtype).removeprefix("torch."),
            "shapes": len(errors), "pairs": len(errors) * n_rotations, "over": over, "over_flipped": over_flipped,
            "over_xyz": over_xyz, "max_same_graphs": worst_fixed,
            "max": errors.max().item(), "median": errors.median().item(), "stable": stable.float().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, default=[Path(r) for r in RUNS])
    parser.add_argument("--rotations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(run, args.rotations, args.seed, dtype) for run in args.runs for dtype in DTYPES]
    lines = ["## Invariance of the trained VN models on every test shape", "",
             "| run | model | task | precision | test shapes | worst relative change of the logits | median | "
             f"shapes whose predictions never change | shape/rotation pairs over {LIMIT:g} (of them, with a "
             "changed neighbour set; in the coordinate graph) | worst, with the unrotated shape's graphs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| `{r['run']}` | {r['model']} | {r['task']} | {r['dtype']} | {r['shapes']} | {r['max']:.1e} | "
              f"{r['median']:.1e} | {100 * r['stable']:.1f} % | {r['over']} of {r['pairs']} ({r['over_flipped']}; "
              f"{r['over_xyz']}) | {r['max_same_graphs']:.1e} |"
              for r in rows]
    met = all(r["max"] <= LIMIT and r["stable"] == 1.0 for r in rows if r["dtype"] == "float32")
    lines += ["", f"Eval mode; each test shape is compared with {args.rotations} uniform random rotations "
              f"of itself (seed {args.seed}); the relative change is `‖f(x R) − f(x)‖ / ‖f(x)‖` over the "
              "shape's logits (class scores, or every point's part scores), worst over rotations, then worst or "
              "median over shapes; predictions are classes, or every point's part among its category's. The last "
              "column evaluates the rotated shape with the neighbour sets of the unrotated one (every graph "
              "replayed), which leaves only the layers' own rounding. Target: "
              f"at most {LIMIT:g} in float32 and identical predictions on every shape: "
              f"**{'met' if met else 'NOT met'}**.", "",
              f"Machine: {machine()}.", "",
              f"`PYTHONPATH=src .venv/bin/python bench/pointcloud_invariance.py"
              f"{f' --threads {args.threads}' if args.threads else ''}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write_docs:
        write_section("results.md", "pointcloud-invariance", text)


if __name__ == "__main__":
    main()
