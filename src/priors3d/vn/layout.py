"""The vector-neuron feature layout ``[B, C, 3, N, ...]`` and conversions from points."""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-6  # as in the Vector Neurons reference: keeps divisions by squared norms finite


def dot(x: Tensor, y: Tensor, dim: int = 2, out: Tensor | None = None) -> Tensor:
    """``⟨x, y⟩`` over the xyz dimension ``dim`` (size 3, dropped): ``[B, C, 3, ...]`` → ``[B, C, ...]``.

    Three fused multiply-adds on the coordinate slices: about 3x faster on a CPU than
    ``(x * y).sum(dim)`` or ``torch.linalg.vecdot``, which write or reduce a full-size temporary.
    Written to ``out`` when given, else to one new tensor.
    """
    x0, x1, x2 = x.unbind(dim)
    y0, y1, y2 = y.unbind(dim)
    return torch.mul(x0, y0, out=out).addcmul_(x1, y1).addcmul_(x2, y2)


def check_features(x: Tensor, channels: int | None, layer: str | nn.Module) -> None:
    """Raise a ValueError naming the expected layout unless ``x`` is ``[B, channels, 3, ...]``, and, for a
    module ``layer``, unless ``x`` has the dtype of its parameters."""
    if isinstance(layer, nn.Module):
        weight = next(layer.parameters(), None)
        layer = type(layer).__name__
        if weight is not None and x.dtype != weight.dtype:
            raise ValueError(f"{layer} has {weight.dtype} parameters but got {x.dtype} features; convert one of "
                             f"them (module.to(x.dtype) or x.to({weight.dtype}))")
    if x.ndim < 3 or x.shape[2] != 3 or (channels is not None and x.shape[1] != channels):
        c = "C" if channels is None else str(channels)
        raise ValueError(
            f"{layer} expects vector-neuron features [B, {c}, 3, N, ...] (batch, channels, xyz, points...), "
            f"got {list(x.shape)}; turn points [B, N, 3] into features with priors3d.vn.to_vn(points)"
        )


def to_vn(points: Tensor) -> Tensor:
    """Points ``[B, N, 3]`` → one-channel vector-neuron features ``[B, 1, 3, N]``."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"to_vn expects points [B, N, 3], got {list(points.shape)}")
    return points.transpose(1, 2).unsqueeze(1)


def from_vn(features: Tensor) -> Tensor:
    """Features ``[B, C, 3, N]`` → ``[B, N, C, 3]``, one set of C vectors per point."""
    check_features(features, None, "from_vn")
    return features.movedim(2, -1).movedim(1, -2)
