"""One-click label propagation on the default procedural room: label-free shaping against its baselines and oracles.

Fits a NeRF (or reuses ``--fit-run``), then, from the same clicks (one per class, in the training view showing the
most classes), labels every test view with: the unshaped field's Jacobians; fields shaped with each label-free pair
source (the 3D segments' ``descriptors``, lifted with the views' depth maps or with the field's rendered depth; the
``consistent`` 3D segments; per-view ``segments``); the lookup baselines without Jacobians (segment and descriptor
lookup); a Semantic-NeRF-style head trained on the clicks; and ORACLE rows shaped with the ground-truth class maps.
Every shaped row reports the held-out PSNR before and after shaping. Writes the ``shaping-propagation`` section of
docs/results.md; the label-free shaped run is kept in ``<out>/shape`` (``bench/recolor.py`` reads it).

    PYTHONPATH=src .venv/bin/python bench/propagation.py --out runs/bench-propagation
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

from priors3d.metrics import label_map_metrics  # noqa: E402
from priors3d.runs import save_json  # noqa: E402
from priors3d.shaping.baseline import fit_semantic_head, predict_semantic  # noqa: E402
from priors3d.shaping.shape import (TUNED, ShapeConfig, evaluation_clicks, held_out_psnr,  # noqa: E402
                                    propagate_labels, shape_field)
from priors3d.shaping.sources import (SegmentConfig, descriptor_lookup, label_free_source,  # noqa: E402
                                      segment_lookup, surface)
from priors3d.viz import label_pictures  # noqa: E402

WHOLE = {"head": False, "lr": 5e-3, "batch_rays": 512}
"""Whole-field shaping as before issue 16 (JacobiNeRF's way: every parameter moves, with the photometric term)."""
SHAPED = {  # slug: (row title, ShapeConfig overrides, iterations option)
    "shape": ("label-free descriptors of the 3D segments (default)", {}, "shape_iterations"),
    "rendered-depth": ("label-free descriptors, lifted with the field's rendered depth",
                       {"segments": SegmentConfig(measured_depth=False)}, "shape_iterations"),
    "consistent": ("label-free 3D segments (same segment = positive)", {"pairs": "consistent"}, "shape_iterations"),
    "segments": ("label-free per-view segments (pairs within one view)", {"pairs": "segments", "views_per_step": 1},
                 "shape_iterations"),
    "whole": ("label-free descriptors, whole field + photometric term", WHOLE, "whole_iterations"),
    "oracle": ("ORACLE: ground-truth class maps", {"pairs": "semantic"}, "shape_iterations"),
    "oracle-whole": ("ORACLE: ground-truth class maps, whole field + photometric term (the old headline setting)",
                     {"pairs": "semantic", **WHOLE}, "whole_iterations"),
}


def scores(labels: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    m = label_map_metrics(labels, target, n_classes)
    return {k: m[k] for k in ("miou", "accuracy", "class_accuracy", "iou")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_fit_arguments(parser, "runs/bench-propagation")
    parser.add_argument("--shape-iterations", type=int, default=3000)
    parser.add_argument("--whole-iterations", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=None, help="shaped rows to run (slugs of SHAPED)")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scene, unshaped, setup, fit_run = room_and_field(args)
    n_classes, target, clicks = len(scene.class_names), scene.test.semantic, evaluation_clicks(scene)
    psnr = held_out_psnr(unshaped, setup, scene)
    records, rows = {}, []

    def row(slug: str, title: str, labels: torch.Tensor, seconds: float, after: float | None) -> None:
        records[slug] = {**scores(labels, target, n_classes), "seconds": seconds, "psnr_before": psnr,
                         "psnr_after": psnr if after is None else after}
        label_pictures(args.out / f"labels_{slug}.png", scene, labels, target)
        r = records[slug]
        rows.append(f"| {title} | {r['miou']:.3f} | {r['accuracy']:.3f} | {r['class_accuracy']:.3f} | "
                    f"{r['psnr_before']:.2f} -> {r['psnr_after']:.2f} | {seconds:.0f} |")
        print(slug, {k: v for k, v in r.items() if k != "iou"}, f"load {os.getloadavg()[0]:.1f}", flush=True)

    start = time.perf_counter()
    row("unshaped", "unshaped field (its RGB head's Jacobians)",
        propagate_labels(unshaped, setup, scene.train, scene.test, clicks, n_classes)["labels"],
        time.perf_counter() - start, None)
    start = time.perf_counter()
    config = SegmentConfig()
    source = label_free_source(scene.train, surface(unshaped, setup, scene.train, config.measured_depth),
                               setup.aabb, config)
    test_surface = surface(unshaped, setup, scene.test, config.measured_depth)
    lookup = segment_lookup(source, test_surface, clicks)
    row("lookup", "segment lookup: the click of the pixel's 3D segment (no Jacobians)", lookup,
        time.perf_counter() - start, None)
    start = time.perf_counter()
    row("descriptor-lookup", "descriptor lookup: the click whose segment's descriptor is nearest (no Jacobians)",
        descriptor_lookup(source, test_surface, clicks), time.perf_counter() - start, None)
    start = time.perf_counter()
    head = fit_semantic_head(unshaped, setup, scene.train, clicks, n_classes)
    active = torch.bincount(torch.tensor([c.label for c in clicks]), minlength=n_classes) > 0
    row("semantic-nerf", "Semantic-NeRF-style head trained on the clicks",
        predict_semantic(unshaped, setup, head, scene.test, active), time.perf_counter() - start, None)
    for slug, (title, overrides, iterations) in SHAPED.items():
        if args.only is not None and slug not in args.only:
            continue
        model, steps = copy.deepcopy(unshaped), getattr(args, iterations)
        start = time.perf_counter()
        summary = shape_field(model, setup, scene, ShapeConfig(run=fit_run, out=args.out / slug, overwrite=True,
                                                               iterations=steps, progress=False,
                                                               **{**TUNED, **overrides}))
        labels = propagate_labels(model, setup, scene.train, scene.test, clicks, n_classes)["labels"]
        row(slug, f"{title}, {steps} it.", labels, time.perf_counter() - start, summary["psnr_after"])
    save_json(args.out / "results.json", records)
    consistent = source.consistent
    text = ("## One-click label propagation on the procedural room (JacobiNeRF, label-free)\n\n"
            "| pairs / method | mIoU | accuracy | class accuracy | held-out PSNR before -> after (dB) | time (s) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            + ("Per-class IoU, label-free default: " + ", ".join(
                f"{c} {iou:.2f}" for c, iou in zip(scene.class_names, records["shape"]["iou"])) + ".\n\n"
               if "shape" in records else "")
            + f"Room seed 0, 64x64 pixels, {len(scene.train)} train / {len(scene.test)} test views. Clicks: training "
            f"view {clicks[0].view}, one pixel per class ({len(clicks)} clicks, the pixel deepest inside each class "
            f"region), first-order propagation (argmax of |cos| with the clicked classes' mean Jacobians) to every "
            f"test pixel, scored against the test views' class maps (void ignored; the lookup leaves "
            f"{float((lookup < 0).float().mean()):.0%} of the test pixels unlabelled, which count as misses). "
            f"NeRF: {args.fit_iterations if args.fit_run is None else 'reused'} fit iterations. Shaping: {TUNED}, "
            f"a separate shaping head ({ShapeConfig.head_features} outputs) on the frozen field unless 'whole field'; "
            f"whole-field rows: {WHOLE}. Label-free sources (`shaping.sources`, no label map read): the training "
            f"views fused into a {config.voxels}-voxel grid with their depth maps (the room renders them, as an "
            f"RGB-D sensor would) unless 'rendered depth', cut into {int(consistent.max()) + 1} 3D segments by "
            f"graph-based segmentation of the voxels' normals and colours (scale {config.surface_scale}, colour "
            f"weight {config.colour_weight}, min size {config.surface_min_size} voxels); 'descriptors' pairs pixels "
            f"by the cosine of their segments' descriptors (facing, heights, extent, size, colour, weighted "
            f"{config.descriptor_weights}) above JacobiNeRF's adaptive threshold, drawing pixels evenly across "
            f"the segments; per-view segments: Felzenszwalb on each image (scale {config.scale}, min size "
            f"{config.min_size}). 'time' = shaping + propagation (or the baseline's work). "
            f"Machine: {machine()}.\n\n"
            f"`PYTHONPATH=src .venv/bin/python bench/propagation.py --out {args.out}"
            f"{' --fit-run ' + str(args.fit_run) if args.fit_run else ''} --shape-iterations {args.shape_iterations}"
            f" --whole-iterations {args.whole_iterations}`\n")
    print(text)
    if not args.no_write_docs and args.only is None:
        write_section("results.md", "shaping-propagation", text)


if __name__ == "__main__":
    main()
