"""VN batch norm followed by VN-LeakyReLU as hand-written autograd functions.

``VNBatchNorm`` then ``vn_leaky_relu`` written with PyTorch operators keeps about a dozen full-size
temporaries alive for the backward pass. On edge tensors ``[B, C, 3, N, k]`` that memory traffic is
the cost, so the functions here save little and write the backward pass by hand, in place. They take
``q`` and ``k`` stacked along the channels, as one linear map makes them, and return their gradient
as one tensor, so neither the split nor its backward copies them. Same mathematics (tested against
the composition, and with gradcheck).

Forward, per channel, over every vector ``q_e`` with direction ``k_e``:
``n = sqrt(‖q‖² + ε²)`` (``‖q‖ + ε`` with ``exact_eps``, as the reference code),
``m = γ (n − μ)/sqrt(σ² + ε_bn) + β``, ``p = (m/n) q``, ``a = min(⟨p, k⟩ / (‖k‖² + ε), 0)``, output
``p − (1 − s) a k``.

:func:`vn_batchnorm_leaky_relu` saves its input and three ``[B, C, ...]`` scalars.
:func:`vn_edgeconv_mean` (a whole mean-pooled VN EdgeConv after its linear maps) saves only the
per-point maps and the graph, rebuilds the edge tensor in its backward pass, and takes every
edge-sized temporary from the thread's :mod:`~priors3d.vn.workspace`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .layout import EPS, dot
from .workspace import Allocate, workspace


def _reduce_dims(x: Tensor) -> list[int]:
    return [0] + list(range(2, x.ndim))


def _per_channel(v: Tensor, ndim: int) -> Tensor:
    return v.view(1, -1, *([1] * (ndim - 2)))


def _fresh(like: Tensor) -> Allocate:
    """An allocator of new tensors (the counterpart of a workspace borrow)."""
    return lambda name, shape, dtype=None: torch.empty(shape, dtype=dtype or like.dtype, device=like.device)


def _norms(q: Tensor, new: Allocate, exact_eps: bool) -> Tensor:
    """``n = sqrt(‖q‖² + ε²)`` (``‖q‖ + ε`` with ``exact_eps``): ``[B, C, 3, ...]`` → ``[B, C, ...]``."""
    squared = dot(q, q, out=new("n", q[:, :, 0].shape))
    return squared.sqrt_().add_(EPS) if exact_eps else squared.add_(EPS * EPS).sqrt_()


def _statistics(n: Tensor, training: bool, running_mean, running_var, momentum: float, bn_eps: float):
    """Batch norm's ``(μ, 1/sqrt(σ² + ε_bn))`` per channel: the batch's (updating the running ones) or the running ones."""
    if training:
        var, mean = torch.var_mean(n, _reduce_dims(n), correction=0)
        count = n.numel() // n.shape[1]
        if running_mean is not None:
            with torch.no_grad():
                running_mean.lerp_(mean, momentum)
                running_var.lerp_(var * count / max(count - 1, 1), momentum)
    else:
        mean, var = running_mean, running_var
    return mean, torch.rsqrt(var + bn_eps)


def _xhat(n: Tensor, mean: Tensor, inv_std: Tensor, out: Tensor) -> Tensor:
    """``x̂ = (n − μ)/σ``, the normalised norms ``[B, C, ...]``, written to ``out``."""
    return torch.sub(n, _per_channel(mean, n.ndim), out=out).mul_(_per_channel(inv_std, n.ndim))


def _scale(n: Tensor, mean: Tensor, inv_std: Tensor, weight: Tensor, bias: Tensor, out: Tensor) -> Tensor:
    """``m / n``: the batch-normalised norm over the norm, ``[B, C, ...]``, written to ``out``."""
    return _xhat(n, mean, inv_std, out).mul_(_per_channel(weight, n.ndim)).add_(_per_channel(bias, n.ndim)).div_(n)


def _projection(q: Tensor, k: Tensor, scale: Tensor, new: Allocate) -> tuple[Tensor, Tensor]:
    """``a = min(⟨p, k⟩/κ, 0)`` with ``p = scale·q`` and ``κ = ‖k‖² + ε``: both ``[B, C, ...]``."""
    kk = dot(k, k, out=new("kk", k[:, :, 0].shape)).add_(EPS)
    a = dot(q, k, out=new("a", scale.shape)).mul_(scale).div_(kk).clamp_(max=0.0)
    return a, kk


def _activation(q: Tensor, k: Tensor, scale: Tensor, a: Tensor, slope: float, out: Tensor) -> Tensor:
    """``p − (1 − s)·a·k`` with ``p = scale·q``: ``[B, C, 3, ...]``, written to ``out``."""
    return torch.mul(q, scale.unsqueeze(2), out=out).addcmul_(a.unsqueeze(2), k, value=slope - 1.0)


def _backward(grad: Tensor, q: Tensor, k: Tensor, n: Tensor, scale: Tensor, a: Tensor, kk: Tensor,
              mean: Tensor, inv_std: Tensor, weight: Tensor, training: bool, slope: float,
              grad_both: Tensor, new: Allocate, exact_eps: bool) -> tuple[Tensor, Tensor]:
    """Write the gradient of ``[q, k]`` to ``grad_both``; return those of ``γ`` and ``β``.

    Overwrites ``a`` and ``kk`` (dead afterwards); three more ``[B, C, ...]`` scratch tensors (and, with
    shared directions, a ``[B, C, 3, ...]`` one) come from ``new``.
    """
    channels, c = q.shape[1], 1.0 - slope
    grad_p, grad_k = grad_both[:, :channels], grad_both[:, channels:]
    shared = k.shape[1] != channels                                  # one direction for every channel
    if shared:
        grad_k = new("grad_k", q.shape)
    # through o = p − c·a·k, where a = ⟨p, k⟩/κ on the active set (a < 0) and 0 elsewhere
    inactive = torch.ge(a, 0.0, out=new("inactive", a.shape, torch.bool))
    t = dot(grad, k, out=new("t", a.shape)).div_(kk).masked_fill_(inactive, 0.0)  # ⟨g, k⟩/κ on the active set
    torch.addcmul(grad, t.unsqueeze(2), k, value=-c, out=grad_p)
    # ∂/∂k of −c·a·k = −c·(a·g + t·p − 2·a·t·k), with p = scale·q
    coef = torch.mul(a, -c, out=new("coef", a.shape))                # one scratch scalar for the factors
    torch.mul(grad, coef.unsqueeze(2), out=grad_k)
    grad_k.addcmul_(torch.mul(t, scale, out=coef).mul_(-c).unsqueeze(2), q)
    grad_k.addcmul_(torch.mul(a, t, out=coef).mul_(2 * c).unsqueeze(2), k)
    if shared:
        torch.sum(grad_k, dim=1, keepdim=True, out=grad_both[:, channels:])
    # through p = (m/n)·q, m = γ·x̂ + β, x̂ = (n − μ)/σ, n = ‖q‖ with ε; t, coef, a, kk are free now
    grad_scale = dot(grad_p, q, out=t)
    grad_m = torch.div(grad_scale, n, out=coef)
    xhat = _xhat(n, mean, inv_std, out=a)
    dims = _reduce_dims(n)
    product = kk if kk.shape == xhat.shape else None                 # κ has one channel with shared directions
    grad_weight = torch.mul(grad_m, xhat, out=product).sum(dims)
    grad_bias = grad_m.sum(dims)
    if training:
        count = n.numel() // n.shape[1]
        grad_m.sub_(_per_channel(grad_bias / count, n.ndim)).addcmul_(
            xhat, _per_channel(grad_weight / count, n.ndim), value=-1.0)
    grad_n = grad_m.mul_(_per_channel(weight * inv_std, n.ndim)).sub_(grad_scale.mul_(scale).div_(n))
    grad_n.div_(n - EPS if exact_eps else n)                         # ∂n/∂q = q/‖q‖ or q/n
    grad_p.mul_(scale.unsqueeze(2)).addcmul_(grad_n.unsqueeze(2), q)  # now the gradient of q
    return grad_weight, grad_bias


def _mean_gradient(grad: Tensor, k: int) -> Tensor:
    """The gradient of a mean over a last axis of size ``k``, broadcast along it without a copy."""
    return (grad / k).unsqueeze(-1).expand(*grad.shape, k)


class _BatchNormLeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, both, channels, weight, bias, running_mean, running_var, training, momentum, bn_eps, slope,
                mean_last, exact_eps=False):
        new = _fresh(both)
        q, k = both[:, :channels], both[:, channels:]                  # [B, C, 3, ...], [B, C or 1, 3, ...]
        n = _norms(q, new, exact_eps)
        mean, inv_std = _statistics(n, training, running_mean, running_var, momentum, bn_eps)
        scale = _scale(n, mean, inv_std, weight, bias, out=new("scale", n.shape))
        a, kk = _projection(q, k, scale, new)
        out = _activation(q, k, scale, a, slope, out=new("out", q.shape))
        ctx.save_for_backward(both, n, a, kk, mean, inv_std, weight, bias)  # scale is recomputed from n
        ctx.training, ctx.slope, ctx.channels, ctx.mean_last = training, slope, channels, mean_last
        ctx.exact_eps = exact_eps
        return out.mean(-1) if mean_last else out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        both, n, a, kk, mean, inv_std, weight, bias = ctx.saved_tensors
        new, channels = _fresh(both), ctx.channels
        if ctx.mean_last:
            grad = _mean_gradient(grad, both.shape[-1])
        scale = _scale(n, mean, inv_std, weight, bias, out=new("scale", n.shape))
        grad_both = torch.empty_like(both)
        # copies of a and κ, which _backward overwrites: the saved ones serve a second backward (retain_graph)
        grad_weight, grad_bias = _backward(grad, both[:, :channels], both[:, channels:], n, scale, a.clone(),
                                           kk.clone(), mean, inv_std, weight, ctx.training, ctx.slope, grad_both,
                                           new, ctx.exact_eps)
        return grad_both, None, grad_weight, grad_bias, None, None, None, None, None, None, None, None


def _batchnorm_arguments(bn: torch.nn.BatchNorm1d) -> tuple:
    """``(γ, β, running mean, running var, training, momentum, ε)`` of ``bn``, counting the batch in training."""
    training = bn.training or bn.running_mean is None
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 0.1
    return bn.weight, bn.bias, bn.running_mean, bn.running_var, training, momentum, bn.eps


def vn_batchnorm_leaky_relu(both: Tensor, channels: int, bn: torch.nn.BatchNorm1d, negative_slope: float,
                            mean_last: bool = False, exact_eps: bool = False) -> Tensor:
    """``vn_leaky_relu(VNBatchNorm(q, exact_eps=exact_eps), k)`` with the statistics of ``bn``.

    ``both = [q, k]`` stacked along the channels: ``[B, C + D, 3, ...]`` with ``C = channels`` features and
    ``D = C`` directions (or ``D = 1``, shared by every channel) → ``[B, C, 3, ...]``. ``mean_last`` also
    averages over the last axis (EdgeConv's mean over neighbours), whose backward then needs no
    full-size gradient tensor.
    """
    if both.shape[1] not in (channels + 1, 2 * channels):
        raise ValueError(f"expected [B, C + 1 or 2C, 3, ...] with C = {channels}, got {list(both.shape)}")
    return _BatchNormLeakyReLU.apply(both, channels, *_batchnorm_arguments(bn), negative_slope, mean_last, exact_eps)


def _edges(per_neighbor: Tensor, per_center: Tensor, index: Tensor, new: Allocate) -> Tensor:
    """``per_neighbor`` at ``j`` plus ``per_center`` at ``i`` for every edge: ``[B, D, 3, N]`` → ``[B, D, 3, N, k]``."""
    (b, d, _, n), k = per_neighbor.shape, index.shape[-1]
    edges = new("edges", (b, d, 3, n, k))
    flat_index = index.reshape(b, 1, n * k).expand(-1, d * 3, -1)
    torch.gather(per_neighbor.reshape(b, d * 3, n), -1, flat_index, out=edges.view(b, d * 3, n * k))
    return edges.add_(per_center.unsqueeze(-1))


class _EdgeConvMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, per_neighbor, per_center, index, channels, weight, bias, running_mean, running_var, training,
                momentum, bn_eps, slope, exact_eps=False):
        with workspace().borrow(per_neighbor) as new:
            edges = _edges(per_neighbor, per_center, index, new)
            q, k = edges[:, :channels], edges[:, channels:]
            n = _norms(q, new, exact_eps)
            mean, inv_std = _statistics(n, training, running_mean, running_var, momentum, bn_eps)
            scale = _scale(n, mean, inv_std, weight, bias, out=new("scale", n.shape))
            a, _ = _projection(q, k, scale, new)
            out = _activation(q, k, scale, a, slope, out=new("full", q.shape)).mean(-1)
        ctx.save_for_backward(per_neighbor, per_center, index, mean, inv_std, weight, bias)
        ctx.training, ctx.slope, ctx.channels, ctx.exact_eps = training, slope, channels, exact_eps
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        per_neighbor, per_center, index, mean, inv_std, weight, bias = ctx.saved_tensors
        channels, (b, d, _, n_points), k = ctx.channels, per_neighbor.shape, index.shape[-1]
        with workspace().borrow(per_neighbor) as new:
            edges = _edges(per_neighbor, per_center, index, new)     # rebuilt, with the forward's statistics
            q, kdir = edges[:, :channels], edges[:, channels:]
            n = _norms(q, new, ctx.exact_eps)
            scale = _scale(n, mean, inv_std, weight, bias, out=new("scale", n.shape))
            a, kk = _projection(q, kdir, scale, new)
            grad_edges = new("full", edges.shape)
            grad_weight, grad_bias = _backward(_mean_gradient(grad, k), q, kdir, n, scale, a, kk, mean, inv_std,
                                               weight, ctx.training, ctx.slope, grad_edges, new, ctx.exact_eps)
            grad_center = grad_edges.sum(-1)
            flat_index = index.reshape(b, 1, n_points * k).expand(-1, d * 3, -1)
            grad_neighbor = torch.zeros_like(per_neighbor).view(b, d * 3, n_points).scatter_add_(
                -1, flat_index, grad_edges.view(b, d * 3, n_points * k)).view_as(per_neighbor)
        return (grad_neighbor, grad_center, None, None, grad_weight, grad_bias, None, None, None, None, None, None,
                None)


def vn_edgeconv_mean(per_neighbor: Tensor, per_center: Tensor, index: Tensor, channels: int,
                     bn: torch.nn.BatchNorm1d, negative_slope: float, exact_eps: bool = False) -> Tensor:
    """``mean_j bn_leaky_relu(per_neighbor_j + per_center_i)`` over each point's neighbours ``j``.

    ``per_neighbor``, ``per_center``: ``[B, 2C, 3, N]`` (features and directions stacked, ``C = channels``),
    ``index [B, N, k]`` → ``[B, C, 3, N]``. Equals :func:`vn_batchnorm_leaky_relu` with ``mean_last`` on the
    gathered edges; the ``[B, 2C, 3, N, k]`` edges live only inside each pass, in the workspace.
    """
    if per_neighbor.shape[1] != 2 * channels or per_center.shape != per_neighbor.shape:
        raise ValueError(f"expected per-point maps [B, 2C, 3, N] with C = {channels}, got "
                         f"{list(per_neighbor.shape)} and {list(per_center.shape)}")
    if index.ndim != 3 or index.shape[0] != per_neighbor.shape[0] or index.shape[1] != per_neighbor.shape[-1]:
        raise ValueError(f"expected neighbour indices [B, N, k] with B, N = {per_neighbor.shape[0]}, "
                         f"{per_neighbor.shape[-1]}, got {list(index.shape)}")
    return _EdgeConvMean.apply(per_neighbor.contiguous(), per_center.contiguous(), index, channels,
                               *_batchnorm_arguments(bn), negative_slope, exact_eps)
