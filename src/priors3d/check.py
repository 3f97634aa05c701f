"""Measure equivariance and invariance of any module, by rotating real inputs.

``equivariance_error(f, x)`` returns the worst relative error ``‖f(xR) − f(x)R‖ / ‖f(x)R‖`` over a few
random rotations; ``invariance_error`` the worst ``‖f(xR) − f(x)‖ / ‖f(x)‖``. Both run ``f`` on the
original and the rotated input with the same random state, so stochastic layers (dropout) in training
mode see the same masks and can be checked too, and both raise on NaN/Inf outputs (a module that
returns NaN is not equivariant, whatever its error computes to). ``assert_equivariant`` and
``assert_invariant`` are the same checks for users' own tests, with a tolerance per dtype.

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

__all__ = ["TOLERANCE", "assert_equivariant", "assert_invariant", "equivariance_error", "invariance_error"]

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
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"f returned {int((~torch.isfinite(out)).sum())} non-finite values (NaN/Inf) of "
                         f"{out.numel()}; equivariance cannot be measured")
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


TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
"""Default relative tolerances of ``assert_equivariant`` / ``assert_invariant`` by the inputs' dtype:
rounding of a deep equivariant network stays orders of magnitude below these (float64 ~1e-15, float32
~1e-7 to 1e-5; README), while a network that is not equivariant is off by 1e-2 or more."""


def _assert_below(error: float, inputs, tolerance: float | None, what: str) -> None:
    dtype = (inputs if isinstance(inputs, Tensor) else inputs[0]).dtype
    limit = TOLERANCE.get(dtype, 1e-4) if tolerance is None else tolerance
    if not error <= limit:
        raise AssertionError(f"not {what}: worst relative error {error:.3g} > tolerance {limit:.1g} ({dtype})")


def assert_equivariant(f: Callable[..., Tensor], inputs: Tensor | Sequence[Tensor], *, tolerance: float | None = None,
                       **kwargs) -> float:
    """Raise AssertionError unless ``equivariance_error(f, inputs, **kwargs)`` is within ``tolerance``
    (default: ``TOLERANCE`` of the first input's dtype); return the error."""
    error = equivariance_error(f, inputs, **kwargs)
    _assert_below(error, inputs, tolerance, "equivariant")
    return error


def assert_invariant(f: Callable[..., Tensor], inputs: Tensor | Sequence[Tensor], *, tolerance: float | None = None,
                     **kwargs) -> float:
    """Raise AssertionError unless ``invariance_error(f, inputs, **kwargs)`` is within ``tolerance``."""
    error = invariance_error(f, inputs, **kwargs)
    _assert_below(error, inputs, tolerance, "invariant")
    return error
