import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from priors3d.fields.formats import load_nerfstudio, load_replica, load_scene, split_indices, write_nerfstudio
from priors3d.fields.scenes import CLASS_NAMES, RoomConfig, build_room, generate_room, room_views
from priors3d.fields.views import Views

WINDOW = CLASS_NAMES.index("window")


@pytest.fixture(scope="module")
def room():
    # Non-square, 90 degree field of view (the Replica convention), hard shadows: cheap to render.
    return build_room(RoomConfig(seed=1, width=28, height=20, n_views=12, fov_deg=90.0, test_every=4,
                                 light_samples=1, overview_fov_deg=0.0))


@pytest.fixture(scope="module")
def views(room):
    return room_views(room)


def window_points(room) -> torch.Tensor:
    """A few points on the window's room-facing surface, known from the layout (not from any image)."""
    prims = room.world.prims
    k = int((prims.semantic == WINDOW).nonzero()[0])
    center, half = prims.center[k], prims.size[k]
    thin = int(half.argmin())
    face = center.clone()
    face[thin] -= math.copysign(half[thin].item(), center[thin].item())  # the side towards the room centre
    offsets = torch.zeros(5, 3)
    for n, axis in enumerate(a for a in range(3) if a != thin):
        offsets[1 + 2 * n, axis], offsets[2 + 2 * n, axis] = 0.3 * half[axis], -0.3 * half[axis]
    return face + offsets


def check_projection(views: Views, points: torch.Tensor, semantic: torch.Tensor | None = None) -> int:
    """Project ``points`` with the views' own cameras; where visible (depth agrees) the label must be window.

    Returns how many (point, view) pairs were checked. ``semantic`` overrides the views' labels.
    """
    semantic = views.semantic if semantic is None else semantic
    checked = 0
    h, w = views.hw
    for i in range(len(views)):
        cam = (points - views.c2w[i, :3, 3]) @ views.c2w[i, :3, :3]
        z = -cam[:, 2]
        fx, fy, cx, cy = views.intrinsics[i].tolist()
        u, v = cx + fx * cam[:, 0] / z, cy - fy * cam[:, 1] / z
        for k in range(points.shape[0]):
            if z[k] > 0 and 0 <= u[k] < w and 0 <= v[k] < h:
                r, c = int(v[k]), int(u[k])
                if abs(views.depth[i, r, c] - z[k]) < 0.02 * z[k] if views.depth is not None else True:
                    assert semantic[i, r, c] == WINDOW, (views.names[i], k)
                    checked += 1
    return checked


def all_views(scene) -> Views:
    """Train and test views merged back into trajectory order (by the number in the name)."""
    names = scene.train.names + scene.test.names
    order = sorted(range(len(names)), key=lambda i: int(names[i].split("_")[-1]))
    merged = {}
    for key in ("images", "c2w", "intrinsics", "depth", "semantic", "instance"):
        a, b = getattr(scene.train, key), getattr(scene.test, key)
        merged[key] = None if a is None else torch.cat([a, b])[order]
    return Views(names=[names[i] for i in order], **merged)


def test_split_rule():
    train, test = split_indices(10, 4)
    assert test == [2, 6] and sorted(train + test) == list(range(10))
    with pytest.raises(ValueError, match="test_every"):
        split_indices(10, 1)


def test_nerfstudio_round_trip(room, views, tmp_path):
    scene = generate_room(room.config)
    write_nerfstudio(scene, tmp_path)
    loaded = load_scene(tmp_path)
    for name in ("train", "test"):
        a, b = getattr(scene, name), getattr(loaded, name)
        assert a.names == b.names
        assert (a.images - b.images).abs().max() <= 0.5 / 255 + 1e-6
        assert (a.depth - b.depth).abs().max() <= 0.5e-3 + 1e-6
        assert torch.equal(a.semantic, b.semantic) and torch.equal(a.instance, b.instance)
        assert torch.allclose(a.c2w, b.c2w, atol=1e-6) and torch.allclose(a.intrinsics, b.intrinsics)
    assert loaded.class_names == list(CLASS_NAMES) and torch.equal(loaded.class_colors, scene.class_colors)
    assert torch.allclose(loaded.aabb, scene.aabb) and loaded.far == pytest.approx(scene.far)
    assert check_projection(all_views(loaded), window_points(room)) >= 3
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert {"fl_x", "fl_y", "cx", "cy", "w", "h"} <= meta.keys() and len(meta["test_filenames"]) == len(scene.test)
    sem = np.asarray(Image.open(tmp_path / "semantic_class" / f"{scene.train.names[0]}.png"))
    assert sem.min() >= 1 and np.array_equal(sem.astype(np.int64) - 1, scene.train.semantic[0].numpy())


def test_replica_opencv_cameras(room, views, tmp_path):
    (tmp_path / "rgb").mkdir()
    for sub in ("depth", "semantic_class", "semantic_instance"):
        (tmp_path / sub).mkdir()
    rows = []
    for i in range(len(views)):
        c2w_cv = views.c2w[i].double().numpy() @ np.diag([1.0, -1.0, -1.0, 1.0])
        rows.append(" ".join(f"{x:.9f}" for x in c2w_cv.reshape(-1)))
        Image.fromarray((views.images[i].numpy() * 255).round().astype(np.uint8)).save(tmp_path / f"rgb/rgb_{i}.png")
        depth_mm = (views.depth[i].numpy() * 1000).round().astype(np.uint16)
        Image.fromarray(depth_mm).save(tmp_path / f"depth/depth_{i}.png")
        # Class ids on disk: ours + 1, shifted by 10 to check the remapping to 0..C-1.
        Image.fromarray((views.semantic[i].numpy() + 11).astype(np.uint8)).save(
            tmp_path / f"semantic_class/semantic_class_{i}.png")
        Image.fromarray((views.instance[i].numpy() + 1).astype(np.uint16)).save(
            tmp_path / f"semantic_instance/semantic_instance_{i}.png")
    (tmp_path / "traj_w_c.txt").write_text("\n".join(rows) + "\n")
    scene = load_scene(tmp_path, test_every=4)
    assert [n for n in scene.test.names] == ["rgb_2", "rgb_6", "rgb_10"]
    loaded = all_views(scene)
    assert torch.allclose(loaded.c2w, views.c2w, atol=1e-5)
    assert torch.allclose(loaded.intrinsics, views.intrinsics, atol=1e-4)  # 90 degrees, centred
    # Classes present are renamed by their id on disk and remapped to 0..C-1.
    on_disk = torch.tensor([int(n.split("_")[1]) for n in scene.class_names])
    assert torch.equal(on_disk[loaded.semantic] - 11, views.semantic)
    present = views.instance.unique()
    assert torch.equal(present[loaded.instance], views.instance)
    assert check_projection(loaded, window_points(room), semantic=on_disk[loaded.semantic] - 11) >= 3
    half = load_replica(tmp_path, downscale=2, test_every=4)
    assert half.train.hw == (10, 14)
    assert torch.allclose(half.train.intrinsics, scene.train.intrinsics / 2)


def test_blender_camera_angle_and_rgba(room, views, tmp_path):
    background = (0.0, 1.0, 0.0)
    wall = views.semantic == CLASS_NAMES.index("wall")
    fx = views.intrinsics[0, 0].item()
    angle = 2 * math.atan(views.hw[1] / (2 * fx))
    train, test = split_indices(len(views), 4)
    rng = np.random.default_rng(0)
    for split, index in (("train", train), ("test", test)):
        (tmp_path / split).mkdir()
        frames = []
        for i in index:
            rgba = np.concatenate([views.images[i].numpy(), np.ones(views.hw + (1,), np.float32)], -1)
            rgba[wall[i].numpy()] = np.concatenate([rng.random(3), [0.0]])  # transparent: shows the background
            Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(tmp_path / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": views.c2w[i].tolist()})
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    scene = load_nerfstudio(tmp_path, background=background)
    loaded = all_views(scene)
    assert torch.allclose(loaded.intrinsics, views.intrinsics, atol=1e-4)
    assert torch.allclose(loaded.images[wall], torch.tensor(background))
    assert (loaded.images[~wall] - views.images[~wall]).abs().max() <= 0.5 / 255 + 1e-6
    loaded.depth = views.depth  # Blender has no depth or labels: use the renderer's for the visibility test
    assert check_projection(loaded, window_points(room), semantic=views.semantic) >= 3


def test_features_are_resized_to_the_images(views, tmp_path):
    scene = generate_room(RoomConfig(seed=1, width=16, height=12, n_views=4, test_every=2, light_samples=1,
                                       overview_fov_deg=0.0))
    write_nerfstudio(scene, tmp_path)
    (tmp_path / "features").mkdir()
    for k, name in enumerate(scene.train.names + scene.test.names):
        np.save(tmp_path / "features" / f"{name}.npy", np.full((6, 8, 5), float(k), np.float32))
    loaded = load_scene(tmp_path)
    assert loaded.train.features.shape == (2, 12, 16, 5)
    assert torch.allclose(loaded.test.features[1], torch.full((12, 16, 5), 3.0))
    (tmp_path / "features" / f"{scene.test.names[0]}.npy").unlink()
    with pytest.raises(FileNotFoundError, match=scene.test.names[0]):
        load_scene(tmp_path)


def test_bad_layouts_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms.json.*traj_w_c.txt"):
        load_scene(tmp_path)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}
    meta = {"fl_x": 4.0, "w": 4, "h": 4, "frames": [frame, {**frame, "file_path": "images/missing"}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="images/missing"):
        load_nerfstudio(tmp_path, test_every=2)
    meta["frames"][1] = {**frame, "transform_matrix": np.eye(3).tolist()}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms.json: frame 1 transform_matrix must be 4x4"):
        load_nerfstudio(tmp_path, test_every=2)
    meta["frames"][1] = {**frame}
    meta["w"] = 5
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="w = 5"):
        load_nerfstudio(tmp_path, test_every=2)

    replica = tmp_path / "replica"
    (replica / "rgb").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(replica / f"rgb/rgb_{i}.png")
    (replica / "traj_w_c.txt").write_text("\n".join([" ".join(["0"] * 16)] * 2))
    with pytest.raises(ValueError, match="traj_w_c.txt: 2 poses but .*rgb holds 3"):
        load_scene(replica)
    (replica / "traj_w_c.txt").write_text("\n".join([" ".join(["0"] * 16)] * 2 + [" ".join(["0"] * 12)]))
    with pytest.raises(ValueError, match="line 3 has 12 numbers"):
        load_scene(replica)


def test_written_features_load_back(tmp_path):
    scene = generate_room(RoomConfig(seed=0, width=8, height=6, n_views=4, test_every=2, light_samples=0,
                                       overview_fov_deg=0.0))
    for views in (scene.train, scene.test):
        views.features = torch.randn(len(views), 6, 8, 3, generator=torch.Generator().manual_seed(0))
    write_nerfstudio(scene, tmp_path)
    loaded = load_scene(tmp_path)
    assert torch.allclose(loaded.train.features, scene.train.features, atol=1e-6)


def test_nan_in_a_camera_is_rejected_at_load(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}
    broken = np.eye(4)
    broken[1, 3] = float("nan")
    meta = {"fl_x": 4.0, "w": 4, "h": 4, "frames": [frame, {**frame, "transform_matrix": broken.tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms.json: frame 1 transform_matrix holds NaN or Inf"):
        load_nerfstudio(tmp_path, test_every=2)
    meta["frames"][1] = {**frame, "fl_x": float("inf")}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms.json: frame 1 intrinsics hold NaN or Inf"):
        load_nerfstudio(tmp_path, test_every=2)
