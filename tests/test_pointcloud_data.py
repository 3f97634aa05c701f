"""Point-cloud data sets: the procedural set, loaders on files written in the public layouts, augmentations."""

import json
import time

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from priors3d.pointcloud.data import make_dataset, synthetic
from priors3d.pointcloud.data import transforms as T
from priors3d.pointcloud.data.modelnet import ModelNet40H5, ModelNet40Resampled
from priors3d.pointcloud.data.shapenetpart import SEG_CLASSES as SHAPENET_PARTS
from priors3d.pointcloud.data.shapenetpart import ShapeNetPart
from priors3d.pointcloud.data.synthetic import CATEGORIES, SEG_CLASSES, SyntheticShapes


# --- the procedural data set ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    """Three shapes of every category, 512 points, with normals."""
    root = tmp_path_factory.mktemp("cache")
    return SyntheticShapes(root, "train", n_points=512, per_class=3, normals=True, progress=False)


def test_part_table_is_global_and_has_enough_categories():
    assert len(CATEGORIES) >= 10
    ids = [i for parts in SEG_CLASSES.values() for i in parts]
    assert ids == list(range(len(ids)))
    assert all(len(parts) >= 2 for parts in SEG_CLASSES.values())


def test_every_category_shows_at_least_two_of_its_parts(small_synthetic):
    seen = {name: set() for name in CATEGORIES}
    for i in range(len(small_synthetic)):
        item = small_synthetic[i]
        name = small_synthetic.class_names[int(item["label"])]
        parts = set(item["parts"].tolist())
        assert parts <= set(SEG_CLASSES[name]), name
        assert len(parts) >= 2, name
        seen[name] |= parts
    assert all(len(parts) >= 2 for parts in seen.values())


def test_items_are_normalised_like_the_public_sets(small_synthetic):
    points = torch.as_tensor(small_synthetic.data["points"])
    radius = points.norm(dim=-1).amax(dim=1)
    torch.testing.assert_close(radius, torch.ones_like(radius), atol=1e-5, rtol=0)
    centre = (points.amax(dim=1) + points.amin(dim=1)) / 2
    assert centre.abs().max() < 1e-5
    normals = torch.as_tensor(small_synthetic.data["normals"])
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(normals.shape[:2]))


def test_items_lie_on_the_boundary_of_their_exact_solid(small_synthetic):
    """``shape(i).contains`` is the occupancy of the very cloud item i samples."""
    for i in range(0, len(small_synthetic), 3):
        item, shape = small_synthetic[i], small_synthetic.shape(i)
        p, n = item["points"].double().numpy(), item["normals"].double().numpy()
        name = small_synthetic.class_names[int(item["label"])]
        assert (~shape.contains(p + 5e-4 * n)).mean() >= 0.98, name
        assert shape.contains(p - 5e-4 * n).mean() >= 0.98, name


def test_generation_is_deterministic_split_by_seed_and_cached(tmp_path, monkeypatch):
    kwargs = dict(n_points=128, per_class=2, progress=False)
    a = SyntheticShapes(tmp_path / "a", "train", **kwargs)
    b = SyntheticShapes(tmp_path / "b", "train", **kwargs)
    np.testing.assert_array_equal(a.data["points"], b.data["points"])
    test = SyntheticShapes(tmp_path / "a", "test", **kwargs)
    other_seed = SyntheticShapes(tmp_path / "a", "train", seed=1, **kwargs)
    assert not np.allclose(a.data["points"], test.data["points"])
    assert not np.allclose(a.data["points"], other_seed.data["points"])
    assert a.cache_path.is_file() and a.cache_path != test.cache_path != other_seed.cache_path

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(synthetic, "generate", no_generation)
    cached = SyntheticShapes(tmp_path / "a", "train", **kwargs)
    np.testing.assert_array_equal(cached.data["points"], a.data["points"])
    np.testing.assert_array_equal(cached.data["parts"], a.data["parts"])


def test_generation_takes_milliseconds_per_shape(tmp_path):
    start = time.perf_counter()
    dataset = SyntheticShapes(tmp_path, "train", n_points=1024, per_class=4, progress=False)
    per_shape = (time.perf_counter() - start) / len(dataset)
    assert len(dataset) == 4 * len(CATEGORIES)
    assert per_shape < 0.1  # about 5 ms on a shared 2-core machine; the default 3072 shapes take seconds


def test_synthetic_rejects_unknown_categories_and_splits(tmp_path):
    with pytest.raises(ValueError, match="spaceship"):
        SyntheticShapes(tmp_path, categories=["chair", "spaceship"], per_class=1)
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(tmp_path, split="val", per_class=1)


def test_factory_serves_classification_and_segmentation(tmp_path):
    dataset = make_dataset("synthetic", tmp_path, "test", n_points=64, task="seg", per_class=1,
                           categories=["mug", "lamp"], progress=False)
    assert dataset.up_axis == "z" and dataset.num_classes == 2
    assert dataset.seg_classes == {"mug": SEG_CLASSES["mug"], "lamp": SEG_CLASSES["lamp"]}
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["points"].shape == (2, 64, 3) and batch["parts"].shape == (2, 64)
    assert batch["label"].tolist() == [0, 1] and batch["parts"].dtype == torch.int64
    with pytest.raises(ValueError, match="unknown data set"):
        make_dataset("modelnet10")
    with pytest.raises(ValueError, match="task"):
        make_dataset("synthetic", tmp_path, task="detection")


# --- ModelNet40, HDF5 layout ----------------------------------------------------------------------

def write_h5(folder, name, data, label, normal=None):
    with h5py.File(folder / name, "w") as f:
        f["data"] = data
        f["label"] = label
        if normal is not None:
            f["normal"] = normal


@pytest.fixture
def modelnet_h5(tmp_path):
    """Two train files and one test file over three classes, 64 points per shape."""
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for name, n in [("ply_data_train0.h5", 4), ("ply_data_train1.h5", 3), ("ply_data_test0.h5", 2)]:
        data = rng.standard_normal((n, 64, 3)).astype(np.float32)
        label = rng.integers(0, 3, (n, 1)).astype(np.uint8)
        normal = rng.standard_normal((n, 64, 3)).astype(np.float32)
        write_h5(folder, name, data, label, normal)
        arrays[name] = (data, label, normal)
    (folder / "shape_names.txt").write_text("airplane\nnight_stand\nvase\n")
    listing = "".join(f"data/modelnet40_ply_hdf5_2048/{n}\n" for n in ["ply_data_train0.h5", "ply_data_train1.h5"])
    (folder / "train_files.txt").write_text(listing)
    (folder / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    return folder, arrays


def test_modelnet_h5_reads_every_listed_file(modelnet_h5):
    folder, arrays = modelnet_h5
    train = make_dataset("modelnet40", folder.parent, "train", n_points=32, normals=True)
    assert isinstance(train, ModelNet40H5) and train.up_axis == "z"
    assert len(train) == 7 and train.class_names == ["airplane", "night_stand", "vase"]
    data, label, normal = arrays["ply_data_train1.h5"]
    item = train[5]  # second shape of the second file
    np.testing.assert_array_equal(item["points"].numpy(), data[1, :32])
    np.testing.assert_array_equal(item["normals"].numpy(), normal[1, :32])
    assert item["label"].item() == label[1, 0] and "parts" not in item
    assert len(ModelNet40H5(folder, "test")) == 2


def test_modelnet_tops_up_short_clouds_and_draws_random_subsets(modelnet_h5):
    folder, arrays = modelnet_h5
    data = arrays["ply_data_train0.h5"][0][0]
    big = ModelNet40H5(folder, "train", n_points=100)[0]["points"].numpy()
    assert big.shape == (100, 3)
    assert len(np.unique(big, axis=0)) == 64  # every stored point, then repeats
    assert np.isin(big, data).all()
    random = ModelNet40H5(folder, "train", n_points=16, sample="random", seed=3)
    first, again = random[0]["points"], random[0]["points"]
    torch.testing.assert_close(first, again)
    assert len(np.unique(first.numpy(), axis=0)) == 16
    random.set_epoch(1)
    assert not torch.equal(random[0]["points"], first)


def test_modelnet_h5_errors_name_the_file(modelnet_h5):
    folder, _ = modelnet_h5
    (folder / "ply_data_train1.h5").unlink()
    with pytest.raises(FileNotFoundError, match="ply_data_train1.h5"):
        ModelNet40H5(folder, "train")
    write_h5(folder, "ply_data_train1.h5", np.zeros((2, 8, 3), np.float32), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"ply_data_train1.h5.*'label' \[n, 1\]"):
        ModelNet40H5(folder, "train")
    write_h5(folder, "ply_data_train1.h5", np.zeros((2, 8, 3), np.float32), np.full((2, 1), 7))
    with pytest.raises(ValueError, match=r"ply_data_train1.h5: labels must lie in \[0, 3\)"):
        ModelNet40H5(folder, "train")
    (folder / "train_files.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train_files.txt"):
        ModelNet40H5(folder, "train")
    with pytest.raises(ValueError, match="no part labels"):
        make_dataset("modelnet40", folder, "test", task="seg")
    with pytest.raises(FileNotFoundError, match="modelnet40_shape_names.txt"):
        make_dataset("modelnet40", folder / "nowhere")


def test_modelnet_h5_refuses_nan_and_truncated_files(modelnet_h5):
    folder, arrays = modelnet_h5
    data, label, normal = (a.copy() for a in arrays["ply_data_train1.h5"])
    data[2, 5, 1] = np.nan
    write_h5(folder, "ply_data_train1.h5", data, label, normal)
    with pytest.raises(ValueError, match=r"ply_data_train1.h5: 'data' of shape 2 holds NaN or infinite values"):
        ModelNet40H5(folder, "train")
    data[2, 5, 1], normal[1, 0, 0] = 0.0, np.inf
    write_h5(folder, "ply_data_train1.h5", data, label, normal)
    with pytest.raises(ValueError, match=r"ply_data_train1.h5: 'normal' of shape 1 holds NaN or infinite values"):
        ModelNet40H5(folder, "train")
    write_h5(folder, "ply_data_train1.h5", data, label)
    whole = (folder / "ply_data_train1.h5").read_bytes()
    (folder / "ply_data_train1.h5").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"ply_data_train1.h5 is not a readable HDF5 file \(truncated"):
        ModelNet40H5(folder, "train")


# --- ModelNet40, resampled text layout ------------------------------------------------------------

@pytest.fixture
def modelnet_txt(tmp_path):
    folder = tmp_path / "modelnet40_normal_resampled"
    rng = np.random.default_rng(1)
    arrays = {}
    for shape in ["airplane_0001", "night_stand_0002", "night_stand_0003", "airplane_0004"]:
        category = shape.rsplit("_", 1)[0]
        (folder / category).mkdir(parents=True, exist_ok=True)
        array = rng.standard_normal((40, 6)).astype(np.float32)
        np.savetxt(folder / category / f"{shape}.txt", array, fmt="%.6f", delimiter=",")
        arrays[shape] = array
    (folder / "modelnet40_shape_names.txt").write_text("airplane\nnight_stand\n")
    (folder / "modelnet40_train.txt").write_text("airplane_0001\nnight_stand_0002\nnight_stand_0003\n")
    (folder / "modelnet40_test.txt").write_text("airplane_0004\n")
    return folder, arrays


def test_modelnet_resampled_reads_text_files(modelnet_txt):
    folder, arrays = modelnet_txt
    train = make_dataset("modelnet40", folder.parent, "train", n_points=16, normals=True)
    assert isinstance(train, ModelNet40Resampled) and train.up_axis == "y"
    assert len(train) == 3 and [int(train[i]["label"]) for i in range(3)] == [0, 1, 1]
    item = train[2]
    np.testing.assert_allclose(item["points"].numpy(), arrays["night_stand_0003"][:16, :3], atol=1e-6)
    np.testing.assert_allclose(item["normals"].numpy(), arrays["night_stand_0003"][:16, 3:], atol=1e-6)
    assert len(make_dataset("modelnet40", folder, "test")) == 1


def test_modelnet_resampled_errors_name_the_file(modelnet_txt):
    folder, _ = modelnet_txt
    bad = folder / "airplane" / "airplane_0001.txt"
    bad.write_text("0.1,0.2,0.3,0,0\n")
    train = ModelNet40Resampled(folder, "train")
    with pytest.raises(ValueError, match=r"airplane_0001.txt.*6 columns"):
        train[0]
    bad.write_text("0.1,0.2,0.3,0,0,1\n0.1,nan,0.3,0,0,1\n")
    with pytest.raises(ValueError, match=r"airplane_0001.txt: row 1 holds NaN or infinite values"):
        train[0]
    (folder / "night_stand" / "night_stand_0002.txt").unlink()
    with pytest.raises(FileNotFoundError, match="night_stand_0002.txt"):
        train[1]
    (folder / "modelnet40_train.txt").write_text("sofa_0001\n")
    with pytest.raises(ValueError, match=r"modelnet40_train.txt.*'sofa_0001'"):
        ModelNet40Resampled(folder, "train")


# --- ShapeNetPart ---------------------------------------------------------------------------------

@pytest.fixture
def shapenet(tmp_path):
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("Airplane\t02691156\nMug\t03797390\n")
    rng = np.random.default_rng(2)
    shapes = {"02691156": ["a1", "a2"], "03797390": ["m1"]}
    arrays = {}
    for synset, tokens in shapes.items():
        (root / synset).mkdir()
        parts = SHAPENET_PARTS["Airplane" if synset == "02691156" else "Mug"]
        for token in tokens:
            array = np.concatenate([rng.standard_normal((30, 6)), rng.choice(parts, (30, 1))], axis=1)
            np.savetxt(root / synset / f"{token}.txt", array, fmt="%.6f")
            arrays[token] = array
    lists = {"train": ["shape_data/02691156/a1", "shape_data/03797390/m1"], "val": ["shape_data/02691156/a2"],
             "test": ["shape_data/03797390/m1"]}
    for split, entries in lists.items():
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return root, arrays


def test_shapenetpart_reads_categories_parts_and_normals(shapenet):
    root, arrays = shapenet
    train = make_dataset("shapenetpart", root, "train", n_points=20, task="seg", normals=True)
    assert isinstance(train, ShapeNetPart) and train.up_axis == "y"
    assert train.num_classes == 16 and train.num_parts == 50
    assert train.seg_classes["Table"] == [47, 48, 49] and train.seg_classes["Motorbike"] == list(range(30, 36))
    mug = train[1]
    assert mug["label"].item() == train.class_names.index("Mug") == 11
    np.testing.assert_allclose(mug["points"].numpy(), arrays["m1"][:20, :3], atol=1e-6)
    np.testing.assert_allclose(mug["normals"].numpy(), arrays["m1"][:20, 3:6], atol=1e-6)
    np.testing.assert_array_equal(mug["parts"].numpy(), arrays["m1"][:20, 6].astype(np.int64))
    assert set(mug["parts"].tolist()) <= {36, 37}
    assert len(ShapeNetPart(root, "trainval")) == 3 and len(ShapeNetPart(root, "val")) == 1


def test_shapenetpart_errors_name_the_file(shapenet):
    root, arrays = shapenet
    wrong = arrays["a1"].copy()
    wrong[0, 6] = 40  # a Rocket part on an airplane
    np.savetxt(root / "02691156" / "a1.txt", wrong, fmt="%.6f")
    with pytest.raises(ValueError, match=r"a1.txt: part labels must lie in 0..3"):
        ShapeNetPart(root, "train")[0]
    wrong[0, 6], wrong[3, 2] = 0, np.inf
    np.savetxt(root / "02691156" / "a1.txt", wrong, fmt="%.6f")
    with pytest.raises(ValueError, match=r"a1.txt: row 3 holds NaN or infinite values"):
        ShapeNetPart(root, "train")[0]
    (root / "train_test_split" / "shuffled_val_file_list.json").write_text('["shape_data/99999999/x"]')
    with pytest.raises(ValueError, match=r"shuffled_val_file_list.json.*'99999999'"):
        ShapeNetPart(root, "val")
    (root / "train_test_split" / "shuffled_test_file_list.json").unlink()
    with pytest.raises(FileNotFoundError, match="shuffled_test_file_list.json"):
        ShapeNetPart(root, "test")
    (root / "synsetoffset2category.txt").write_text("Spaceship\t01234567\n")
    with pytest.raises(ValueError, match=r"synsetoffset2category.txt.*Spaceship"):
        ShapeNetPart(root, "train")


# --- augmentations --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch(small_synthetic):
    items = [small_synthetic[i] for i in range(0, 12, 3)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def test_rotation_protocols_turn_points_and_normals_together(batch):
    g = torch.Generator().manual_seed(0)
    out = T.random_rotate(batch, "z", g, up_axis="y")
    R = out["rotation"]
    torch.testing.assert_close(out["points"][..., 1], batch["points"][..., 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["points"], batch["points"] @ R)
    torch.testing.assert_close(out["normals"], batch["normals"] @ R)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(R)))
    again = T.random_rotate(batch, "z", g, up_axis="y")["rotation"]
    assert not torch.allclose(again, R)  # fresh rotations every batch
    so3 = T.random_rotate(batch, "so3", torch.Generator().manual_seed(0))
    assert not torch.allclose(so3["points"][..., 2], batch["points"][..., 2])
    torch.testing.assert_close(T.random_rotate(batch, "none")["points"], batch["points"])


def test_scale_and_rotation_keep_normals_normal_to_the_surface():
    """The unit sphere scaled by S is the ellipsoid sum (x / s)^2 = 1, whose normal is x / s^2."""
    g = torch.Generator().manual_seed(1)
    sphere = torch.nn.functional.normalize(torch.randn(3, 200, 3, generator=g), dim=-1)
    scaled = T.random_scale({"points": sphere, "normals": sphere}, 0.5, 2.0, g)
    out = T.random_rotate(scaled, "so3", g)
    scale = (scaled["points"] / sphere).median(dim=1, keepdim=True).values  # [B, 1, 3]
    assert (scale.amax(-1) / scale.amin(-1) > 1.1).all()  # really anisotropic
    expected = torch.nn.functional.normalize(scaled["points"] / scale**2, dim=-1) @ out["rotation"]
    torch.testing.assert_close(out["normals"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["points"], scaled["points"] @ out["rotation"])


def test_shift_and_jitter_leave_normals_alone(batch):
    g = torch.Generator().manual_seed(2)
    shifted = T.random_shift(batch, 0.3, g)
    offset = shifted["points"] - batch["points"]
    torch.testing.assert_close(offset, offset[:, :1].expand_as(offset))
    assert offset.abs().max() <= 0.3 and offset.abs().max() > 0
    jittered = T.jitter(batch, sigma=0.05, clip=0.02, generator=g)
    noise = jittered["points"] - batch["points"]
    assert noise.abs().max() <= 0.02 + 1e-6 and noise.std() > 0.01
    for out in (shifted, jittered):
        assert torch.equal(out["normals"], batch["normals"]) and torch.equal(out["parts"], batch["parts"])


def triples(out):
    """Each point's (xyz, normal, part) as rows, to check that they travel together."""
    return torch.cat([out["points"], out["normals"], out["parts"][..., None].float()], dim=-1)


def test_dropout_and_shuffle_move_normals_and_parts_with_their_points(batch):
    g = torch.Generator().manual_seed(3)
    dropped = T.point_dropout(batch, 0.875, g)
    assert dropped["points"].shape == batch["points"].shape
    rows, original = triples(dropped), triples(batch)
    is_first = (rows == original[:, :1]).all(dim=-1)
    kept = (rows == original).all(dim=-1)
    assert (is_first | kept).all() and (~kept).any()
    shuffled = T.shuffle_points(batch, g)
    assert not torch.equal(shuffled["points"], batch["points"])
    for b in range(len(rows)):
        sort = lambda x: x[torch.argsort(x[:, 0] * 1e4 + x[:, 1] * 1e2 + x[:, 2])]  # noqa: E731
        torch.testing.assert_close(sort(triples(shuffled)[b]), sort(original[b]))
    torch.testing.assert_close(T.point_dropout(batch, 0.0, g)["points"], batch["points"])


def test_augment_is_reproducible_and_checks_its_input(batch):
    config = T.AugmentConfig(rotation="so3", shift=0.1, dropout=0.5)
    a = T.augment(batch, config, torch.Generator().manual_seed(4))
    b = T.augment(batch, config, torch.Generator().manual_seed(4))
    for key in ("points", "normals", "parts", "rotation"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["label"], batch["label"])
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        T.jitter({"points": torch.zeros(5, 3)})


def test_augmentations_other_than_rotation_do_not_depend_on_the_protocol():
    points = torch.randn(4, 64, 3, dtype=torch.float64)
    distances = {}
    for protocol in ("none", "z", "so3"):
        config = T.AugmentConfig(rotation=protocol, jitter_sigma=0.05, shift=0.1, dropout=0.2)
        out = T.augment({"points": points.clone()}, config, torch.Generator().manual_seed(3))["points"]
        distances[protocol] = torch.cdist(out, out)  # rotation-invariant; scale, shift, jitter, dropout, order are not
    assert not torch.allclose(distances["none"], torch.cdist(points, points))
    for protocol in ("z", "so3"):
        # rotations are drawn in float32: distances agree to float32 rounding, not to float64's
        assert torch.allclose(distances[protocol], distances["none"], atol=1e-5)
