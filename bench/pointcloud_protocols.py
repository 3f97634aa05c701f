"""The rotation-protocol tables of the Vector Neurons paper on the built-in procedural shapes.

Runs ``priors3d pointcloud protocols`` (resuming: finished runs in ``--out`` are only re-evaluated),
then writes the table, each training's wall time and the checks of the point-cloud issue to the
``pointcloud-protocols-<task>`` section of docs/results.md.

    PYTHONPATH=src .venv/bin/python bench/pointcloud_protocols.py --task cls --threads 1
    PYTHONPATH=src .venv/bin/python bench/pointcloud_protocols.py --task seg --models vn_dgcnn dgcnn --threads 1
    PYTHONPATH=src .venv/bin/python bench/pointcloud_protocols.py --task cls --models vn_pointnet --seeds 0 1 2

With ``--seeds`` every run is repeated per seed and the table gives mean ± standard deviation: the
statements about VN models compare protocols that an invariant model trains on identically (up to
rounding), so their differences are seed noise, and one seed cannot show a 2-point agreement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import machine, write_section  # noqa: E402

from priors3d.commands.pointcloud import ProtocolsConfig, protocols  # noqa: E402
from priors3d.pointcloud.train import PointCloudTrainConfig, protocol_run_name, resolve  # noqa: E402
from priors3d.runs import RunDir  # noqa: E402

PAIRS = ("z/z", "z/so3", "so3/so3")


def training_minutes(run: Path) -> float:
    """Training time of a run's epochs (evaluation excluded), from its metrics.jsonl."""
    return RunDir(run).read_metrics()[-1]["train_time_s"] / 60


def checks(per_seed: dict[str, dict[str, list[float]]]) -> list[str]:
    """The issue's statements, each with its numbers (means over seeds, and each seed's difference where
    there are several): VN models agree across protocols, plain ones drop."""
    lines = []
    for model, row in per_seed.items():
        zz, zs, ss = (100 * statistics.mean(row[p]) for p in PAIRS)
        each = ("" if len(row["z/z"]) == 1 else " (per seed: " + ", ".join(
            f"{100 * (b - a):+.1f}" for a, b in zip(row["z/z"], row["so3/so3"])) + ")")
        if model.startswith("vn_"):
            ok = abs(zs - zz) <= 2 and abs(ss - zz) <= 2
            lines.append(f"- {model}: z/SO(3) − z/z = {zs - zz:+.1f}, SO(3)/SO(3) − z/z = {ss - zz:+.1f} points"
                         f"{each} ({'within' if ok else 'NOT within'} 2 points).")
        else:
            lines.append(f"- {model}: z/SO(3) − z/z = {zs - zz:+.1f} points (the plain model loses "
                         f"{zz - zs:.1f} points on rotations it never saw); SO(3)/SO(3) − z/z = "
                         f"{ss - zz:+.1f}{each}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("cls", "seg"), default="cls")
    parser.add_argument("--models", nargs="+", default=["vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="one run per seed; mean ± std")
    parser.add_argument("--out", type=Path, default=None, help="default runs/pointcloud/protocols-<task>")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    seeds = f"-seeds{'-'.join(map(str, args.seeds))}" if args.seeds else ""
    out = args.out or Path(f"runs/pointcloud/protocols-{args.task}{seeds}")
    train = PointCloudTrainConfig(task=args.task, threads=args.threads, resume=True, progress=False)
    protocols(ProtocolsConfig(models=tuple(args.models), protocols=PAIRS, train=train, seeds=tuple(args.seeds),
                              out=out))
    table = (out / "protocols.md").read_text().strip()
    per_seed = json.loads((out / "protocols.json").read_text())["per_seed"]
    names = [protocol_run_name(model, rot, seed) for model in args.models for seed in (args.seeds or [None])
             for rot in ("z", "so3")]
    times = [f"{name}: {training_minutes(out / name):.1f} min" for name in names]
    commits = sorted({(json.loads((out / name / "config.json").read_text())["git_commit"] or "unknown")[:7]
                      for name in names})
    what = ("overall accuracy on the test shapes" if args.task == "cls" else
            "instance-average part mIoU (ShapeNetPart convention; the category is given)")
    d = resolve(PointCloudTrainConfig(task=args.task))
    text = "\n".join([
        f"## Rotation protocols, {'classification' if args.task == 'cls' else 'part segmentation'}", "",
        table, "",
        f"TRAIN/TEST rotations, {what}. Default sizes of `priors3d pointcloud train`: procedural shapes "
        f"(15 categories, {d.per_class} train / {d.test_per_class} test shapes per category), {d.n_points} points, "
        f"k = {d.k}, widths / {d.width_divisor}, batch {d.batch_size}, {d.epochs} epochs of {d.optimizer} "
        f"(lr {d.lr:g}, one warm-up epoch, cosine decay), label smoothing {d.label_smoothing}; VN models project "
        f"on one learned frame per {d.frame}. Each model is trained "
        "once under z and once under SO(3); z/SO(3) evaluates the z-trained weights on test shapes rotated by "
        "one fixed random rotation each (the same for every model); "
        + (f"seeds {', '.join(map(str, args.seeds))}, mean ± standard deviation over seeds." if args.seeds
           else f"seed {d.seed}."), "",
        *checks(per_seed), "",
        "Training time per run (the epochs, evaluation excluded), as each run recorded it: " + "; ".join(times)
        + ". These times are pessimistic when other jobs shared the two cores during training (the load "
        "average below is the one when this text was written); `bench/vn_dgcnn_step.py` times one step "
        f"on a quiet machine. Runs trained at commit {', '.join(commits)} (their config.json records it).", "",
        f"Machine: {machine()}{f'; {args.threads} torch thread(s) per run' if args.threads else ''}.", "",
        f"`PYTHONPATH=src .venv/bin/python bench/pointcloud_protocols.py --task {args.task} --models "
        f"{' '.join(args.models)}{f' --threads {args.threads}' if args.threads else ''}"
        f"{' --seeds ' + ' '.join(map(str, args.seeds)) if args.seeds else ''}` (the same runs as "
        f"`priors3d pointcloud protocols --train.task {args.task} --out {out}"
        f"{' --seeds ' + ' '.join(map(str, args.seeds)) if args.seeds else ''}`)",
    ]) + "\n"
    print(text)
    if not args.no_write_docs:
        write_section("results.md", f"pointcloud-protocols-{args.task}{seeds}", text)


if __name__ == "__main__":
    main()
