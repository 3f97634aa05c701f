"""VN batch norm followed by VN-LeakyReLU as one autograd function.

``VNBatchNorm`` then ``vn_leaky_relu`` written with PyTorch operators keeps about a dozen full-size
temporaries alive for the backward pass. On edge tensors ``[B, C, 3, N, k]`` that memory traffic is
the cost, so this function saves only its input and three ``[B, C, N, k]`` scalars and writes the
backward pass by hand. It takes ``q`` and ``k`` stacked along the channels, as one linear map makes
them, and returns their gradient as one tensor, so neither the split nor its backward copies them.
Same mathematics (tested against the composition, and with gradcheck).

Forward, per channel, over every vector ``q_e`` with direction ``k_e``:
``n = sqrt(‖q‖² + ε²)``, ``m = γ (n − μ)/sqrt(σ² + ε_bn) + β``, ``p = (m/n) q``,
``a = min(⟨p, k⟩ / (‖k‖² + ε), 0)``, output ``p − (1 − s) a k``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .layout import EPS, dot


def _reduce_dims(x: Tensor) -> list[int]:
    return [0] + list(range(2, x.ndim))


def _per_channel(v: Tensor, ndim: int) -> Tensor:
    return v.view(1, -1, *([1] * (ndim - 2)))


def _xhat(n: Tensor, mean: Tensor, inv_std: Tensor) -> Tensor:
    """``x̂ = (n − μ)/σ``, the normalised norms ``[B, C, ...]`` (a new tensor)."""
    return (n - _per_channel(mean, n.ndim)).mul_(_per_channel(inv_std, n.ndim))


def _scale(n: Tensor, mean: Tensor, inv_std: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``m / n``: the batch-normalised norm over the norm, ``[B, C, ...]``."""
    return _xhat(n, mean, inv_std).mul_(_per_channel(weight, n.ndim)).add_(_per_channel(bias, n.ndim)).div_(n)


class _BatchNormLeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, both, channels, weight, bias, running_mean, running_var, training, momentum, bn_eps, slope,
                mean_last):
        q, k = both[:, :channels], both[:, channels:]                  # [B, C, 3, ...], [B, C or 1, 3, ...]
        n = (dot(q, q) + EPS * EPS).sqrt()                              # [B, C, ...]
        dims = _reduce_dims(n)
        if training:
            var, mean = torch.var_mean(n, dims, correction=0)
            count = n.numel() // n.shape[1]
            if running_mean is not None:
                with torch.no_grad():
                    running_mean.lerp_(mean, momentum)
                    running_var.lerp_(var * count / max(count - 1, 1), momentum)
        else:
            mean, var = running_mean, running_var
        inv_std = torch.rsqrt(var + bn_eps)
        scale = _scale(n, mean, inv_std, weight, bias)
        kk = dot(k, k) + EPS
        a = (dot(q, k) * scale / kk).clamp(max=0.0)                      # ⟨p, k⟩/κ with p = scale·q
        out = (q * scale.unsqueeze(2)).addcmul_(((slope - 1.0) * a).unsqueeze(2), k)
        ctx.save_for_backward(both, n, a, kk, mean, inv_std, weight, bias)  # x̂ and scale are recomputed from n
        ctx.training, ctx.slope, ctx.channels, ctx.mean_last = training, slope, channels, mean_last
        return out.mean(-1) if mean_last else out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        both, n, a, kk, mean, inv_std, weight, bias = ctx.saved_tensors
        channels, c = ctx.channels, 1.0 - ctx.slope
        if ctx.mean_last:  # the mean's gradient, broadcast along the last axis without being copied
            grad = (grad / both.shape[-1]).unsqueeze(-1).expand(*grad.shape, both.shape[-1])
        # in-place arithmetic below keeps at most a few [B, C, ...] scalars alive next to `both` and its gradient
        scale = _scale(n, mean, inv_std, weight, bias)
        q, k = both[:, :channels], both[:, channels:]
        grad_both = torch.empty_like(both)
        grad_p, grad_k = grad_both[:, :channels], grad_both[:, channels:]
        shared = k.shape[1] != channels                                  # one direction for every channel
        if shared:
            grad_k = torch.empty_like(q)
        # through o = p − c·a·k, where a = ⟨p, k⟩/κ on the active set (a < 0) and 0 elsewhere
        t = dot(grad, k).div_(kk).masked_fill_(a >= 0, 0.0)            # ⟨g, k⟩/κ on the active set
        torch.addcmul(grad, t.unsqueeze(2), k, value=-c, out=grad_p)
        # ∂/∂k of −c·a·k = −c·(a·g + t·p − 2·a·t·k), with p = scale·q
        coef = torch.mul(a, -c)                                          # one scratch [B, C, ...] for the factors
        torch.mul(grad, coef.unsqueeze(2), out=grad_k)
        grad_k.addcmul_(torch.mul(t, scale, out=coef).mul_(-c).unsqueeze(2), q)
        grad_k.addcmul_(torch.mul(a, t, out=coef).mul_(2 * c).unsqueeze(2), k)
        del t, coef
        if shared:
            torch.sum(grad_k, dim=1, keepdim=True, out=grad_both[:, channels:])
            del grad_k
        # through p = (m/n)·q, m = γ·x̂ + β, x̂ = (n − μ)/σ, n = sqrt(‖q‖² + ε²)
        grad_scale = dot(grad_p, q)
        grad_n = grad_scale / n                                           # ∂L/∂m for now
        xhat = _xhat(n, mean, inv_std)
        dims = _reduce_dims(n)
        grad_weight = (grad_n * xhat).sum(dims)
        grad_bias = grad_n.sum(dims)
        if ctx.training:
            count = n.numel() // n.shape[1]
            grad_n.sub_(_per_channel(grad_bias / count, n.ndim)).addcmul_(
                xhat, _per_channel(grad_weight / count, n.ndim), value=-1.0)
        del xhat
        grad_n.mul_(_per_channel(weight * inv_std, n.ndim)).sub_(grad_scale.mul_(scale).div_(n)).div_(n)
        del grad_scale
        grad_p.mul_(scale.unsqueeze(2)).addcmul_(grad_n.unsqueeze(2), q)  # now the gradient of q
        return grad_both, None, grad_weight, grad_bias, None, None, None, None, None, None, None


def vn_batchnorm_leaky_relu(both: Tensor, channels: int, bn: torch.nn.BatchNorm1d, negative_slope: float,
                            mean_last: bool = False) -> Tensor:
    """``vn_leaky_relu(VNBatchNorm(q), k)`` with the statistics of ``bn``.

    ``both = [q, k]`` stacked along the channels: ``[B, C + D, 3, ...]`` with ``C = channels`` features and
    ``D = C`` directions (or ``D = 1``, shared by every channel) → ``[B, C, 3, ...]``. ``mean_last`` also
    averages over the last axis (EdgeConv's mean over neighbours), whose backward then needs no
    full-size gradient tensor.
    """
    if both.shape[1] not in (channels + 1, 2 * channels):
        raise ValueError(f"expected [B, C + 1 or 2C, 3, ...] with C = {channels}, got {list(both.shape)}")
    training = bn.training or bn.running_mean is None
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 0.1
    return _BatchNormLeakyReLU.apply(both, channels, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                     training, momentum, bn.eps, negative_slope, mean_last)
