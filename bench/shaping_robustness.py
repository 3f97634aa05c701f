"""Robustness of label-free JacobiNeRF shaping to corrupted segments: merged, split and noisy masks.

Shapes copies of one fitted NeRF with the pairs taken from the label-free source (the default ``pairs=descriptors``:
the descriptors of the pixels' 3D segments) after the segments are damaged by ``corrupt_masks`` (merge: a wrong
association, the pixels take another segment's descriptor; split: an unmatched part, which loses its descriptor;
noise: random ids) and propagates the same sparse clicks (one per class, first order) to the test views. The clicks
and the evaluation use the ground-truth class maps; the shaping never sees them. Writes the ``shaping-robustness``
section of docs/results.md.

    PYTHONPATH=src .venv/bin/python bench/shaping_robustness.py --fit-run runs/bench-propagation/fit
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import machine, write_section  # noqa: E402
from room_field import add_fit_arguments, room_and_field  # noqa: E402

from priors3d.runs import save_json  # noqa: E402
from priors3d.metrics import label_map_metrics  # noqa: E402
from priors3d.shaping.shape import TUNED, ShapeConfig, evaluation_clicks, propagate_labels, shape_field  # noqa: E402
from priors3d.viz import label_pictures  # noqa: E402

SETTINGS = {  # slug: (row title, ShapeConfig overrides)
    "clean": ("label-free 3D segments as computed", {}),
    "merged": ("merged (p = 0.3)", {"merge": 0.3}),
    "split": ("split (p = 0.3)", {"split": 0.3}),
    "noisy": ("noisy (20 % of pixels)", {"noise": 0.2}),
    "all": ("merged, split and noisy", {"merge": 0.3, "split": 0.3, "noise": 0.2}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_fit_arguments(parser, "runs/bench-robustness")
    parser.add_argument("--shape-iterations", type=int, default=3000)
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scene, unshaped, setup, fit_run = room_and_field(args)
    n_classes, clicks, target = len(scene.class_names), evaluation_clicks(scene), scene.test.semantic
    records, rows = {}, []
    for slug, (name, overrides) in {"unshaped": ("unshaped", None), **SETTINGS}.items():
        model, seconds = copy.deepcopy(unshaped), 0.0
        if overrides is not None:
            start = time.perf_counter()
            shape_field(model, setup, scene, ShapeConfig(run=fit_run, out=args.out / f"shape-{slug}", overwrite=True,
                                                         iterations=args.shape_iterations, progress=False,
                                                         **{**TUNED, **overrides}))
            seconds = time.perf_counter() - start
        labels = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes)["labels"]
        m = label_map_metrics(labels, target, n_classes)
        records[slug] = {"overrides": overrides, "shape_seconds": seconds,
                         **{k: m[k] for k in ("miou", "accuracy", "class_accuracy", "iou")}}
        label_pictures(args.out / f"labels_{slug}.png", scene, labels, target)
        rows.append(f"| {name} | {m['miou']:.3f} | {m['accuracy']:.3f} | {m['class_accuracy']:.3f} |")
        print(name, records[slug], f"load {os.getloadavg()[0]:.1f}", flush=True)
    save_json(args.out / "results.json", records)
    text = ("## Shaping with corrupted label-free segments (JacobiNeRF)\n\n"
            "| segments used for the positive pairs | mIoU | accuracy | class accuracy |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n"
            f"Same fitted NeRF (`{fit_run}`), same {len(clicks)} sparse clicks (one per class in training view "
            f"{clicks[0].view}), first-order propagation to the {len(scene.test)} test views, scored against the "
            f"ground-truth class maps. Each shaped row: {args.shape_iterations} iterations with {TUNED}, the shaping "
            "head on the frozen field (held-out PSNR unchanged), pairs from the default label-free source "
            "(`pairs=descriptors`: each pixel carries the descriptor of its 3D segment) with the segment ids damaged "
            "per view by `corrupt_masks` before the descriptors are looked up (merge: each segment of a view takes "
            "the id of another segment of that view with probability p, a wrong association; split: each segment is "
            "cut in two by a random line with probability p, the new part getting an id of its own and no "
            "descriptor, so no positives; noise: that fraction of pixels gets a random id present in its view). "
            "Machine: "
            f"{machine()}.\n\n"
            f"`PYTHONPATH=src .venv/bin/python bench/shaping_robustness.py --out {args.out}"
            f"{' --fit-run ' + str(args.fit_run) if args.fit_run else ''}"
            f" --shape-iterations {args.shape_iterations}`\n")
    print(text)
    if not args.no_write_docs:
        write_section("results.md", "shaping-robustness", text)


if __name__ == "__main__":
    main()
