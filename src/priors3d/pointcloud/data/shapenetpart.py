"""ShapeNetPart (``shapenetcore_partanno_segmentation_benchmark_v0_normal``): 16 categories, 50 parts.

Layout: ``synsetoffset2category.txt`` (lines ``Airplane<TAB>02691156``), ``<synset>/<token>.txt`` with
rows ``x y z nx ny nz part`` (part = global id 0..49), and
``train_test_split/shuffled_{train,val,test}_file_list.json`` listing ``shape_data/<synset>/<token>``.
The clouds are y-up. Category labels follow the standard table below, whatever the order of the
category file, so that a model's one-hot category input always means the same thing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from priors3d.pointcloud.data.base import PointCloudDataset, global_part_ids, load_text_points, read_lines

_PART_COUNTS = {
    "Airplane": 4, "Bag": 2, "Cap": 2, "Car": 4, "Chair": 4, "Earphone": 3, "Guitar": 3, "Knife": 2,
    "Lamp": 4, "Laptop": 2, "Motorbike": 6, "Mug": 2, "Pistol": 3, "Rocket": 3, "Skateboard": 3, "Table": 3,
}

SEG_CLASSES: dict[str, list[int]] = global_part_ids(_PART_COUNTS)
SPLIT_FILES = {"train": ["train"], "val": ["val"], "test": ["test"], "trainval": ["train", "val"]}


class ShapeNetPart(PointCloudDataset):
    """ShapeNetPart with category labels, global part labels and normals; files are read lazily."""

    name = "shapenetpart"
    up_axis = "y"
    seg_classes = SEG_CLASSES
    class_names = list(SEG_CLASSES)

    def __init__(self, root: str | os.PathLike, split: str = "train", n_points: int = 2048,
                 normals: bool = False, sample: str = "first", seed: int = 0):
        if split not in SPLIT_FILES:
            raise ValueError(f"ShapeNetPart split must be one of {list(SPLIT_FILES)}, got {split!r}")
        super().__init__(split, n_points, normals, sample, seed)
        self.root = Path(root)
        category_file = self.root / "synsetoffset2category.txt"
        synsets = {}
        for line in read_lines(category_file, "lines '<Category><TAB><synset>'"):
            fields = line.split()
            if len(fields) != 2 or fields[0] not in SEG_CLASSES:
                raise ValueError(f"{category_file}: expected '<Category>\\t<synset>' with a category among "
                                 f"{list(SEG_CLASSES)}, got {line!r}")
            synsets[fields[1]] = fields[0]
        self.files, self.labels = [], []
        for part in SPLIT_FILES[split]:
            listing = self.root / "train_test_split" / f"shuffled_{part}_file_list.json"
            if not listing.is_file():
                raise FileNotFoundError(f"missing {listing} (expected a JSON list of 'shape_data/<synset>/<token>')")
            try:
                entries = json.loads(listing.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{listing}: not valid JSON ({error})") from None
            if not isinstance(entries, list):
                raise ValueError(f"{listing}: expected a JSON list of 'shape_data/<synset>/<token>'")
            for entry in entries:
                pieces = str(entry).split("/")
                synset, token = (pieces[-2], pieces[-1]) if len(pieces) >= 2 else ("", entry)
                if synset not in synsets:
                    raise ValueError(f"{listing}: entry {entry!r} names synset {synset!r}, "
                                     f"which {category_file} does not list")
                self.files.append(self.root / synset / f"{token}.txt")
                self.labels.append(self.class_names.index(synsets[synset]))

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index):
        path, label = self.files[index], self.labels[index]
        array = load_text_points(path, columns=7, delimiter=None)
        parts = array[:, 6].astype(np.int64)
        allowed = SEG_CLASSES[self.class_names[label]]
        if parts.min() < allowed[0] or parts.max() > allowed[-1]:
            raise ValueError(f"{path}: part labels must lie in {allowed[0]}..{allowed[-1]} for "
                             f"{self.class_names[label]}, got {parts.min()}..{parts.max()}")
        return {"points": array[:, :3], "normals": array[:, 3:6], "label": label, "parts": parts}
