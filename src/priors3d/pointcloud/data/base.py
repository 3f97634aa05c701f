"""The interface every point-cloud data set shares, the fixed-size resampling of its items, and the
``.npz`` cache of generated data."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from priors3d.runs import atomic_write

SAMPLE_MODES = ("first", "random")


class PointCloudDataset(Dataset):
    """Items are dicts of tensors: ``points [N, 3]`` float32, ``label`` int64 (category),
    ``normals [N, 3]`` when asked for, ``parts [N]`` int64 when the set has part labels.

    Subclasses set ``name``, ``class_names``, ``up_axis`` (``"y"`` or ``"z"``), ``seg_classes``
    (category -> its global part ids, empty without part labels) and implement ``__len__`` and
    ``_load(index)``. Every item has exactly ``n_points`` points: the first ``n_points`` stored points
    (``sample="first"``) or a random subset drawn from ``(seed, epoch, index)`` (``sample="random"``);
    items with fewer stored points are topped up by drawing with replacement.
    """

    name: str
    class_names: list[str]
    up_axis: str
    seg_classes: dict[str, list[int]] = {}
    has_normals: bool = True

    def __init__(self, split: str, n_points: int, normals: bool, sample: str, seed: int):
        if n_points <= 0:
            raise ValueError(f"n_points must be positive, got {n_points}")
        if sample not in SAMPLE_MODES:
            raise ValueError(f"sample must be one of {SAMPLE_MODES}, got {sample!r}")
        if normals and not self.has_normals:
            raise ValueError(f"{self.name} ({split}) has no normals; pass normals=False")
        self.split, self.n_points, self.normals, self.sample, self.seed = split, n_points, normals, sample, seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_parts(self) -> int:
        """Number of global part ids (0 without part labels)."""
        return sum(len(ids) for ids in self.seg_classes.values())

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh random subsets (``sample="random"``) for another epoch."""
        self.epoch = epoch

    def _load(self, index: int) -> dict[str, np.ndarray | int]:
        """Stored item: ``points [P, 3]``, ``label``, and ``normals [P, 3]`` / ``parts [P]`` if any."""
        raise NotImplementedError

    def _choose(self, available: int, index: int) -> np.ndarray:
        n = self.n_points
        if self.sample == "first" and available >= n:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if available >= n:
            return rng.choice(available, n, replace=False)
        return np.concatenate([rng.permutation(available), rng.choice(available, n - available)])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        item = self._load(index)
        keep = self._choose(len(item["points"]), index)
        out = {
            "points": torch.as_tensor(np.asarray(item["points"])[keep], dtype=torch.float32),
            "label": torch.tensor(int(item["label"]), dtype=torch.int64),
        }
        if self.normals:
            out["normals"] = torch.as_tensor(np.asarray(item["normals"])[keep], dtype=torch.float32)
        if item.get("parts") is not None:
            out["parts"] = torch.as_tensor(np.asarray(item["parts"])[keep], dtype=torch.int64)
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, items={len(self)}, n_points={self.n_points}, "
                f"classes={self.num_classes}, parts={self.num_parts}, up_axis={self.up_axis!r})")


def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty stripped lines of a listing file, or FileNotFoundError naming it and its content."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path} (expected {what})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_text_points(path: Path, columns: int, delimiter: str | None) -> np.ndarray:
    """``[P, columns]`` float array from a text file, or an error naming the file and layout."""
    if not path.is_file():
        raise FileNotFoundError(f"missing point file {path}")
    try:
        array = np.loadtxt(path, delimiter=delimiter, dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise ValueError(f"{path}: expected rows of {columns} numbers "
                         f"separated by {delimiter or 'spaces'!r} ({error})") from None
    if array.shape[1] != columns or len(array) == 0:
        raise ValueError(f"{path}: expected rows of {columns} columns, got array of shape {array.shape}")
    check_finite(array, f"{path}: row")
    return array


def check_finite(array: np.ndarray, where: str) -> None:
    """ValueError naming ``where`` and the first item (index along axis 0) holding a NaN or infinite number."""
    finite = np.isfinite(array.reshape(len(array), -1)).all(1)
    if not finite.all():
        raise ValueError(f"{where} {int(np.flatnonzero(~finite)[0])} holds NaN or infinite values "
                         f"({int((~finite).sum())} of {len(array)} such); expected finite numbers")


def global_part_ids(counts: dict[str, int]) -> dict[str, list[int]]:
    """Consecutive global part ids per category from its part count: ``{"a": 2, "b": 1}`` → ``{"a": [0, 1],
    "b": [2]}``."""
    ends = itertools.accumulate(counts.values())
    return {name: list(range(end - count, end)) for (name, count), end in zip(counts.items(), ends)}


def cache_key(config: dict) -> str:
    """A short hash of a JSON-able configuration, naming its cache file."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def cached_arrays(path: Path, generate: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored in the ``.npz`` file ``path``; on first use, ``generate()`` them and write the file
    atomically."""
    if path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    data = generate()

    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez(f, **data)

    atomic_write(path, write)
    return data
