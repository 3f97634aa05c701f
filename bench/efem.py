"""EFEM vs its baselines on generated scenes: instance AP per layout and category, time per scene.

Trains, per category, the VN prior (upright only), a PointNet prior upright and one with SO(3) augmentation
(``priors3d efem train``; a finished prior run is reused), then segments the same scenes with each of them
and with DBSCAN, and writes the table, the priors' training times and errors and the pictures into the
``efem`` section of docs/results.md. Example (the numbers in docs/results.md):

    PYTHONPATH=src .venv/bin/python bench/efem.py --threads 1
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import DOCS, machine, write_section  # noqa: E402

from priors3d.efem import (EFEMTrainConfig, EMConfig, dbscan_instances, em_method, evaluate_layouts,  # noqa: E402
                           load_prior, mesh_picture, segmentation_picture, train_prior)
from priors3d.engine import set_threads  # noqa: E402
from priors3d.runs import save_json  # noqa: E402

PRIORS = {"EFEM (VN prior)": ("vn", "none"), "PointNet prior, upright": ("pointnet", "none"),
          "PointNet prior, SO(3) augmented": ("pointnet", "so3")}
LAYOUT_NAMES = {"z": "upright (z rotations)", "so3": "SO(3)", "piles": "piles (touching)"}


@dataclasses.dataclass(kw_only=True)
class BenchConfig:
    out: Path = Path("runs/efem-bench")
    categories: tuple[str, ...] = ("mug", "chair")
    layouts: tuple[str, ...] = ("z", "so3", "piles")
    scenes: int = 15
    """Scenes per layout and category (from 5 to 15 scenes, AP50s moved by up to 0.2)."""
    steps: int = 3000
    """Training steps of every prior."""
    seed: int = 0
    threads: int = 1
    em: EMConfig = dataclasses.field(default_factory=EMConfig)


def prior_run(config: BenchConfig, category: str, encoder: str, augment: str) -> Path:
    """Train the prior, or resume a finished run, which only evaluates it again (with today's metrics)."""
    out = config.out / f"{category}-{encoder}-{augment}"
    train_prior(EFEMTrainConfig(out=out, category=category, encoder=encoder, augment=augment, steps=config.steps,
                                seed=config.seed, resume=True, progress=False))
    return out


def main(config: BenchConfig) -> None:
    set_threads(config.threads)
    load_before, start = os.getloadavg()[0], time.perf_counter()
    images = DOCS / "images"
    images.mkdir(parents=True, exist_ok=True)
    results, priors = {}, {}
    for category in config.categories:
        loaded = {}
        for name, (encoder, augment) in PRIORS.items():
            run = prior_run(config, category, encoder, augment)
            loaded[name] = load_prior(run)[1]
            priors[f"{category} {name}"] = {**json.loads((run / "results.json").read_text()),
                                            "load_after": os.getloadavg()[0]}

        methods = {name: em_method(prior, config.em, config.seed) for name, prior in loaded.items()}
        methods["DBSCAN above the floor"] = lambda scene: dbscan_instances(scene.points)
        vn = "EFEM (VN prior)"

        def pictures(name, layout, index, scene, masks, category=category):
            if index == 0 and name in (vn, "PointNet prior, upright"):
                tag = "efem" if name == vn else "pointnet"
                segmentation_picture(images / f"efem_{category}_{layout}_{tag}.png", scene, masks, name)
                if name == vn:
                    mesh_picture(images / f"efem_{category}_{layout}_meshes.png", scene, loaded[vn],
                                 methods[vn].last.code)

        results[category] = evaluate_layouts(methods, category, config.layouts, config.scenes, config.seed,
                                             on_scene=pictures)
        shutil.copyfile(config.out / f"{category}-vn-none" / "reconstructions.png",
                        images / f"efem_{category}_reconstructions.png")
    wall, load_after = time.perf_counter() - start, os.getloadavg()[0]
    save_json(config.out / "results.json", {"scenes": results, "priors": priors})
    write_section("results.md", "efem", report(config, results, priors, wall, load_before, load_after))


def report(config: BenchConfig, results: dict, priors: dict, wall: float, load_before: float,
           load_after: float) -> str:
    args = " ".join(sys.argv[1:])
    header = "| category | method | " + " | ".join(f"AP50 {LAYOUT_NAMES[l]}" for l in config.layouts) + " | " + \
        " | ".join(f"AP / AP25 {l}" for l in config.layouts) + " | s/scene |"
    lines = [header, "|---|---|" + "---|" * (2 * len(config.layouts) + 1)]
    for category, methods in results.items():
        for name, layouts in methods.items():
            seconds = sum(r["seconds_per_scene"] for r in layouts.values()) / len(layouts)
            lines.append(f"| {category} | {name} | " + " | ".join(f"{layouts[l]['AP50']:.3f}" for l in config.layouts)
                         + " | " + " | ".join(f"{layouts[l]['AP']:.3f} / {layouts[l]['AP25']:.3f}"
                                              for l in config.layouts) + f" | {seconds:.1f} |")
    counts = ", ".join(f"{category} {layout}: {r['instances']}" for category, methods in results.items()
                       for layout, r in next(iter(methods.values())).items())
    prior_lines = ["| prior | training time | SDF L1 near surface (upright / rotated; zero field) | sign accuracy near "
                   "surface (upright / rotated) | \\|∇sdf\\| at the surface | up-axis error, median (share flipped), "
                   "upright / rotated |", "|---|---|---|---|---|---|"]
    for name, r in priors.items():
        prior_lines.append(f"| {name} | {r['train_time_s'] / 60:.1f} min | {r['sdf_l1_near']:.4f} / "
                           f"{r['sdf_l1_near_so3']:.4f}; {r['sdf_l1_near_zero']:.4f} | {r['sign_accuracy_near']:.3f} / "
                           f"{r['sign_accuracy_near_so3']:.3f} | {r['surface_gradient']:.2f} | "
                           f"{r['up_error_deg']:.0f}° ({r['up_flipped']:.2f}) / {r['up_error_deg_so3']:.0f}° "
                           f"({r['up_flipped_so3']:.2f}) |")
    pictures = "\n\n".join(
        f"{category}, {LAYOUT_NAMES[layout]}: truth | EFEM, then the reconstructed meshes in the scene\n\n"
        f"![{category} {layout}](images/efem_{category}_{layout}_efem.png)\n"
        f"![{category} {layout} meshes](images/efem_{category}_{layout}_meshes.png)"
        for category in results for layout in config.layouts)
    return f"""## EFEM: instances of a category found by E-M with a SIM(3)-equivariant shape prior

`PYTHONPATH=src .venv/bin/python bench/efem.py {args}`, on {machine()} (load average {load_before:.1f} at the
start, {load_after:.1f} at the end); the
whole benchmark took {wall / 60:.1f} min. {config.scenes} generated scenes per layout and category (2-6
instances at scale 0.5-2x, 1-3 boxes and one object of the other category, floor, 3 depth views of 96²
rays, noise 0.005); ground-truth instances with fewer than 30 visible points are not scored (counts:
{counts}). The same scenes for every method; E-M with {config.em.proposals} proposals,
{config.em.isolated_iterations} isolated + {config.em.joint_iterations} joint iterations. Every prior is
trained {config.steps} steps on upright canonical objects (the PointNet one also with SO(3) augmentation).
Instance AP: ScanNet protocol (AP over IoU 0.50:0.95, AP50, AP25; see docs/efem.md).

{chr(10).join(lines)}

Priors (held-out objects, 32 per category):

{chr(10).join(prior_lines)}

{pictures}

Reconstructions of held-out partial scans by the VN priors (upright, then rotated):
![mug](images/efem_mug_reconstructions.png)
![chair](images/efem_chair_reconstructions.png)
"""


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
