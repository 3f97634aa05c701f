"""Normalisation of vector-neuron features through their (rotation-invariant) norms."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layout import EPS, check_features, dot


def vector_norm(x: Tensor, eps: float = EPS, exact_eps: bool = False) -> Tensor:
    """``sqrt(‖v‖² + ε²)`` over the xyz dimension: ``[B, C, 3, ...]`` → ``[B, C, ...]``.

    Smooth everywhere, so zero vectors give finite values and gradients. ``exact_eps``: ``‖v‖ + ε``, as the
    Vector Neurons reference code (no gradient at zero).
    """
    return dot(x, x).sqrt() + eps if exact_eps else (dot(x, x) + eps * eps).sqrt()


class VNBatchNorm(nn.Module):
    """Batch norm on vector norms: ``v ← v · BN(‖v‖) / ‖v‖``, statistics over batch and points.

    ``[B, C, 3, ...]`` → same shape; train and eval modes as ``nn.BatchNorm1d``. ``‖v‖`` is
    ``sqrt(‖v‖² + ε²)``, or with ``exact_eps`` (an attribute; the fused kernels read it too) ``‖v‖ + ε`` as in
    the reference code, whose outputs the default differs from by about 1e-5 relative.
    """

    def __init__(self, channels: int, momentum: float = 0.1, exact_eps: bool = False):
        super().__init__()
        self.channels, self.exact_eps = channels, exact_eps
        self.bn = nn.BatchNorm1d(channels, momentum=momentum)

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, self.channels, self)
        norm = vector_norm(x, exact_eps=self.exact_eps)
        normed = self.bn(norm.reshape(norm.shape[0], self.channels, -1)).view_as(norm)
        return x * (normed / norm).unsqueeze(2)


class VNLayerNorm(nn.Module):
    """Layer norm across the channels of each point's vector norms: ``v ← v · LN(‖v‖) / ‖v‖``.

    ``[B, C, 3, ...]`` → same shape; independent of the batch, so usable where BatchNorm is not
    (``torch.func`` transforms, batch size 1).
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, self.channels, self)
        norm = vector_norm(x)
        mean = norm.mean(1, keepdim=True)
        var = norm.var(1, unbiased=False, keepdim=True)
        shape = (1, self.channels) + (1,) * (norm.ndim - 2)
        normed = (norm - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        return x * (normed / norm).unsqueeze(2)
