"""Can a part-segmentation model fit 16 fixed training shapes? A capacity check, not a benchmark of accuracy.

Trains each model for ``--steps`` Adam steps (lr 1e-3, no label smoothing, no augmentation) on one batch
of 16 procedural training shapes of different categories, at the default sizes, and prints the point
accuracy of that batch (train mode) every 30 steps.

    PYTHONPATH=src .venv/bin/python bench/seg_overfit.py --models vn_dgcnn dgcnn --frames point shape
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from priors3d.pointcloud.models import build_model, is_equivariant  # noqa: E402
from priors3d.pointcloud.train import TrainConfig, forward, load_split, resolve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vn_dgcnn", "dgcnn"])
    parser.add_argument("--frames", nargs="+", default=["shape"], choices=["point", "shape"],
                        help="invariant-layer frames to try for the VN models")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve(TrainConfig(task="seg"))
    data = load_split(config, "train")
    stride = len(data) // 16
    batch = torch.utils.data.default_collate([data[i] for i in range(0, 16 * stride, stride)])
    runs = [(name, frame) for name in args.models for frame in (args.frames if is_equivariant(name) else [None])]
    for name, frame in runs:
        label = name if frame is None else f"{name} ({frame} frame)"
        torch.manual_seed(0)
        model = build_model(name, "seg", data.num_classes, data.num_parts, k=config.k,
                            width_divisor=config.width_divisor, frame=frame)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(1, args.steps + 1):
            logits = forward(model, batch, "seg", data.num_classes)
            loss = F.cross_entropy(logits.flatten(0, 1), batch["parts"].flatten(), ignore_index=-1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 30 == 0:
                accuracy = float((logits.argmax(-1) == batch["parts"]).float().mean())
                print(f"{label} step {step}: loss {loss.item():.3f}, point accuracy {accuracy:.3f}", flush=True)


if __name__ == "__main__":
    main()
