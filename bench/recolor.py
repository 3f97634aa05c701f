"""Recolouring from one click on a shaped and on an unshaped NeRF (JacobiNeRF edits).

Reuses the fit and the shaped field of ``bench/propagation.py``. The sparse evaluation click on one
class is pushed to a target colour by Gauss-Newton steps on ``theta_D`` (``priors3d field recolor``);
over the test views a pixel counts as recoloured when one of its channels moved by at least half as
much as the clicked pixel's largest channel change. Recall: recoloured fraction of the class's pixels;
leakage: recoloured fraction of every other non-void pixel. Writes the ``shaping-recolor`` section of
docs/results.md and before/after pictures to docs/images.

    PYTHONPATH=src .venv/bin/python bench/recolor.py --runs runs/bench-propagation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from report import machine, write_section  # noqa: E402

from priors3d.fields.scenes import RoomConfig, generate_room  # noqa: E402
from priors3d.fields.fit import load_field  # noqa: E402
from priors3d.viz import save_png  # noqa: E402
from priors3d.runs import save_json  # noqa: E402
from priors3d.shaping.edit import edit_picture, recolor  # noqa: E402
from priors3d.shaping.propagate import render_grey  # noqa: E402
from priors3d.shaping.shape import evaluation_clicks  # noqa: E402

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def recolour_class(model, setup, scene, before, class_name: str, color: tuple[float, float, float],
                   steps: int, keep: int) -> dict:
    """Recolour from the class's evaluation click; recall, leakage and the before/after renders.

    ``before``: the unedited model's renders of the test views, ``[V, H, W, 3]``.
    """
    label = scene.class_names.index(class_name)
    click = next(c for c in evaluation_clicks(scene) if c.label == label)
    edited = recolor(model, setup, scene.train, click, color, steps, keep=keep)
    clicked = scene.train.subset([click.view])
    index = (slice(None), click.y, click.x)
    moved = (render_grey(edited, setup, clicked, rgb=True)[index] - render_grey(model, setup, clicked, rgb=True)[index])
    threshold = 0.5 * float(moved.abs().max())
    after = render_grey(edited, setup, scene.test, rgb=True)
    changed = (after - before).abs().amax(-1) >= threshold
    target, valid = scene.test.semantic == label, scene.test.semantic >= 0
    return {"click": f"{click.view}/{click.x}/{click.y}", "threshold": threshold,
            "recall": float(changed[target].float().mean()), "leakage": float(changed[valid & ~target].float().mean()),
            "picture": edit_picture(before[::2], after[::2], changed[::2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-propagation"),
                        help="output folder of bench/propagation.py (its fit/ and shape/ runs)")
    parser.add_argument("--classes", nargs="+", default=["chair", "box", "picture"])
    parser.add_argument("--color", nargs=3, type=float, default=(0.9, 0.15, 0.1))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--keep", type=int, default=512,
                        help="non-resonating pixels of the click view each step holds still (0: plain minimum norm)")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    scene = generate_room(RoomConfig(seed=0))
    fields = {"shaped": load_field(args.runs / "shape"), "unshaped": load_field(args.runs / "fit")}
    befores = {name: render_grey(model, setup, scene.test, rgb=True) for name, (model, setup) in fields.items()}
    psnr = {name: float(-10 * torch.log10(((before - scene.test.images.float()) ** 2).mean()))
            for name, before in befores.items()}
    rows, records = [], {"psnr_before": psnr}
    for class_name in args.classes:
        for field_name, (model, setup) in fields.items():
            r = recolour_class(model, setup, scene, befores[field_name], class_name, tuple(args.color), args.steps,
                               args.keep)
            picture = r.pop("picture")
            save_png(args.runs / f"recolor_{class_name}_{field_name}.png", picture)
            if class_name == args.classes[0]:
                save_png(DOCS_IMAGES / f"recolor_{field_name}.png", picture)
            records[f"{class_name}/{field_name}"] = r
            rows.append(f"| {class_name} | {r['click']} | {field_name} | {r['recall']:.3f} | {r['leakage']:.3f} |")
            print(class_name, field_name, r, flush=True)
    save_json(args.runs / "recolor.json", records)
    text = "\n".join([
        "## Recolouring from one click (JacobiNeRF)", "",
        "| class | click (view/x/y) | field | recall | leakage |", "|---|---|---|---|---|", *rows, "",
        f"The evaluation click of each class (as in `shaping-propagation`) is pushed to RGB {tuple(args.color)} by "
        f"{args.steps} Gauss-Newton steps on theta_D (`priors3d field recolor`), each holding up to {args.keep} "
        f"pixels of the click view that do not resonate with the click still. Over the 6 test views a pixel "
        "counts as recoloured when one of its channels moved by at least half as much as the clicked pixel's "
        "largest channel change; recall = recoloured fraction of the class's pixels, leakage = recoloured "
        f"fraction of all other non-void pixels. Fields: `{args.runs}/shape` and `{args.runs}/fit` from "
        f"`bench/propagation.py`. Held-out PSNR of the renders before editing: shaped {psnr['shaped']:.2f} dB, "
        f"unshaped {psnr['unshaped']:.2f} dB. Machine: {machine()}.", "",
        f"{args.classes[0]}, shaped (before / after / recoloured pixels):", "",
        "![recolour shaped](images/recolor_shaped.png)", "",
        f"{args.classes[0]}, unshaped:", "", "![recolour unshaped](images/recolor_unshaped.png)", "",
        f"`PYTHONPATH=src .venv/bin/python bench/recolor.py --runs {args.runs}`",
    ]) + "\n"
    print(text)
    if not args.no_write_docs:
        write_section("results.md", "shaping-recolor", text)


if __name__ == "__main__":
    main()
