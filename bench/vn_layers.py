"""Time forward+backward of a VN-DGCNN-sized EdgeConv block against same-size scalar blocks, and kNN.

Each configuration runs in its own subprocess so that its peak memory (max RSS above the process's
resting size) is its own. Writes the table to docs/benchmarks.md.

    python bench/vn_layers.py [--batch 16 --points 1024 --k 20 --repeats 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from report import machine, write_section

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from priors3d import vn  # noqa: E402

VECTOR_CHANNELS = 64 // 3  # 21, the reference's width for a 64-channel layer


class ScalarEdgeConv(nn.Module):
    """DGCNN's EdgeConv: [x_j − x_i, x_i] → 1x1 conv → BN → LeakyReLU → max over k. [B, C, N] → [B, O, N]."""

    def __init__(self, c: int, o: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2 * c, o, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2))

    def forward(self, x, index):
        neighbors = vn.gather_neighbors(x, index)
        center = x.unsqueeze(-1).expand_as(neighbors)
        return self.net(torch.cat([neighbors - center, center], 1)).amax(-1)


class UnfusedVNEdgeConv(nn.Module):
    """The reference order: build [B, 2C, 3, N, k] edge features, then VN linear + BN + LeakyReLU, mean over k."""

    def __init__(self, c: int, o: int):
        super().__init__()
        self.layer = vn.VNLinearLeakyReLU(2 * c, o)

    def forward(self, x, index):
        return self.layer(vn.edge_features(x, index)).mean(-1)


def _inputs(name: str, b: int, n: int, c: int):
    g = torch.Generator().manual_seed(0)
    if name.startswith("scalar"):
        return torch.randn(b, c, n, generator=g, requires_grad=True)
    return torch.randn(b, c, 3, n, generator=g, requires_grad=True)


CONFIGS = {
    # name: (module factory, channel count of the input)
    "vn_edgeconv_fused": (lambda: vn.VNEdgeConv(VECTOR_CHANNELS, VECTOR_CHANNELS), VECTOR_CHANNELS),
    "vn_edgeconv_kernel": (lambda: vn.VNEdgeConv(VECTOR_CHANNELS, VECTOR_CHANNELS, recompute=True), VECTOR_CHANNELS),
    "vn_edgeconv_unfused": (lambda: UnfusedVNEdgeConv(VECTOR_CHANNELS, VECTOR_CHANNELS), VECTOR_CHANNELS),
    "scalar_edgeconv_21": (lambda: ScalarEdgeConv(VECTOR_CHANNELS, VECTOR_CHANNELS), VECTOR_CHANNELS),
    "scalar_edgeconv_64": (lambda: ScalarEdgeConv(64, 64), 64),
    "knn_vn_features": (None, VECTOR_CHANNELS),
}


def run_one(name: str, b: int, n: int, k: int, repeats: int) -> dict:
    torch.manual_seed(0)
    factory, c = CONFIGS[name]
    x = _inputs(name, b, n, c)
    rest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    if factory is None:
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            vn.knn(x.detach(), k)
            times.append(time.perf_counter() - t0)
    else:
        module = factory()
        index = vn.knn(x.detach(), k)
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            module(x, index).square().mean().backward()
            times.append(time.perf_counter() - t0)
            module.zero_grad(set_to_none=True)
            x.grad = None
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rest) / 1024
    return {"name": name, "seconds": statistics.median(times[1:]), "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.points, args.k, args.repeats)))
        return
    results = {}
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--one", name, "--batch", str(args.batch), "--points", str(args.points),
               "--k", str(args.k), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        results[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"{name:<22} {results[name]['seconds'] * 1000:9.1f} ms  {results[name]['peak_mb']:8.1f} MB", flush=True)
    scalar = results["scalar_edgeconv_21"]["seconds"]
    ratios = {name: results[name]["seconds"] / scalar for name in ("vn_edgeconv_kernel", "vn_edgeconv_fused")}
    rows = "\n".join(f"| `{r['name']}` | {r['seconds'] * 1000:.1f} | {r['peak_mb']:.0f} |" for r in results.values())
    write_section("benchmarks.md", "vn_layers", f"""
## VN layers: EdgeConv block and kNN (forward + backward)

Command: `python bench/vn_layers.py --batch {args.batch} --points {args.points} --k {args.k}` (median of
{args.repeats} repeats after one warm-up; each row in its own process; peak = max RSS above the resting size).
Machine: {machine()}.

Block: edge features `[x_j − x_i, x_i]` of {VECTOR_CHANNELS} channels, k={args.k}, linear map to
{VECTOR_CHANNELS} channels, batch norm, LeakyReLU, pooling over the neighbours. The VN block works on
{VECTOR_CHANNELS} **vector** channels (3x the numbers and the arithmetic of {VECTOR_CHANNELS} scalar channels).

`vn_edgeconv_fused` is `VNEdgeConv` (linear maps before the gather, fused norm and activation, edge
tensors kept for the backward pass); `vn_edgeconv_kernel` is `VNEdgeConv(recompute=True)`, the one-kernel
version the VN models use (edge tensors rebuilt in the backward pass, in a workspace kept between calls);
`vn_edgeconv_unfused` builds the `[B, 2C, 3, N, k]` edge features first, as the reference does.

| configuration | ms per forward+backward | peak MB |
|---|---:|---:|
{rows}

VN / scalar, same channel count (target: at most 3.5x): **{ratios["vn_edgeconv_kernel"]:.2f}x** for the kernel the
models use, {ratios["vn_edgeconv_fused"]:.2f}x for `vn_edgeconv_fused`.
""")


if __name__ == "__main__":
    main()
