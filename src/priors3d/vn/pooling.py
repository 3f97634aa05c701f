"""Pooling of vector-neuron features over points or neighbours (the last dimensions).

Which to use when:

- ``mean_pool``: no parameters, exact, smooth; the reference VN-DGCNN's default.
- ``VNMaxPool``: per channel, the vector with the largest projection on a learned direction
  ``k = U V`` (the reference formulation). The argmax is piecewise constant, so ``U`` receives **no
  gradient** and stays at its initialisation: use it to reproduce the reference, or with a direction
  trained beforehand.
- ``VNSoftMaxPool``: a softmax over the same projections with a temperature; ``U`` is trained, and as
  the temperature goes to 0 it tends to ``VNMaxPool``. Use it when max pooling should learn its directions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import VNLinear, vn_linear
from .layout import check_features, dot


def mean_pool(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` of ``[B, C, 3, ..., N]`` (a point or neighbour dimension, never xyz)."""
    check_features(x, None, "mean_pool")
    if dim % x.ndim <= 2:
        raise ValueError(f"mean_pool pools a point/neighbour dimension (>= 3) of [B, C, 3, ...], got dim={dim}")
    return x.mean(dim, keepdim=keepdim)


class _DirectionPool(nn.Module):
    """Shared part of the direction-based pools: the projections ``⟨v, k⟩`` on ``k = U V``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.map_to_dir = VNLinear(channels, channels)

    def projections(self, x: Tensor) -> Tensor:
        """``x [B, C, 3, ..., N]`` → ``⟨v, k⟩`` as ``[B, C, 1, ..., N]``, after checking the layout."""
        check_features(x, self.channels, self)
        if x.ndim < 4:
            raise ValueError(f"{type(self).__name__} needs a dimension to pool: [B, C, 3, ..., N], got {list(x.shape)}")
        return dot(x, vn_linear(x, self.map_to_dir.weight)).unsqueeze(2)


class VNMaxPool(_DirectionPool):
    """Per channel, pick the vector with the largest projection on ``k = U V``.

    ``[B, C, 3, ..., N]`` → ``[B, C, 3, ...]`` (pools the last dimension). ``U`` gets no gradient
    through the argmax; see :class:`VNSoftMaxPool`.
    """

    def forward(self, x: Tensor) -> Tensor:
        index = self.projections(x).argmax(-1, keepdim=True).expand(*x.shape[:-1], 1)
        return x.gather(-1, index).squeeze(-1)


class VNSoftMaxPool(_DirectionPool):
    """Softmax-weighted pooling by the projections ``⟨v, k⟩`` on ``k = U V``, temperature ``t``.

    ``[B, C, 3, ..., N]`` → ``[B, C, 3, ...]``: ``Σ_n softmax_n(⟨v_n, k_n⟩ / t) v_n``. Differentiable
    in ``U``; tends to :class:`VNMaxPool` as ``t → 0``.
    """

    def __init__(self, channels: int, temperature: float = 0.1):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(channels)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.projections(x) / self.temperature, dim=-1)
        return (x * weights).sum(-1)


def make_pool(kind: str, channels: int) -> nn.Module | None:
    """``"mean"`` → None (use :func:`mean_pool`), ``"max"`` → VNMaxPool, ``"softmax"`` → VNSoftMaxPool."""
    if kind == "mean":
        return None
    if kind == "max":
        return VNMaxPool(channels)
    if kind == "softmax":
        return VNSoftMaxPool(channels)
    raise ValueError(f"pooling must be one of ['mean', 'max', 'softmax'], got {kind!r}")
