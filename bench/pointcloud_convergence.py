"""How fast VN models learn against plain ones: test accuracy against epochs and training wall-clock.

Trains each model on the procedural classification set at the default sizes of ``priors3d pointcloud train``
(z/z, one seed; a finished run in ``--out`` is reused), evaluating every epoch, then plots test accuracy against
epochs and against training time (``docs/images/convergence_<task>.png``) and writes the
``pointcloud-convergence-<task>`` section of docs/results.md.

    PYTHONPATH=src .venv/bin/python bench/pointcloud_convergence.py --models vn_pointnet pointnet dgcnn --epochs 30
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import DOCS, machine, write_section  # noqa: E402

from priors3d.engine import set_threads  # noqa: E402
from priors3d.pointcloud.distributed import DistContext  # noqa: E402
from priors3d.pointcloud.train import PointCloudTrainConfig, train_pointcloud  # noqa: E402
from priors3d.runs import RunDir, save_figure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("cls", "seg"), default="cls")
    parser.add_argument("--models", nargs="+", default=["vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    args = parser.parse_args()
    set_threads(args.threads)
    metric = "test/oa" if args.task == "cls" else "test/instance_miou"
    curves, scales = {}, {}
    for model in args.models:
        out = args.out / args.task / f"{model}-z-{args.epochs}ep"
        if not (out / "metrics.json").is_file():
            config = PointCloudTrainConfig(model=model, task=args.task, rotation="z/z", epochs=args.epochs,
                                           seed=args.seed, out=out, resume=out.exists(), progress=False)
            train_pointcloud(config, DistContext())
        run = RunDir(out, create=False)
        final = json.loads(run.path("metrics.json").read_text())  # the last epoch's evaluation is stored there
        scales[model] = run.read_config()["config"]["scale"]
        rows = [r for r in run.read_metrics() if metric in r]
        curves[model] = rows + [{"step": final["step"], "train_time_s": final["train_time_s"],
                                 metric: final[metric.removeprefix("test/")]}]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for model, rows in curves.items():
        accuracy = [100 * r[metric] for r in rows]
        axes[0].plot([r["step"] for r in rows], accuracy, marker="o", markersize=2, label=model)
        axes[1].plot([r["train_time_s"] / 60 for r in rows], accuracy, marker="o", markersize=2, label=model)
    for ax, x in zip(axes, ("epoch", f"training minutes ({args.threads} thread)")):
        ax.set(xlabel=x, ylabel=f"{metric} (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    picture = save_figure(DOCS / "images" / f"convergence_{args.task}.png", fig)
    marks = [e for e in (5, 10, 20, args.epochs) if e <= args.epochs]
    table = ["| model | " + " | ".join(f"epoch {e}" for e in marks) + " | best | minutes |",
             "|---|" + "---|" * (len(marks) + 2)]
    for model, rows in curves.items():
        at = {r["step"]: 100 * r[metric] for r in rows}
        table.append(f"| {model} | " + " | ".join(f"{at.get(e, float('nan')):.1f}" for e in marks)
                     + f" | {max(at.values()):.1f} | {rows[-1]['train_time_s'] / 60:.1f} |")
    text = (f"## Convergence: VN against plain models ({args.task}, z/z, default sizes)\n\n"
            + "\n".join(table) + "\n\n"
            f"![test accuracy against epochs and training time](images/{picture.name})\n\n"
            f"{metric} on the test split after each epoch, one seed ({args.seed}); the default sizes and schedule of "
            f"`priors3d pointcloud train` (256 points, k = 10, widths / 2, batch 16, adam lr 0.01 with one warm-up "
            f"epoch and cosine decay over the {args.epochs} epochs, label smoothing 0.2); training scale augmentation "
            f"as each run recorded it: " + ", ".join(f"{m} {tuple(s)}" for m, s in scales.items())
            + f". Machine: {machine()}.\n\n"
            f"`PYTHONPATH=src .venv/bin/python bench/pointcloud_convergence.py --task {args.task} --models "
            f"{' '.join(args.models)} --epochs {args.epochs} --threads {args.threads}`\n")
    print(text)
    write_section("results.md", f"pointcloud-convergence-{args.task}", text)


if __name__ == "__main__":
    main()
