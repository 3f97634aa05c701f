"""How well can a NeRF rendered with one ray per pixel centre match the procedural object's anti-aliased frames?
Renders the exact scene both ways (``supersample=1`` against the frames' ``supersample=2``) for the first test
views and prints the PSNR of each: the ceiling of any pixel-centre field on these frames.

    PYTHONPATH=src .venv/bin/python bench/object_aliasing.py [--views 8] [--size 100]
"""

import argparse
import os
from dataclasses import replace

import torch

from priors3d.fields.scenes.object import ObjectConfig, object_cameras, render_object
from priors3d.metrics import psnr

parser = argparse.ArgumentParser()
parser.add_argument("--views", type=int, default=8)
parser.add_argument("--size", type=int, default=100)
args = parser.parse_args()
torch.set_num_threads(1)
cfg = ObjectConfig(width=args.size, height=args.size)
cameras = object_cameras(cfg)["test"][:args.views]
frames, centres = (render_object(replace(cfg, supersample=s), cameras) for s in (2, 1))
over_white = lambda r: r["rgb"] * r["alpha"][..., None] + (1 - r["alpha"][..., None])  # noqa: E731
scores = [psnr(c, f) for c, f in zip(over_white(centres), over_white(frames))]
print(f"pixel-centre ceiling at {args.size}x{args.size}: " + " ".join(f"{s:.2f}" for s in scores)
      + f" dB (mean {sum(scores) / len(scores):.2f}); load average {os.getloadavg()[0]:.1f}")
