"""Scratch tensors that outlive a call: the fused VN EdgeConv's ``[B, C, 3, N, k]`` temporaries.

A paper-size VN-DGCNN step makes and frees gigabytes of edge tensors. glibc hands every block above
its mmap threshold (at most 32 MB) back to the kernel when it is freed, so each step faults all of that
memory in again, zeroed by the kernel (measured in docs/benchmarks.md). The EdgeConv
kernel (:func:`priors3d.vn.fused.vn_edgeconv_mean`) takes those temporaries from here instead: named
buffers, grown to the largest size asked for and then kept, one set per thread. :func:`release` gives
the calling thread's buffers back (for example after training, before a long evaluation of something else).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

Allocate = Callable[..., Tensor]  # (name, shape, dtype=None) -> uninitialised tensor


class Workspace:
    """Named buffers of one thread. :meth:`borrow` hands them out, each name once per borrow."""

    def __init__(self):
        self._buffers: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}
        self._lent: set[str] | None = None

    @contextlib.contextmanager
    def borrow(self, like: Tensor) -> Iterator[Allocate]:
        """Yield ``new(name, shape, dtype=None)``: an uninitialised ``[shape]`` view of the buffer ``name``
        (dtype and device of ``like`` unless given). Views are valid until the ``with`` block ends."""
        if self._lent is not None:
            raise RuntimeError("the VN workspace is already lent out in this thread (a re-entrant call)")
        self._lent = set()

        def new(name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
            if name in self._lent:
                raise RuntimeError(f"workspace buffer {name!r} asked for twice in one borrow")
            self._lent.add(name)
            key = (name, dtype or like.dtype, like.device)
            numel = math.prod(shape)
            buffer = self._buffers.get(key)
            if buffer is None or buffer.numel() < numel:
                self._buffers.pop(key, None)  # free the smaller one before making the larger
                buffer = self._buffers[key] = torch.empty(numel, dtype=key[1], device=key[2])
            return buffer[:numel].view(shape)

        try:
            yield new
        finally:
            self._lent = None

    def nbytes(self) -> int:
        """Bytes held."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def clear(self) -> None:
        self._buffers.clear()


_local = threading.local()


def workspace() -> Workspace:
    """The calling thread's workspace."""
    if not hasattr(_local, "workspace"):
        _local.workspace = Workspace()
    return _local.workspace


def release() -> None:
    """Free the calling thread's workspace buffers (they are made again when next needed)."""
    workspace().clear()
