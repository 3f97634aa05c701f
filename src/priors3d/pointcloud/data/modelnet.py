"""ModelNet40 in its two public layouts.

``modelnet40_ply_hdf5_2048`` (PointNet): ``ply_data_{train,test}*.h5`` holding ``data [n, 2048, 3]``
float32, ``label [n, 1]`` and often ``normal [n, 2048, 3]``, listed in ``train_files.txt`` /
``test_files.txt`` (entries such as ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``, resolved by
basename), class names in ``shape_names.txt``. These clouds are z-up.

``modelnet40_normal_resampled`` (PointNet++): ``<class>/<class>_0001.txt`` with 10000 rows of
``x,y,z,nx,ny,nz``, listed in ``modelnet40_{train,test}.txt`` (``<class>_0001``), class names in
``modelnet40_shape_names.txt``. These clouds are y-up. Files are read when an item is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from priors3d.pointcloud.data.base import PointCloudDataset, check_finite, load_text_points, read_lines

HDF5_DIR = "modelnet40_ply_hdf5_2048"
RESAMPLED_DIR = "modelnet40_normal_resampled"


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"ModelNet40 split must be 'train' or 'test', got {split!r}")


class ModelNet40H5(PointCloudDataset):
    """The HDF5 layout (z-up, 2048 points per shape), loaded into memory."""

    name = "modelnet40"
    up_axis = "z"

    def __init__(self, root: str | os.PathLike, split: str = "train", n_points: int = 1024,
                 normals: bool = False, sample: str = "first", seed: int = 0):
        _check_split(split)
        root = Path(root)
        self.class_names = read_lines(root / "shape_names.txt", "one class name per line")
        files = read_lines(root / f"{split}_files.txt", "one .h5 path per line")
        points, labels, normal_arrays = [], [], []
        for entry in files:
            path = root / Path(entry).name
            if not path.is_file():
                raise FileNotFoundError(f"missing {path} (listed as {entry!r} in {root / f'{split}_files.txt'})")
            try:
                with h5py.File(path, "r") as f:
                    if not {"data", "label"} <= f.keys():
                        raise ValueError(f"{path}: expected datasets 'data' [n, P, 3] and 'label' [n, 1], "
                                         f"found {sorted(f.keys())}")
                    data, label = np.asarray(f["data"], dtype=np.float32), np.asarray(f["label"]).reshape(-1)
                    if data.ndim != 3 or data.shape[2] != 3 or len(label) != len(data):
                        raise ValueError(f"{path}: expected 'data' [n, P, 3] and 'label' [n, 1], "
                                         f"got {data.shape} and {np.shape(f['label'])}")
                    normal = np.asarray(f["normal"], dtype=np.float32) if "normal" in f else None
            except OSError as error:
                raise ValueError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {error}") from None
            check_finite(data, f"{path}: 'data' of shape")
            if normal is not None:
                check_finite(normal, f"{path}: 'normal' of shape")
            normal_arrays.append(normal)
            if label.min(initial=0) < 0 or label.max(initial=0) >= len(self.class_names):
                raise ValueError(f"{path}: labels must lie in [0, {len(self.class_names)}) "
                                 f"(the classes of shape_names.txt), got {label.min()}..{label.max()}")
            points.append(data)
            labels.append(label.astype(np.int64))
        self.has_normals = all(n is not None for n in normal_arrays)
        super().__init__(split, n_points, normals, sample, seed)
        self.points = np.concatenate(points)
        self.labels = np.concatenate(labels)
        self.point_normals = np.concatenate(normal_arrays) if self.has_normals else None

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, index):
        normals = self.point_normals[index] if self.point_normals is not None else None
        return {"points": self.points[index], "normals": normals, "label": self.labels[index]}


class ModelNet40Resampled(PointCloudDataset):
    """The resampled text layout (y-up, 10000 points and normals per shape), read lazily."""

    name = "modelnet40"
    up_axis = "y"

    def __init__(self, root: str | os.PathLike, split: str = "train", n_points: int = 1024,
                 normals: bool = False, sample: str = "first", seed: int = 0):
        _check_split(split)
        super().__init__(split, n_points, normals, sample, seed)
        self.root = Path(root)
        self.class_names = read_lines(self.root / "modelnet40_shape_names.txt", "one class name per line")
        index = {name: i for i, name in enumerate(self.class_names)}
        listing = self.root / f"modelnet40_{split}.txt"
        self.shapes = read_lines(listing, "one shape name such as airplane_0001 per line")
        self.labels = []
        for shape in self.shapes:
            category = shape.rsplit("_", 1)[0]
            if category not in index:
                raise ValueError(f"{listing}: shape {shape!r} is not '<class>_<number>' with a class "
                                 f"from modelnet40_shape_names.txt")
            self.labels.append(index[category])

    def path(self, index: int) -> Path:
        shape = self.shapes[index]
        return self.root / shape.rsplit("_", 1)[0] / f"{shape}.txt"

    def __len__(self) -> int:
        return len(self.shapes)

    def _load(self, index):
        array = load_text_points(self.path(index), columns=6, delimiter=",")
        return {"points": array[:, :3], "normals": array[:, 3:], "label": self.labels[index]}


def modelnet40(root: str | os.PathLike, split: str = "train", n_points: int = 1024, **kwargs) -> PointCloudDataset:
    """ModelNet40 from ``root``, in whichever layout it holds.

    ``root`` may be either layout's folder or a folder containing ``modelnet40_ply_hdf5_2048`` or
    ``modelnet40_normal_resampled`` (the HDF5 layout wins when both are there).
    """
    root = Path(root)
    for folder in (root, root / HDF5_DIR, root / RESAMPLED_DIR):
        if (folder / "shape_names.txt").is_file():
            return ModelNet40H5(folder, split, n_points, **kwargs)
        if (folder / "modelnet40_shape_names.txt").is_file():
            return ModelNet40Resampled(folder, split, n_points, **kwargs)
    raise FileNotFoundError(
        f"no ModelNet40 under {root}: expected shape_names.txt and {split}_files.txt ({HDF5_DIR} layout) or "
        f"modelnet40_shape_names.txt and modelnet40_{split}.txt ({RESAMPLED_DIR} layout), "
        f"in {root} or in {root / HDF5_DIR} / {root / RESAMPLED_DIR}"
    )
