"""Label propagation on the default procedural room: shaped vs unshaped NeRF vs a Semantic-NeRF-style head.

Fits a NeRF (or reuses ``--fit-run``), shapes a copy with the JacobiNeRF objective, then labels
every test view from the same clicks (one per class in the training view showing the most
classes, or that whole view densely labelled) and writes a section of docs/results.md.

    PYTHONPATH=src .venv/bin/python bench/propagation.py --out runs/bench-propagation
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import machine, write_section  # noqa: E402
from room_field import add_fit_arguments, room_and_field  # noqa: E402

from priors3d.runs import save_json  # noqa: E402
from priors3d.shaping.baseline import fit_semantic_head, predict_semantic  # noqa: E402
from priors3d.metrics import label_map_metrics  # noqa: E402
from priors3d.shaping.shape import TUNED, ShapeConfig, evaluation_clicks, propagate_labels, shape_field  # noqa: E402
from priors3d.viz import label_pictures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_fit_arguments(parser, "runs/bench-propagation")
    parser.add_argument("--shape-iterations", type=int, default=150)
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    scene, unshaped, setup, fit_run = room_and_field(args)
    shaped = copy.deepcopy(unshaped)
    start = time.perf_counter()
    shape_field(shaped, setup, scene, ShapeConfig(run=fit_run, out=args.out / "shape", overwrite=True,
                                                  iterations=args.shape_iterations, **TUNED))
    shape_seconds = time.perf_counter() - start
    n_classes = len(scene.class_names)
    target = scene.test.semantic
    rows, records = [], {}
    for setting in ("sparse", "dense"):
        clicks = evaluation_clicks(scene, dense=setting == "dense")
        runs = [("shaped", shaped, "first-order"), ("shaped", shaped, "perturb"), ("shaped", shaped, "3d"),
                ("unshaped", unshaped, "first-order"), ("unshaped", unshaped, "perturb")]
        if setting == "dense":
            runs = runs[:1] + runs[3:4]
        for field_name, model, method in runs:
            result = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes, method, progress=True)
            m = label_map_metrics(result["labels"], target, n_classes)
            clicked = result["active"].nonzero().flatten().tolist()
            reachable = [c for c in m["classes"] if c in clicked]
            m["miou_clicked"] = float(torch.tensor([m["iou"][c] for c in reachable]).mean())
            key = f"{setting}/{field_name}/{method}"
            records[key] = {**{k: m[k] for k in ("miou", "miou_clicked", "accuracy", "class_accuracy")},
                            **{k: result[k] for k in ("seconds", "shared_seconds", "per_class_seconds")}}
            label_pictures(args.out / f"{setting}_{field_name}_{method}.png", scene, result["labels"], target)
            rows.append((setting, f"JacobiNeRF {field_name}, {method}", records[key]))
            print(key, records[key], flush=True)
        start = time.perf_counter()
        head = fit_semantic_head(unshaped, setup, scene.train, clicks, n_classes)
        labels = predict_semantic(unshaped, setup, head, scene.test, result["active"])
        m = label_map_metrics(labels, target, n_classes)
        m["miou_clicked"] = float(torch.tensor([m["iou"][c] for c in m["classes"] if c in clicked]).mean())
        records[f"{setting}/semantic-nerf"] = {**{k: m[k] for k in ("miou", "miou_clicked", "accuracy",
                                                                  "class_accuracy")},
                                               "seconds": time.perf_counter() - start}
        label_pictures(args.out / f"{setting}_semantic_nerf.png", scene, labels, target)
        rows.append((setting, "Semantic-NeRF-style head (clicks only)", records[f"{setting}/semantic-nerf"]))
    save_json(args.out / "results.json", records)
    n_present = len(label_map_metrics(target, target, n_classes)["classes"])
    sparse_clicks = evaluation_clicks(scene)
    table = ["| setting | method | mIoU | mIoU (clicked classes) | accuracy | class accuracy | time (s) |"
             " per class (s) |", "|---|---|---|---|---|---|---|---|"]
    for setting, name, r in rows:
        per_class = f"{r['per_class_seconds']:.3f}" if "per_class_seconds" in r else "-"
        table.append(f"| {setting} | {name} | {r['miou']:.3f} | {r['miou_clicked']:.3f} | {r['accuracy']:.3f} | "
                     f"{r['class_accuracy']:.3f} | {r['seconds']:.1f} | {per_class} |")
    text = ("## Label propagation on the procedural room (JacobiNeRF)\n\n" + "\n".join(table) + "\n\n"
            f"Room seed 0, 64x64 pixels, {len(scene.train)} train / {len(scene.test)} test views. Clicks: training "
            f"view {sparse_clicks[0].view}, one pixel per class visible there ({len(sparse_clicks)} of "
            f"{n_present} classes present in the test views; the others cannot be propagated and count as "
            f"misses: 'mIoU (clicked classes)' averages only the clicked ones). Dense: every pixel of that view. "
            f"Metrics over the test views, void ignored. NeRF: {args.fit_iterations if args.fit_run is None else 'reused'} "
            f"fit iterations; shaping: {args.shape_iterations} iterations with {TUNED} "
            f"({shape_seconds:.0f} s), positive pairs: same class in the semantic label maps, among pixels of "
            f"{TUNED['views_per_step']} training views per step. 'per class' is the time of the "
            f"per-class work (first order: the matrix product after the target Jacobians, computed once, are "
            f"counted in 'time'). Machine: {machine()}.\n\n"
            f"`PYTHONPATH=src .venv/bin/python bench/propagation.py --out {args.out}"
            f"{' --fit-run ' + str(args.fit_run) if args.fit_run else ''} --shape-iterations {args.shape_iterations}`\n")
    print(text)
    if not args.no_write_docs:
        write_section("results.md", "shaping-propagation", text)


if __name__ == "__main__":
    main()
