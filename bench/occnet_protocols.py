"""VN-OccNet vs OccNet under the rotation protocols aligned/aligned, aligned/SO3 and SO3/SO3.

Trains each model aligned and under SO(3) rotations on the procedural shapes (``priors3d occupancy
protocols``), then writes the IoU / Chamfer-L1 table, training times and reconstruction pictures
into the ``occnet`` section of docs/results.md. Options are those of ProtocolsConfig, e.g.

    PYTHONPATH=src .venv/bin/python bench/occnet_protocols.py --train.epochs 2 --train.threads 1
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import DOCS, machine, write_section  # noqa: E402

from priors3d.commands.occupancy import ProtocolsConfig, protocols  # noqa: E402

NAMES = {"vn": "VN-OccNet", "plain": "OccNet"}
ROWS = (("none/none", "aligned/aligned"), ("none/so3", "aligned/SO3"), ("so3/so3", "SO3/SO3"))


def table(results: dict, models: tuple[str, ...]) -> str:
    lines = ["| model | parameters | " + " | ".join(f"IoU {label}" for _, label in ROWS) + " | "
             + " | ".join(f"Chamfer-L1 {label}" for _, label in ROWS) + " | training time (aligned / SO3) |",
             "|---|---|" + "---|" * (2 * len(ROWS) + 1)]
    for model in models:
        rows = [results[f"{model} {key}"] for key, _ in ROWS]
        minutes = f"{rows[0]['train_time_s'] / 60:.1f} / {rows[2]['train_time_s'] / 60:.1f} min"
        lines.append(f"| {NAMES[model]} | {rows[0]['parameters']:,} | "
                     + " | ".join(f"{r['iou']:.3f}" for r in rows) + " | "
                     + " | ".join(f"{r['chamfer_l1']:.4f}" for r in rows) + f" | {minutes} |")
    return "\n".join(lines)


def main(config: ProtocolsConfig) -> None:
    load_before, start = os.getloadavg()[0], time.perf_counter()
    results = protocols(config)
    wall, load_after = time.perf_counter() - start, os.getloadavg()[0]
    images = DOCS / "images"
    pictures = []
    for model, train, test in (("vn", "none", "none"), ("vn", "none", "so3"), ("plain", "none", "so3")):
        source = config.out / f"{model}_{train}" / "meshes" / f"{test}.png"
        if source.is_file():
            target = images / f"occnet_{model}_{train}_{test}.png"
            images.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            label = {"none": "aligned", "so3": "SO3"}
            pictures.append(f"{NAMES[model]}, {label[train]}/{label[test]}:\n\n![{model} {train}/{test}](images/{target.name})")
    args = " ".join(sys.argv[1:])
    markdown = f"""## Occupancy networks: VN-OccNet vs OccNet under rotations

`PYTHONPATH=src .venv/bin/python bench/occnet_protocols.py {args}` (the same as
`priors3d occupancy protocols {args}`), on {machine()}
(load average {load_before:.1f} at the start, {load_after:.1f} at the end); the whole benchmark took
{wall / 60:.1f} min. Procedural shapes, {config.train.per_class} training and {config.train.test_per_class} test
shapes per category (15 categories), {config.train.epochs} epochs of batch {config.train.batch_size}; inputs are
300 surface points with noise 0.005; IoU at probability threshold 0.2 on 8192 uniform points per
test shape; Chamfer-L1 between 2048 samples of the marching-cubes mesh ({config.train.mesh_resolution}³ grid)
and of the true surface, on {config.train.n_meshes} test shapes (one per category), in units of the
shapes' radius (1). Training rotations / test rotations; rotations turn the input cloud and the
query points together; the test rotations are the same for both models.

{table(results, config.models)}

These are short CPU trainings, far from converged: compare the columns, not the absolute values
with the paper's (ShapeNet, GPU; VN-OccNet 69.3 / 69.3 / 68.8, OccNet 71.4 / 30.9 / 58.2 IoU).

{(chr(10) * 2).join(pictures)}
"""
    print(markdown)
    write_section("results.md", "occnet", markdown)


if __name__ == "__main__":
    main(tyro.cli(ProtocolsConfig))
