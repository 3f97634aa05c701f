"""Occupancy data from the procedural shapes: noisy input clouds and query points with exact labels.

Each item pairs a sparse, noisy view of a shape (``n_inputs`` surface points plus Gaussian noise of
standard deviation ``noise``, 300 and 0.005 as in Occupancy Networks' point-cloud completion) with
query points whose inside/outside labels come from the analytic primitives (``Shape.contains``), so
no mesh and no watertightness fix-up is involved. Query points are half uniform in the box
``[-1 - padding, 1 + padding]³`` (the shapes fit the unit sphere) and half near the surface (surface
samples plus Gaussian noise ``sigma``); a separate set of uniform points in the same box measures
volumetric IoU, as OccNet's ``points_iou``.

The surface samples come from :class:`~priors3d.pointcloud.data.SyntheticShapes` (same seeds, same
shapes, same cache folder); the query points and labels are cached next to them as
``<root>/occupancy/<split>-<key>.npz``, the key hashing the configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from priors3d.pointcloud.data.base import cache_key, cached_arrays
from priors3d.pointcloud.data.primitives import Shape
from priors3d.pointcloud.data.synthetic import SPLITS, VERSION, SyntheticShapes

# Bump when the query sampling changes so that stale caches are not reused.
OCCUPANCY_VERSION = 1


def uniform_box(n: int, rng: np.random.Generator, padding: float = 0.05) -> np.ndarray:
    """``[n, 3]`` points uniform in the cube ``[-1 - padding, 1 + padding]³``."""
    return rng.uniform(-1.0 - padding, 1.0 + padding, size=(n, 3))


def sample_queries(shape: Shape, surface: np.ndarray, n: int, rng: np.random.Generator,
                   near_fraction: float = 0.5, sigma: float = 0.02,
                   padding: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Query points ``[n, 3]`` float32 and their exact occupancy ``[n]`` bool.

    ``round(n * near_fraction)`` points are surface samples (rows of ``surface [P, 3]``, drawn with
    replacement) plus Gaussian noise ``sigma``; the rest are uniform in the padded box. Points are
    shuffled, so any prefix has the same mix.
    """
    if not 0.0 <= near_fraction <= 1.0:
        raise ValueError(f"near_fraction must be in [0, 1], got {near_fraction}")
    n_near = int(round(n * near_fraction))
    near = surface[rng.integers(0, len(surface), n_near)] + sigma * rng.standard_normal((n_near, 3))
    points = np.concatenate([near, uniform_box(n - n_near, rng, padding)])[rng.permutation(n)]
    return points.astype(np.float32), shape.contains(points)


def noisy_subset(surface: Tensor, n: int, noise: float, generator: torch.Generator) -> Tensor:
    """``n`` rows of ``surface [P, 3]`` (without replacement when ``P >= n``) plus Gaussian ``noise``."""
    p = surface.shape[0]
    index = torch.randperm(p, generator=generator)[:n] if p >= n else torch.randint(0, p, (n,), generator=generator)
    chosen = surface[index]
    return chosen + noise * torch.randn(chosen.shape, generator=generator, dtype=chosen.dtype)


def volumetric_iou(logits: Tensor, occupancy: Tensor, threshold: float = 0.2) -> Tensor:
    """IoU per shape of ``sigmoid(logits) >= threshold`` with the true ``occupancy`` (both ``[B, M]``).

    Returns ``[B]``; a shape where both sets are empty scores 1.
    """
    if logits.shape != occupancy.shape or logits.ndim != 2:
        raise ValueError(f"expected logits and occupancy [B, M] of one shape, got {list(logits.shape)} "
                         f"and {list(occupancy.shape)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
    predicted = torch.sigmoid(logits) >= threshold
    truth = occupancy.bool()
    inter = (predicted & truth).sum(1)
    union = (predicted | truth).sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter, dtype=torch.float32)).float()


class OccupancyShapes(Dataset):
    """The procedural shapes as an occupancy data set.

    Items are dicts of tensors: ``inputs [n_inputs, 3]`` (noisy surface points), ``points
    [n_queries, 3]`` and ``occ [n_queries]`` (a random subset of the stored queries, 1.0 = inside),
    ``iou_points [n_iou, 3]`` and ``iou_occ [n_iou]`` (all stored uniform points), ``label`` (category)
    and ``index``. The random choices of an item come from ``(seed, split, epoch, index)``: call
    :meth:`set_epoch` for fresh draws (training); the test split keeps epoch 0, so it is fixed.
    ``surface(i)`` gives the ``n_surface`` clean surface samples of item ``i`` (Chamfer reference).

    Args:
        per_class: shapes per category (default 200 train, 50 test, as :class:`SyntheticShapes`).
        n_stored: query points stored per shape; ``n_queries`` of them are drawn per item.
        n_iou: uniform IoU points per shape (default 8192 for the test split, 0 for train).
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", per_class: int | None = None,
                 categories: list[str] | None = None, n_inputs: int = 300, noise: float = 0.005,
                 n_queries: int = 512, n_stored: int = 2048, n_iou: int | None = None, n_surface: int = 2048,
                 near_fraction: float = 0.5, sigma: float = 0.02, padding: float = 0.05, seed: int = 0,
                 progress: bool = True):
        if not 0 < n_queries <= n_stored:
            raise ValueError(f"n_queries must be in [1, n_stored={n_stored}], got {n_queries}")
        if n_inputs <= 0 or noise < 0:
            raise ValueError(f"need n_inputs > 0 and noise >= 0, got {n_inputs} and {noise}")
        self.surfaces = SyntheticShapes(root, split, n_points=n_surface, per_class=per_class, seed=seed,
                                        categories=categories, progress=progress)
        self.split, self.seed, self.epoch = split, seed, 0
        self.n_inputs, self.noise, self.n_queries = n_inputs, noise, n_queries
        self.class_names = self.surfaces.class_names
        self.config = {"version": [VERSION, OCCUPANCY_VERSION], "surfaces": self.surfaces.config,
                       "n_stored": n_stored, "n_iou": (8192 if split == "test" else 0) if n_iou is None else n_iou,
                       "near_fraction": near_fraction, "sigma": sigma, "padding": padding}
        self.data = cached_arrays(self.cache_path, lambda: self._generate(progress))

    @property
    def cache_path(self) -> Path:
        return self.surfaces.root / "occupancy" / f"{self.split}-{cache_key(self.config)}.npz"

    def _generate(self, progress: bool) -> dict[str, np.ndarray]:
        c = self.config
        m, n_stored, n_iou = len(self), c["n_stored"], c["n_iou"]
        out = {"points": np.empty((m, n_stored, 3), np.float32), "occ": np.empty((m, n_stored), bool),
               "iou_points": np.empty((m, n_iou, 3), np.float32), "iou_occ": np.empty((m, n_iou), bool)}
        for i in tqdm(range(m), desc=f"occupancy {self.split}", disable=not progress, leave=False):
            shape = self.surfaces.shape(i)
            rng = np.random.default_rng([self.seed, SPLITS[self.split], i, 7])
            out["points"][i], out["occ"][i] = sample_queries(
                shape, self.surfaces.data["points"][i].astype(np.float64), n_stored, rng,
                c["near_fraction"], c["sigma"], c["padding"])
            iou = uniform_box(n_iou, rng, c["padding"])
            out["iou_points"][i], out["iou_occ"][i] = iou, shape.contains(iou)
        return {k: np.packbits(v, axis=-1) if v.dtype == bool else v for k, v in out.items()}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.surfaces)

    def surface(self, index: int) -> Tensor:
        """Clean surface samples ``[n_surface, 3]`` of item ``index``."""
        return torch.as_tensor(self.surfaces.data["points"][index])

    def shape(self, index: int) -> Shape:
        """The exact solid of item ``index``."""
        return self.surfaces.shape(index)

    def _bits(self, key: str, index: int, count: int) -> Tensor:
        return torch.from_numpy(np.unpackbits(self.data[key][index], count=count).astype(np.float32))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        state = np.random.SeedSequence([self.seed, SPLITS[self.split], self.epoch, index]).generate_state(1)
        generator = torch.Generator().manual_seed(int(state[0]))
        n_stored, n_iou = self.config["n_stored"], self.config["n_iou"]
        chosen = torch.randperm(n_stored, generator=generator)[:self.n_queries]
        return {
            "inputs": noisy_subset(self.surface(index), self.n_inputs, self.noise, generator),
            "points": torch.from_numpy(self.data["points"][index])[chosen],
            "occ": self._bits("occ", index, n_stored)[chosen],
            "iou_points": torch.from_numpy(self.data["iou_points"][index]),
            "iou_occ": self._bits("iou_occ", index, n_iou),
            "label": torch.tensor(int(self.surfaces.data["label"][index])),
            "index": torch.tensor(index),
        }
