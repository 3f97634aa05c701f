"""Measure equivariance and invariance of any module, by rotating real inputs.

``equivariance_error(f, x)`` returns the worst relative error ``‖f(xR) − f(x)R‖ / ‖f(x)R‖`` over a few
random rotations; ``invariance_error`` the worst ``‖f(xR) − f(x)‖ / ‖f(x)‖``. Both run ``f`` on the
original and the rotated input with the same random state, so stochastic layers (dropout) in training
mode see the same masks and can be checked too.

Example::

    from priors3d import check, vn
    layer = vn.VNLinearLeakyReLU(4, 8).eval()
    x = torch.randn(2, 4, 3, 128, dtype=torch.float64)
    check.equivariance_error(layer.double(), x)      # ~1e-16
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .so3 import random_rotation, rotate

VectorDims = int | None | Sequence[int | None]


def _rotate_inputs(inputs: tuple[Tensor, ...], dims: tuple[int | None, ...], rotation: Tensor):
    return tuple(x if d is None else rotate(x, rotation.to(x.dtype), d) for x, d in zip(inputs, dims))


def _as_tuple(inputs: Tensor | Sequence[Tensor], vector_dims: VectorDims):
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    dims = (vector_dims,) * len(inputs) if vector_dims is None or isinstance(vector_dims, int) else tuple(vector_dims)
    if len(dims) != len(inputs):
        raise ValueError(f"need one vector dim per input ({len(inputs)}), got {len(dims)}")
    return inputs, dims


def _call(f: Callable[..., Tensor], inputs: tuple[Tensor, ...], seed: int) -> Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = f(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"f must return one tensor, got {type(out).__name__}; wrap it to select an output")
    return out


def _worst_error(f, inputs, vector_dims, n_rotations, generator, rotations, target) -> float:
    inputs, dims = _as_tuple(inputs, vector_dims)
    if rotations is None:
        rotations = random_rotation(n_rotations, generator=generator, dtype=torch.float64)
    worst = 0.0
    with torch.no_grad():
        reference = _call(f, inputs, seed=0)
        for rotation in rotations:
            out = _call(f, _rotate_inputs(inputs, dims, rotation), seed=0)
            expected = target(reference, rotation.to(reference.dtype))
            scale = expected.norm().clamp_min(torch.finfo(expected.dtype).tiny)
            worst = max(worst, ((out - expected).norm() / scale).item())
    return worst


def equivariance_error(f: Callable[..., Tensor], inputs: Tensor | Sequence[Tensor], *,
                       vector_dim: VectorDims = 2, output_vector_dim: int = 2, n_rotations: int = 8,
                       generator: torch.Generator | None = None, rotations: Tensor | None = None) -> float:
    """Worst relative error ``‖f(xR) − f(x)R‖ / ‖f(x)R‖`` over random rotations ``R``.

    Args:
        f: a module or function; called as ``f(*inputs)``, returns one tensor.
        inputs: a tensor or a tuple of tensors.
        vector_dim: the xyz dimension of each input (2 for VN features ``[B, C, 3, N, ...]``,
            -1 for points ``[B, N, 3]``); ``None`` for an input that does not rotate (a one-hot label).
        output_vector_dim: the xyz dimension of the output.
        n_rotations: how many uniform rotations to sample (ignored when ``rotations`` is given).
        rotations: ``[R, 3, 3]`` rotations to use instead (row-vector convention).
    """
    return _worst_error(f, inputs, vector_dim, n_rotations, generator, rotations,
                        lambda ref, rot: rotate(ref, rot, output_vector_dim))


def invariance_error(f: Callable[..., Tensor], inputs: Tensor | Sequence[Tensor], *,
                     vector_dim: VectorDims = 2, n_rotations: int = 8,
                     generator: torch.Generator | None = None, rotations: Tensor | None = None) -> float:
    """Worst relative error ``‖f(xR) − f(x)‖ / ‖f(x)‖`` over random rotations (arguments as above)."""
    return _worst_error(f, inputs, vector_dim, n_rotations, generator, rotations, lambda ref, rot: ref)
