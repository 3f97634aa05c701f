"""Training augmentations on collated batches, drawn afresh from a ``torch.Generator`` every call.

A batch is a dict with ``points [B, N, 3]`` and optionally ``normals [B, N, 3]`` and ``parts [B, N]``
(other keys pass through). Every function returns a new dict and leaves its input alone. Points and
normals stay consistent: rotations turn both; an anisotropic scale maps normals by the inverse
scale and renormalises them (normals of the stretched surface); shifts and jitter leave normals
alone; dropout and shuffling reorder normals and part labels with their points.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from priors3d.so3 import rotations_for_protocol

Batch = dict[str, Tensor]


def _check(batch: Batch) -> tuple[int, int]:
    points = batch.get("points")
    if points is None or points.ndim != 3 or points.shape[-1] != 3:
        shape = None if points is None else list(points.shape)
        raise ValueError(f"expected batch['points'] of shape [B, N, 3], got {shape}")
    return points.shape[0], points.shape[1]


def _uniform(shape, low: float, high: float, generator: torch.Generator | None, like: Tensor) -> Tensor:
    return (torch.rand(shape, generator=generator) * (high - low) + low).to(like)


def rotate(batch: Batch, rotation: Tensor) -> Batch:
    """Turn points and normals by ``rotation [B, 3, 3]`` (or ``[3, 3]``): ``points @ R``."""
    _check(batch)
    rotation = rotation.to(batch["points"])
    out = dict(batch, points=batch["points"] @ rotation)
    if "normals" in batch:
        out["normals"] = batch["normals"] @ rotation
    return out


def random_rotate(batch: Batch, protocol: str, generator: torch.Generator | None = None,
                  up_axis: str = "z") -> Batch:
    """Rotate each cloud by a fresh rotation of ``protocol`` (``none``, ``z`` about ``up_axis``, ``so3``).

    The rotations used are returned under ``"rotation" [B, 3, 3]``.
    """
    b, _ = _check(batch)
    rotation = rotations_for_protocol(protocol, b, up_axis=up_axis, generator=generator)
    return dict(rotate(batch, rotation), rotation=rotation.to(batch["points"]))


def random_scale(batch: Batch, low: float = 0.8, high: float = 1.25, generator: torch.Generator | None = None,
                 anisotropic: bool = True) -> Batch:
    """Scale each cloud by factors uniform in ``[low, high]`` (one per axis when ``anisotropic``)."""
    b, _ = _check(batch)
    scale = _uniform((b, 1, 3 if anisotropic else 1), low, high, generator, batch["points"])
    out = dict(batch, points=batch["points"] * scale)
    if "normals" in batch and anisotropic:
        normals = batch["normals"] / scale
        out["normals"] = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return out


def random_shift(batch: Batch, max_shift: float = 0.1, generator: torch.Generator | None = None) -> Batch:
    """Translate each cloud by an offset uniform in ``[-max_shift, max_shift]^3``."""
    b, _ = _check(batch)
    return dict(batch, points=batch["points"] + _uniform((b, 1, 3), -max_shift, max_shift, generator,
                                                         batch["points"]))


def jitter(batch: Batch, sigma: float = 0.01, clip: float = 0.05, generator: torch.Generator | None = None) -> Batch:
    """Add per-point Gaussian noise of std ``sigma``, clipped to ``[-clip, clip]``."""
    _check(batch)
    points = batch["points"]
    noise = (torch.randn(points.shape, generator=generator) * sigma).clamp(-clip, clip).to(points)
    return dict(batch, points=points + noise)


def gather_points(batch: Batch, index: Tensor) -> Batch:
    """Reorder points, normals and parts of each cloud by ``index [B, N']``."""
    _check(batch)
    index = index.to(batch["points"].device)
    out = dict(batch)
    for key in ("points", "normals", "parts"):
        if key in batch:
            x = batch[key]
            full = index.reshape(*index.shape, *([1] * (x.ndim - 2))).expand(*index.shape, *x.shape[2:])
            out[key] = torch.gather(x, 1, full)
    return out


def point_dropout(batch: Batch, max_ratio: float = 0.875, generator: torch.Generator | None = None) -> Batch:
    """Drop a fraction uniform in ``[0, max_ratio]`` of each cloud's points, replacing them by the
    cloud's first point (as PointNet++ does, so that N stays fixed)."""
    b, n = _check(batch)
    ratio = torch.rand(b, 1, generator=generator) * max_ratio
    drop = torch.rand(b, n, generator=generator) <= ratio
    drop[:, 0] = False
    index = torch.where(drop, 0, torch.arange(n).expand(b, n))
    return gather_points(batch, index)


def shuffle_points(batch: Batch, generator: torch.Generator | None = None) -> Batch:
    """Permute the points of each cloud independently."""
    b, n = _check(batch)
    return gather_points(batch, torch.rand(b, n, generator=generator).argsort(dim=1))


@dataclasses.dataclass
class AugmentConfig:
    """Training augmentations; set a field to its neutral value to skip that step."""

    rotation: str = "z"
    """Rotation protocol: none, z (about the data set's up axis) or so3."""
    scale_low: float = 0.8
    scale_high: float = 1.25
    anisotropic: bool = True
    shift: float = 0.0
    """Largest translation per axis (0 keeps clouds centred, which VN networks rely on)."""
    jitter_sigma: float = 0.01
    jitter_clip: float = 0.05
    dropout: float = 0.0
    """Largest fraction of points dropped (PointNet++ uses 0.875)."""
    shuffle: bool = True


def augment(batch: Batch, config: AugmentConfig, generator: torch.Generator | None = None,
            up_axis: str = "z") -> Batch:
    """Dropout, scale, shift, jitter, rotation about ``up_axis`` (see :class:`AugmentConfig`), shuffle.

    Rotations come from their own random stream (seeded by one draw from ``generator``) and act last but
    for the shuffle, so every other augmentation is the same whatever the rotation protocol, jitter
    included (added after the rotation, the same noise would turn with it): an invariant model then
    trains identically under ``z`` and ``so3`` up to rounding.
    """
    rotation_seed = int(torch.randint(2**62, (), generator=generator))
    if config.dropout > 0:
        batch = point_dropout(batch, config.dropout, generator)
    if (config.scale_low, config.scale_high) != (1.0, 1.0):
        batch = random_scale(batch, config.scale_low, config.scale_high, generator, config.anisotropic)
    if config.shift > 0:
        batch = random_shift(batch, config.shift, generator)
    if config.jitter_sigma > 0:
        batch = jitter(batch, config.jitter_sigma, config.jitter_clip, generator)
    batch = random_rotate(batch, config.rotation, torch.Generator().manual_seed(rotation_seed), up_axis)
    if config.shuffle:
        batch = shuffle_points(batch, generator)
    return batch
