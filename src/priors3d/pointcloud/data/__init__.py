"""Point-cloud data sets behind one interface, and the factory the training code calls.

``make_dataset("synthetic" | "modelnet40" | "shapenetpart", root, split, n_points, task)`` returns a
:class:`PointCloudDataset`: items ``{points [N, 3], label, normals [N, 3]?, parts [N]?}`` and the
attributes ``class_names``, ``num_classes``, ``seg_classes``, ``num_parts`` and ``up_axis``
(``priors3d data prepare`` builds and caches them ahead of training).
"""

from __future__ import annotations

import os

import numpy as np

from priors3d.pointcloud.data.base import PointCloudDataset
from priors3d.pointcloud.data.modelnet import ModelNet40H5, ModelNet40Resampled, modelnet40
from priors3d.pointcloud.data.shapenetpart import ShapeNetPart
from priors3d.pointcloud.data.synthetic import CATEGORIES, PART_NAMES, SyntheticShapes

DATASETS = ("synthetic", "modelnet40", "shapenetpart")
TASKS = ("cls", "seg")

__all__ = ["DATASETS", "ModelNet40H5", "ModelNet40Resampled", "PointCloudDataset", "ShapeNetPart", "SyntheticShapes",
           "make_dataset", "part_presence"]


def make_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train", n_points: int = 1024,
                 task: str = "cls", normals: bool = False, sample: str = "first", seed: int = 0,
                 **kwargs) -> PointCloudDataset:
    """A data set by name. ``task="seg"`` needs part labels (synthetic, shapenetpart).

    ``root``: the cache folder for ``synthetic`` (default ``~/.cache/priors3d``), the data folder
    otherwise. Extra keyword arguments go to :class:`SyntheticShapes` (``per_class``, ``categories``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    common = dict(split=split, n_points=n_points, normals=normals, sample=sample, seed=seed)
    if name == "synthetic":
        dataset = SyntheticShapes(root, **common, **kwargs)
    elif name in ("modelnet40", "shapenetpart"):
        if root is None:
            raise ValueError(f"{name} needs root=<folder holding the data set>")
        if kwargs:
            raise ValueError(f"{name} takes no options {sorted(kwargs)}")
        dataset = (modelnet40 if name == "modelnet40" else ShapeNetPart)(root, **common)
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")
    if task == "seg" and not dataset.seg_classes:
        raise ValueError(f"{name} has no part labels; use task='cls' or a data set among synthetic, shapenetpart")
    return dataset


def part_presence(dataset: SyntheticShapes) -> dict[str, dict[str, float]]:
    """Per category, the share of its shapes in which each of its parts has sampled points."""
    parts, labels = dataset.data["parts"].astype(np.int64), dataset.data["label"]
    present = np.zeros((len(labels), len(PART_NAMES)), dtype=bool)
    present[np.arange(len(labels))[:, None], parts] = True
    return {category: {name: float(present[labels == k][:, i].mean())
                       for name, i in zip(CATEGORIES[category], dataset.seg_classes[category])}
            for k, category in enumerate(dataset.class_names)}
