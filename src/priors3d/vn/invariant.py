"""The invariant layer: project equivariant features on a learned equivariant frame, ``V Tᵀ``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import VNLinear, VNLinearLeakyReLU, vn_linear
from .layout import EPS, check_features, dot

FRAMES = ("point", "shape")


def _unit(v: Tensor) -> Tensor:
    """``v / ‖v‖`` over dim 1 of ``[B, 3, ...]``: exactly unit above ``ε``, finite (with gradient) at zero."""
    return v / (v * v).sum(1, keepdim=True).clamp_min(EPS * EPS).sqrt()


def frame_coordinates(x: Tensor, frame: Tensor) -> Tensor:
    """Coordinates of the vectors ``x [B, C, 3, ...]`` in ``frame [B, 3, 3, ...]`` (rows = frame vectors).

    Returns ``[B, C, 3, ...]``: entry ``(c, i)`` is ``⟨x_c, frame_i⟩``. Three broadcast products: on
    the CPU an einsum here turns into one tiny 3×3 matrix product per point, many times slower.
    """
    return torch.stack([dot(x, frame[:, i:i + 1]) for i in range(3)], dim=2)


def orthonormalize(frame: Tensor) -> Tensor:
    """Gram–Schmidt on the first two vectors of ``frame [B, 2 or 3, 3, ...]``, third by cross product.

    Returns ``[B, 3, 3, ...]`` whose rows (dim 1) are orthonormal with determinant +1, so the result
    rotates with its input (a reflection would not).
    """
    u1 = _unit(frame[:, 0])
    u2 = _unit(frame[:, 1] - (frame[:, 1] * u1).sum(1, keepdim=True) * u1)
    return torch.stack([u1, u2, torch.linalg.cross(u1, u2, dim=1)], dim=1)


class VNInvariant(nn.Module):
    """Invariant features ``V Tᵀ`` from a frame ``T`` learned by a small VN MLP.

    Input ``V [B, C, 3, N, ...]`` (or ``[B, C, 3]``). With ``concat_mean`` the layer works on
    ``[V, mean_N V]`` (``2C`` channels; the mean over the last dimension, broadcast back), as the
    reference models do. The MLP ``2C → C → C/2 → 2 or 3`` (hidden widths at least 3) (VN linear + VN-LeakyReLU, VN linear) outputs
    the frame ``T [B, 3, 3, ...]`` (three vectors per point), which rotates with the input, so the
    features ``[B, C', 3, ...]`` (``C'`` = channels used; the xyz dimension now indexes the three frame
    vectors) do not change under rotation. Returns ``(features, frame)``.

    ``frame="point"`` (the reference) keeps one frame per point; ``"shape"`` averages the MLP's frame
    vectors over the last dimension (before any orthonormalisation), so that every point is expressed in
    one frame of the whole shape (still equivariant: a mean of equivariant vectors). The returned frame
    keeps its ``[B, 3, 3, N, ...]`` shape either way.
    """

    def __init__(self, channels: int, concat_mean: bool = True, orthonormal: bool = True,
                 negative_slope: float = 0.2, batchnorm: bool = True, frame: str = "point"):
        super().__init__()
        if frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
        self.channels, self.concat_mean, self.orthonormal, self.frame = channels, concat_mean, orthonormal, frame
        width = 2 * channels if concat_mean else channels
        # at least 3 hidden vectors: fewer would span less than 3D and give a degenerate frame
        hidden1, hidden2 = max(width // 2, 3), max(width // 4, 3)
        self.frame_mlp = nn.Sequential(
            VNLinearLeakyReLU(width, hidden1, negative_slope, batchnorm=batchnorm),
            VNLinearLeakyReLU(hidden1, hidden2, negative_slope, batchnorm=batchnorm),
            VNLinear(hidden2, 2 if orthonormal else 3),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_features(x, self.channels, self)
        if (self.concat_mean or self.frame == "shape") and x.ndim < 4:
            raise ValueError(f"VNInvariant(concat_mean={self.concat_mean}, frame={self.frame!r}) needs points: "
                             f"[B, C, 3, N, ...], got {list(x.shape)}")
        if self.concat_mean:
            mean = x.mean(-1, keepdim=True)
            first, rest = self.frame_mlp[0], self.frame_mlp[1:]
            weight, c = first.weight, self.channels
            # W [V, mean V] = W₁ V + W₂ mean V: the mean's half of the product is computed once, not per point
            frame = rest(first.activate(vn_linear(x, weight[:, :c]) + vn_linear(mean, weight[:, c:])))
            x = torch.cat([x, mean.expand_as(x)], dim=1)
        else:
            frame = self.frame_mlp(x)
        if self.frame == "shape":
            frame = frame.mean(-1, keepdim=True).expand_as(frame)
        if self.orthonormal:
            frame = orthonormalize(frame)
        return frame_coordinates(x, frame), frame
