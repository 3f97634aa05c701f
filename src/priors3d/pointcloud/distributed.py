"""Data-parallel training across processes: ``torchrun --nproc_per_node=K`` with DistributedDataParallel.

:func:`process_group` reads the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and joins the process group (gloo on CPU, nccl on CUDA); without
them it returns a single-process context and training runs as usual. Metrics are sums (correct
counts, confusion matrices, IoU sums) reduced with :func:`all_reduce_sum`, so every rank ends up
with the figures of the whole test set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from priors3d.engine import resolve_device


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistContext]:
    """Join the process group torchrun describes (left on exit), or give a single-process context.

    ``device``: ``auto`` (``cuda:<LOCAL_RANK>`` when available, else cpu), ``cpu``, ``cuda`` (this
    rank's GPU) or ``cuda:N``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, ("cpu", "cuda"))
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this torch sees no CUDA device; use --device cpu or auto")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    if world_size <= 1:
        yield DistContext(device=resolved)
        return
    if not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    try:
        yield DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=resolved)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: nn.Module, context: DistContext) -> nn.Module:
    """``DistributedDataParallel(model)`` across ranks, or ``model`` itself for a single process."""
    if not context.enabled:
        return model
    ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(x: Tensor, context: DistContext) -> Tensor:
    """Sum of ``x`` over ranks (a new tensor; ``x`` itself for a single process)."""
    if not context.enabled:
        return x
    backend_device = context.device if dist.get_backend() == "nccl" else torch.device("cpu")
    out = x.detach().to(backend_device, copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(x.device)


def average_buffers(model: nn.Module, context: DistContext) -> None:
    """Replace floating-point buffers (batch-norm running statistics) of ``model`` (or of the model inside its
    DistributedDataParallel wrapper: the same tensors) by their mean over ranks.

    DistributedDataParallel keeps parameters identical but lets every rank update its own running
    statistics; averaging them after an epoch gives every rank the same evaluation model.
    """
    if not context.enabled:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            buffer.copy_(all_reduce_sum(buffer, context) / context.world_size)


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()
