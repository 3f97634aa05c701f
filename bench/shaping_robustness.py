"""Robustness of JacobiNeRF shaping to corrupted masks: merged, split and noisy mask maps.

Shapes copies of one fitted NeRF with the pairs taken from damaged semantic maps (``corrupt_masks``:
merge / split / noise) and propagates the same sparse clicks (one per class, first order) to the
test views. The clicks and the evaluation use the clean labels; only the shaping sees the damage.
Writes the ``shaping-robustness`` section of docs/results.md.

    PYTHONPATH=src .venv/bin/python bench/shaping_robustness.py --fit-run runs/bench-propagation-1000/fit
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import machine, write_section  # noqa: E402
from room_field import add_fit_arguments, room_and_field  # noqa: E402

from priors3d.runs import save_json  # noqa: E402
from priors3d.metrics import label_map_metrics  # noqa: E402
from priors3d.shaping.shape import TUNED, ShapeConfig, evaluation_clicks, propagate_labels, shape_field  # noqa: E402
from priors3d.viz import label_pictures  # noqa: E402

ONE_VIEW = {"views_per_step": 1}  # corrupted ids mean nothing across views, so every damaged row pairs within a view
SETTINGS = {  # slug: (row title, ShapeConfig overrides)
    "clean": (f"clean masks, pairs across {TUNED['views_per_step']} views", {}),
    "one-view": ("clean masks, pairs within one view", ONE_VIEW),
    "uniform": ("clean masks, one view, uniform pixel draws", {**ONE_VIEW, "balanced": False}),
    "merged": ("merged (p = 0.3)", {**ONE_VIEW, "merge": 0.3}),
    "split": ("split (p = 0.3)", {**ONE_VIEW, "split": 0.3}),
    "noisy": ("noisy (20 % of pixels)", {**ONE_VIEW, "noise": 0.2}),
    "all": ("merged, split and noisy", {**ONE_VIEW, "merge": 0.3, "split": 0.3, "noise": 0.2}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_fit_arguments(parser, "runs/bench-robustness")
    parser.add_argument("--shape-iterations", type=int, default=500)
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    scene, unshaped, setup, fit_run = room_and_field(args)
    n_classes, clicks, target = len(scene.class_names), evaluation_clicks(scene), scene.test.semantic
    records, rows = {}, []
    for slug, (name, overrides) in {"unshaped": ("unshaped", None), **SETTINGS}.items():
        model, seconds = copy.deepcopy(unshaped), 0.0
        if overrides is not None:
            start = time.perf_counter()
            shape_field(model, setup, scene, ShapeConfig(run=fit_run, out=args.out / f"shape-{slug}", overwrite=True,
                                                         iterations=args.shape_iterations, **{**TUNED, **overrides}))
            seconds = time.perf_counter() - start
        labels = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes)["labels"]
        m = label_map_metrics(labels, target, n_classes)
        records[slug] = {"overrides": overrides, "shape_seconds": seconds,
                         **{k: m[k] for k in ("miou", "accuracy", "class_accuracy", "iou")}}
        label_pictures(args.out / f"labels_{slug}.png", scene, labels, target)
        rows.append(f"| {name} | {m['miou']:.3f} | {m['accuracy']:.3f} | {m['class_accuracy']:.3f} |")
        print(name, records[slug], flush=True)
    save_json(args.out / "results.json", records)
    text = ("## Shaping with corrupted masks (JacobiNeRF)\n\n"
            "| masks used for the positive pairs | mIoU | accuracy | class accuracy |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n"
            + "Per-class IoU, clean masks: " + ", ".join(f"{c} {iou:.2f}" for c, iou in
                                                       zip(scene.class_names, records["clean"]["iou"])) + ".\n\n"
            f"Same fitted NeRF (`{fit_run}`), same {len(clicks)} sparse clicks (one per class in training view "
            f"{clicks[0].view}), first-order propagation to the {len(scene.test)} test views, scored against the "
            f"clean semantic maps. Each shaped row: {args.shape_iterations} iterations with {TUNED}, pairs from the "
            "semantic maps damaged by `corrupt_masks` (Jacobian pixels drawn evenly across masks unless 'uniform'; "
            "damaged ids are per view, so those rows draw each step's pixels from one view; merge: each mask of "
            "a view joins another with probability p; split: each mask is cut in two by a random line with probability p; noise: that fraction of "
            f"pixels gets a random id of its view). Machine: {machine()}.\n\n"
            f"`PYTHONPATH=src .venv/bin/python bench/shaping_robustness.py --out {args.out}"
            f"{' --fit-run ' + str(args.fit_run) if args.fit_run else ''} --shape-iterations {args.shape_iterations}`\n")
    print(text)
    if not args.no_write_docs:
        write_section("results.md", "shaping-robustness", text)


if __name__ == "__main__":
    main()
