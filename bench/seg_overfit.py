"""Can a part-segmentation model fit 16 fixed training shapes? A capacity check, not a benchmark of accuracy.

First prints, for the untrained model on that batch, what its head receives: how much the per-shape
global features vary across shapes against how much the per-point features vary within a shape (the
inputs of the head's two batch norms), and for VN models how coherent the learned frames of a shape are
(norm of the mean of their unit vectors over the points: 1 when all points share one frame). Then trains
each model for ``--steps`` Adam steps (lr 1e-3, no label smoothing, no augmentation) on the batch of 16
procedural training shapes of different categories, at the default sizes, and prints the point accuracy
of that batch (train mode) every 30 steps.

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
from priors3d.pointcloud.train import PointCloudTrainConfig, forward, load_split, resolve  # noqa: E402
from priors3d.vn import VNInvariant  # noqa: E402


@torch.no_grad()
def head_inputs(model: torch.nn.Module, batch: dict, num_classes: int) -> str:
    """Variances at the head's input and, for VN models, the coherence of the frames, on ``batch``."""
    seen = {}
    hooks = [model.head.norm_local.register_forward_hook(lambda m, i, o: seen.update(local=i[0])),
             model.head.norm_global.register_forward_hook(lambda m, i, o: seen.update(global_=i[0]))]
    invariant = [m for m in model.modules() if isinstance(m, VNInvariant)]
    if invariant:
        hooks.append(invariant[0].register_forward_hook(lambda m, i, o: seen.update(frame=o[1])))
    model.train()
    forward(model, batch, "seg", num_classes)
    for hook in hooks:
        hook.remove()
    text = (f"global features' variance across shapes {seen['global_'].var(0).mean():.3g}, per-point features' "
            f"variance within a shape {seen['local'].var(-1).mean():.3g}")
    if "frame" in seen:  # [B, 3 vectors, 3, N]
        unit = seen["frame"] / seen["frame"].norm(dim=2, keepdim=True)
        text += f", frame coherence {unit.mean(-1).norm(dim=2).mean():.3f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vn_dgcnn", "dgcnn"])
    parser.add_argument("--frames", nargs="+", default=["shape"], choices=["point", "shape"],
                        help="invariant-layer frames to try for the VN models")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve(PointCloudTrainConfig(task="seg"))
    data = load_split(config, "train")
    stride = len(data) // 16
    batch = torch.utils.data.default_collate([data[i] for i in range(0, 16 * stride, stride)])
    runs = [(name, frame) for name in args.models for frame in (args.frames if is_equivariant(name) else [None])]
    for name, frame in runs:
        label = name if frame is None else f"{name} ({frame} frame)"
        torch.manual_seed(0)
        model = build_model(name, "seg", data.num_classes, data.num_parts, k=config.k,
                            width_divisor=config.width_divisor, frame=frame)
        print(f"{label} at initialisation: {head_inputs(model, batch, data.num_classes)}", flush=True)
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
