"""InfoGaussian edits on the default room: recall and leakage of one-click moves, shaped vs unshaped.

    .venv/bin/python bench/splat_edits.py [--out runs/bench-splat-edits] [--shape-iterations 600] [--labels consistent]

Fits Gaussians to the default procedural room (``splat fit`` defaults; reused when ``<out>/fit`` has a
finished run), shapes a decoder (which labels every Gaussian with the id of its label-free consistent segment by
default, or with the ORACLE instance maps), then for one click per instance (the pixel deepest inside it, in the
trajectory training view where it is largest) moves the clicked Gaussian up by ``--offset`` through the decoder
and counts which Gaussians follow by more than half of it. Scoring only: each Gaussian's true instance, voted from
the ground-truth instance maps. The unshaped decoder is the shaped one's initialisation (same seed). Writes the
``splat-edits`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from priors3d.fields.scenes import RoomConfig, generate_room  # noqa: E402
from priors3d.fields.scenes.room import build_room  # noqa: E402
from priors3d.fields.splat_fit import SplatFitConfig, fit_splats, load_splats  # noqa: E402
from priors3d.fields.rays import scene_aabb  # noqa: E402
from priors3d.shaping.clicks import object_clicks  # noqa: E402
from priors3d.shaping.infogs import (DecoderConfig, SplatShapeConfig, fill_from_neighbours,  # noqa: E402
                                     load_shaped, make_decoder, move_metrics, shape_splats, voted_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-splat-edits"))
    parser.add_argument("--shape-iterations", type=int, default=SplatShapeConfig.iterations)
    parser.add_argument("--offset", type=float, default=0.3)
    parser.add_argument("--labels", default="consistent", choices=("consistent", "instance"),
                        help="masks that label the Gaussians for shaping (instance: the ORACLE ground truth)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/results.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    scene = generate_room(RoomConfig())
    names = build_room(RoomConfig()).instance_names
    fit_cfg = SplatFitConfig(out=args.out / "fit")
    reused = (fit_cfg.out / "metrics.json").exists()
    fit = json.loads((fit_cfg.out / "metrics.json").read_text()) if reused else fit_splats(scene, fit_cfg)
    field, setup = load_splats(fit_cfg.out)
    field.requires_grad_(False)

    shape_cfg = SplatShapeConfig(run=fit_cfg.out, out=args.out / "shape", iterations=args.shape_iterations,
                                 overwrite=True, labels=args.labels, progress=False)
    shaped = shape_splats(field, setup, scene, shape_cfg)
    shaped_run = load_shaped(shape_cfg.out)
    decoder, ids, masks = shaped_run.decoder, shaped_run.ids, shaped_run.masks
    truth = fill_from_neighbours(field.means, voted_labels(field, scene.train, scene.train.instance, setup))
    trajectory = [v for v, name in enumerate(scene.train.names) if int(name.split("_")[-1]) < RoomConfig().n_views]
    clicks = object_clicks(scene.train.instance, trajectory)
    unshaped_decoder = make_decoder(field, scene_aabb(scene), DecoderConfig(), shape_cfg.seed)
    results = {name: move_metrics(field, setup, d, ids, scene.train, masks, clicks, args.offset, truth)
               for name, d in (("unshaped", unshaped_decoder), ("shaped", decoder))}
    for name, r in results.items():
        print(f"{name}: recall {r['recall']:.3f}, leakage {r['leakage']:.3f}, drift {r['drift']:.3f}")
    print(f"PSNR {shaped['psnr_before']:.2f} -> {shaped['psnr_after']:.2f} dB; shaping {shaped['train_time_s']:.0f} s")

    counts = torch.bincount(truth, minlength=len(names)).tolist()
    per = {name: r["per_object"] for name, r in results.items()}
    rows = "\n".join(
        f"| {names[k]} | {counts[k]} | {per['unshaped'][k]['recall']:.2f} | {per['unshaped'][k]['leakage']:.3f} | "
        f"{per['shaped'][k]['recall']:.2f} | {per['shaped'][k]['leakage']:.3f} | {per['shaped'][k]['drift']:.2f} |"
        for k in sorted(per["shaped"]))
    met = (results["shaped"]["recall"] >= 0.90 and results["shaped"]["leakage"] <= 0.05
           and shaped["psnr_before"] - shaped["psnr_after"] <= 0.2)
    astray = [names[k] for k, m in per["shaped"].items() if m["clicked_gaussian_label"] != k]
    leakiest = ", ".join(f"{names[k]} ({per['shaped'][k]['leakage']:.3f}, {counts[k]} Gaussians)"
                         for k in sorted(per["shaped"], key=lambda k: -per["shaped"][k]["leakage"])[:3])
    table = "\n".join(f"| {name} | {r['recall']:.3f} | {r['leakage']:.3f} | {r['drift']:.2f} | {psnr:.2f} |"
                      for (name, r), psnr in zip(results.items(), (shaped["psnr_before"], shaped["psnr_after"])))
    fit_line = ("reused from an earlier run of this script, " if reused else "") + (
        f"{fit['gaussians']} Gaussians, {fit['step']} steps in {fit['train_time_s']:.0f} s, "
        f"test PSNR {fit['psnr']:.2f} dB")
    options = "".join(f" --{name.replace('_', '-')} {value}" for name, value, default in
                      (("shape_iterations", args.shape_iterations, SplatShapeConfig.iterations),
                       ("offset", args.offset, 0.3), ("labels", args.labels, "consistent")) if value != default)
    source = ("label-free consistent segments (`shaping.sources`: the training views fused into voxels with their "
              "depth maps and cut into 3D segments by graph-based segmentation of normals and colours; no label map)"
              if args.labels == "consistent" else "the ORACLE ground-truth instance maps")
    markdown = f"""## InfoGaussian: one-click moves on the procedural room ({args.labels} masks)

`.venv/bin/python bench/splat_edits.py{options}` (fit: `priors3d splat fit` defaults, {fit_line};
shaping: `priors3d splat shape` defaults ({shape_cfg.iterations} iterations, temperature {shape_cfg.temperature}),
{shaped['train_time_s']:.0f} s). Machine: {machine()}.

Shaping masks: {source}; {int(ids.max()) + 1} ids over the Gaussians.
For each of the {len(clicks)} instances, one click: the pixel deepest inside it, in the trajectory training
view where it is largest (not the four wide overview cameras). The click selects, among the Gaussians
labelled with the clicked pixel's mask id, the one with the largest blending weight at that pixel; a
minimum-norm step of the decoder's last layer moves that Gaussian by {args.offset} m upwards. Recall:
fraction of the instance's Gaussians that move more than {args.offset / 2} m; leakage: the same among all
other Gaussians; drift: the other Gaussians' mean displacement, as a fraction of {args.offset} m (what the
leakage threshold does not see). Every Gaussian has a mask id for shaping and a true instance for scoring,
each the label of the pixels it contributes most to (blending weights summed per label over the training
views; {shaped['voted_fraction']:.1%} of the Gaussians reach a masked pixel), else the majority label of its
{shape_cfg.neighbours} nearest labelled Gaussians in 3D. Unshaped = the same decoder at its initialisation
(same seed).

| | recall | leakage | drift | held-out PSNR (dB) |
|---|---|---|---|---|
{table}

Targets (recall >= 0.90, leakage <= 0.05, PSNR within 0.2 dB): {"met" if met else "**not met**"}.
Clicks whose Gaussian belongs to another instance (so the edit moves that instance):
{", ".join(astray) or "none"}. Most leakage: {leakiest}.

<details><summary>per instance (its Gaussians; unshaped recall, leakage; shaped recall, leakage, drift)</summary>

| instance | Gaussians | unshaped recall | unshaped leakage | shaped recall | shaped leakage | shaped drift |
|---|---|---|---|---|---|---|
{rows}

</details>
"""
    (args.out / "results.json").write_text(json.dumps({"fit": fit, "shape": shaped, **results}, indent=2) + "\n")
    if not args.no_write:
        section = "splat-edits" if args.labels == "consistent" else "splat-edits-oracle"
        print(f"wrote {write_section('results.md', section, markdown)}")


if __name__ == "__main__":
    main()
