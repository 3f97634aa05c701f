"""Rotations: uniform SO(3) samples, rotations about an up axis, and train/test rotation protocols.

Rotations act on row vectors: a point cloud ``points [B, N, 3]`` rotates as ``points @ R``. Every
sampler takes an optional ``torch.Generator`` so that a seed reproduces a run.
"""

from __future__ import annotations

import math

import roma
import torch
from torch import Tensor

__all__ = ["PROTOCOLS", "evaluation_rotations", "parse_protocol_pair", "random_rotation", "random_rotation_about",
           "rotate", "rotation_about", "rotations_for_protocol"]

PROTOCOLS = ("none", "z", "so3")
AXES = {"x": 0, "y": 1, "z": 2}


def _check_axis(up_axis: str) -> int:
    if up_axis not in AXES:
        raise ValueError(f"up_axis must be one of {list(AXES)}, got {up_axis!r}")
    return AXES[up_axis]


def random_rotation(n: int, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """``[n, 3, 3]`` rotations drawn uniformly (Haar measure) from SO(3)."""
    return roma.random_rotmat(n, dtype=dtype, generator=generator)


def rotation_about(up_axis: str, angle: Tensor) -> Tensor:
    """``[n, 3, 3]`` rotations by ``angle [n]`` (radians, right-handed) about ``up_axis``, for row vectors."""
    axis = torch.zeros(*angle.shape, 3, dtype=angle.dtype, device=angle.device)
    axis[..., _check_axis(up_axis)] = 1.0
    # roma returns matrices for column vectors (R v); row vectors rotate with the transpose (v Rᵀ).
    return roma.rotvec_to_rotmat(axis * angle[..., None]).transpose(-1, -2)


def random_rotation_about(up_axis: str, n: int, generator: torch.Generator | None = None,
                          dtype: torch.dtype = torch.float32) -> Tensor:
    """``[n, 3, 3]`` rotations about ``up_axis`` with angles uniform in ``[0, 2π)``."""
    return rotation_about(up_axis, torch.rand(n, generator=generator, dtype=dtype) * (2 * math.pi))


def rotations_for_protocol(protocol: str, n: int, up_axis: str = "z",
                           generator: torch.Generator | None = None,
                           dtype: torch.dtype = torch.float32) -> Tensor:
    """``[n, 3, 3]`` rotations for a protocol: ``none`` (identity), ``z`` (about the up axis), ``so3``."""
    _check_axis(up_axis)
    if protocol == "none":
        return torch.eye(3, dtype=dtype).expand(n, 3, 3).clone()
    if protocol == "z":
        return random_rotation_about(up_axis, n, generator, dtype)
    if protocol == "so3":
        return random_rotation(n, generator, dtype)
    raise ValueError(f"rotation protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")


def evaluation_rotations(protocol: str, n: int, seed: int, up_axis: str = "z") -> Tensor:
    """``[n, 3, 3]``: one fixed rotation per test item under ``protocol``, drawn from ``seed`` alone, so every
    model trained with that seed (point clouds and occupancy alike) is tested on the same rotated shapes."""
    return rotations_for_protocol(protocol, n, up_axis, torch.Generator().manual_seed(seed + 104729))


def parse_protocol_pair(pair: str) -> tuple[str, str]:
    """``"z/so3"`` → ``("z", "so3")``: the train and test rotation protocols."""
    parts = pair.lower().split("/")
    if len(parts) != 2 or any(p not in PROTOCOLS for p in parts):
        raise ValueError(f"expected TRAIN/TEST with each in {list(PROTOCOLS)} (e.g. 'z/so3'), got {pair!r}")
    return parts[0], parts[1]


def rotate(x: Tensor, rotation: Tensor, vector_dim: int = -1) -> Tensor:
    """Rotate the 3-vectors that lie along ``vector_dim`` of ``x`` by ``rotation [B, 3, 3]`` (or ``[3, 3]``).

    With ``vector_dim=-1`` this is ``points @ R`` for points ``[B, N, 3]``; with ``vector_dim=2`` it
    rotates vector-neuron features ``[B, C, 3, N, ...]``.
    """
    if x.shape[vector_dim] != 3:
        raise ValueError(f"dimension {vector_dim} of x must hold xyz (size 3), got shape {list(x.shape)}")
    moved = x.movedim(vector_dim, -1)
    if rotation.ndim == 3:
        rotation = rotation.reshape(rotation.shape[0], *([1] * (moved.ndim - 2)), 3, 3)
    return (moved.unsqueeze(-2) @ rotation).squeeze(-2).movedim(-1, vector_dim)
