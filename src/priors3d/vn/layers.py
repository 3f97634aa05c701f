"""Vector Neuron linear layers and nonlinearities (Deng et al., ICCV 2021).

All act on features ``V [B, C, 3, N, ...]`` and commute with rotations: ``f(V R) = f(V) R`` where
``R`` acts on the xyz dimension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fused import vn_batchnorm_leaky_relu
from .layout import EPS, check_features, dot
from .norm import VNBatchNorm


def vn_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``W V``: mix channels with ``weight [O, C]``; ``x [B, C, 3, ...]`` → ``[B, O, 3, ...]``.

    One batched matrix product over the flattened trailing dimensions: no transposes, no copies of a
    contiguous input.
    """
    b, c = x.shape[:2]
    return torch.matmul(weight, x.reshape(b, c, -1)).view(b, weight.shape[0], *x.shape[2:])


def vn_leaky_relu(q: Tensor, k: Tensor, negative_slope: float = 0.0, eps: float = EPS) -> Tensor:
    """VN-LeakyReLU of features ``q`` along directions ``k`` (``[B, C or 1, 3, ...]``, broadcast).

    Where ``⟨q, k⟩ < 0`` the component of ``q`` along ``k/‖k‖`` is removed; the leaky form is
    ``s·q + (1 − s)·relu(q)``. Both collapse to ``q − (1 − s) · min(⟨q, k⟩ / (‖k‖² + ε), 0) · k``,
    which is finite (and equals ``q``) when ``k`` is zero.
    """
    coefficient = (dot(q, k) / (dot(k, k) + eps)).clamp(max=0.0).unsqueeze(2)
    return torch.addcmul(q, (negative_slope - 1.0) * coefficient, k)


class VNLinear(nn.Module):
    """``V' = W V`` with ``W [out, in]`` and no bias: ``[B, in, 3, ...]`` → ``[B, out, 3, ...]``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's default

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, self.in_channels, self)
        return vn_linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class VNLeakyReLU(nn.Module):
    """VN-LeakyReLU with a learned direction ``k = U V`` (``U [C, C]``, or ``[1, C]`` when shared).

    ``[B, C, 3, ...]`` → ``[B, C, 3, ...]``. ``negative_slope=0`` gives VN-ReLU.
    """

    def __init__(self, channels: int, negative_slope: float = 0.2, share_nonlinearity: bool = False):
        super().__init__()
        self.channels, self.negative_slope = channels, negative_slope
        self.map_to_dir = VNLinear(channels, 1 if share_nonlinearity else channels)

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, self.channels, self)
        return vn_leaky_relu(x, vn_linear(x, self.map_to_dir.weight), self.negative_slope)


class VNLinearLeakyReLU(nn.Module):
    """Linear map, optional VN batch norm, then VN-LeakyReLU, the direction learned from the input.

    With batch norm the norm and the nonlinearity run as one fused autograd function (single backward
    only; use ``batchnorm=False`` under ``torch.func`` or for double backward).

    ``q = BN(W V)``, ``k = U V`` (the reference formulation: the direction sees the layer's input, not
    its output), output ``VN-LeakyReLU(q, k)``. Both maps run as one matrix product.
    ``[B, in, 3, ...]`` → ``[B, out, 3, ...]``.
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2,
                 share_nonlinearity: bool = False, batchnorm: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.negative_slope = negative_slope
        self.map_to_feat = VNLinear(in_channels, out_channels)
        self.map_to_dir = VNLinear(in_channels, 1 if share_nonlinearity else out_channels)
        self.norm = VNBatchNorm(out_channels) if batchnorm else nn.Identity()

    @property
    def weight(self) -> Tensor:
        """The feature and direction maps stacked: ``[out + dirs, in]``."""
        return torch.cat([self.map_to_feat.weight, self.map_to_dir.weight])

    def activate(self, both: Tensor) -> Tensor:
        """Batch norm and VN-LeakyReLU of ``both = weight V``, ``[B, out + dirs, 3, ...]`` → ``[B, out, 3, ...]``."""
        return bn_leaky_relu(both, self.out_channels, self.norm, self.negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, self.in_channels, self)
        return self.activate(vn_linear(x, self.weight))


def bn_leaky_relu(both: Tensor, channels: int, norm: nn.Module, negative_slope: float,
                  mean_last: bool = False) -> Tensor:
    """``vn_leaky_relu(norm(q), k)`` for ``both = [q, k]`` stacked along the channels (``q`` has ``channels``).

    Goes through the fused kernel when ``norm`` is a :class:`VNBatchNorm`; ``mean_last`` then averages
    over the last axis.
    """
    if isinstance(norm, VNBatchNorm):
        check_features(both[:, :channels], norm.channels, "VNBatchNorm")
        return vn_batchnorm_leaky_relu(both, channels, norm.bn, negative_slope, mean_last, norm.exact_eps)
    q, k = both.split([channels, both.shape[1] - channels], dim=1)
    out = vn_leaky_relu(norm(q), k, negative_slope)
    return out.mean(-1) if mean_last else out


class VNDropout(nn.Module):
    """Dropout of whole vectors: each of the ``C`` vectors of a point is kept or zeroed together.

    ``[B, C, 3, ...]`` → same shape; survivors are scaled by ``1 / (1 − p)`` in training mode.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, None, self)
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_ones(x.shape[:2] + (1,) + x.shape[3:])
        return x * F.dropout(keep, self.p, training=True)
