"""Real-capture layouts: the NeRF-synthetic object folder, distorted and arbitrarily posed nerfstudio captures, and
fits whose later commands read the scene exactly as the fit did."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from priors3d import cli
from priors3d.fields.cameras import distort, undistorted_intrinsics
from priors3d.fields.fit import load_field
from priors3d.fields.formats import load_nerfstudio, load_scene
from priors3d.fields.rays import project_points
from priors3d.fields.scenes.object import ObjectConfig, write_blender
from priors3d.fields.scenes.room import look_at

TINY = ObjectConfig(width=24, height=24, n_train=6, n_val=1, n_test=2, light_samples=1)


@pytest.fixture(scope="module")
def object_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lego")
    write_blender(folder, TINY)
    return folder


def test_the_object_folder_has_the_public_layout(object_folder):
    meta = json.loads((object_folder / "transforms_test.json").read_text())
    assert set(meta) == {"camera_angle_x", "frames"} and len(meta["frames"]) == 2
    assert meta["frames"][1]["file_path"] == "./test/r_1"  # no extension, as Blender writes it
    assert (object_folder / "test" / "r_1_depth_0000.png").is_file()  # the quirk beside the test frames
    with Image.open(object_folder / "train" / "r_0.png") as image:
        assert image.mode == "RGBA"
        alpha = np.asarray(image)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255 and ((alpha > 0) & (alpha < 255)).any()  # anti-aliased edges


def test_the_object_loads_on_white_inside_the_box_its_cameras_look_at(object_folder):
    scene = load_scene(object_folder)
    assert len(scene.train) == 6 and len(scene.test) == 2  # the depth quirk files are not frames
    assert scene.background == (1.0, 1.0, 1.0) and scene.transform is None  # Blender poses are kept
    with Image.open(object_folder / "train" / "r_0.png") as image:
        clear = torch.from_numpy(np.asarray(image)[..., 3] == 0)
    assert torch.equal(scene.train.images[0][clear], torch.ones(int(clear.sum()), 3))
    lo, hi = scene.aabb
    assert (lo <= -1.5).all() and (hi >= 1.5).all() and (hi - lo).max() < 3.4  # the object's box, not the cameras'
    assert 0.05 < scene.near < 4 - 1.5 * 3**0.5 + 1e-4 and scene.far > 4 + 1.5 * 3**0.5 - 1e-4


def run_cli(*args):
    cli.main([str(a) for a in args] + ["--threads", "1", "--no-progress"])


def test_later_commands_read_the_scene_as_the_fit_did(object_folder, tmp_path):
    run = tmp_path / "fit"
    run_cli("field", "fit", object_folder, "--out", run, "--downscale", "2", "--iterations", "2",
            "--eval-every", "0", "--picture-views", "1", "--batch-rays", "64")
    model, setup = load_field(run)
    assert setup.downscale == 2 and setup.background == (1.0, 1.0, 1.0)  # the loader's composite, by default
    run_cli("field", "render", run)
    with Image.open(run / "renders" / "test" / "r_0.png") as image:
        assert image.size == (12, 12)  # the fit's resolution, not the files' 24 x 24

    black = tmp_path / "black"
    run_cli("field", "fit", object_folder, "--out", black, "--background", "0", "0", "0", "--iterations", "1",
            "--eval-every", "0", "--picture-views", "0", "--batch-rays", "64", "--aabb", "-2", "-2", "-2", "2", "2", "2",
            "--near", "1.0", "--far", "7.0")
    _, setup = load_field(black)
    assert setup.background == (0.0, 0.0, 0.0) and setup.aabb == (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0)
    assert (setup.near, setup.far) == (1.0, 7.0)


def test_the_procedural_room_refuses_a_downscale(tmp_path):
    with pytest.raises(SystemExit):
        run_cli("field", "fit", "room", "--out", tmp_path / "r", "--downscale", "2")


def write_capture(folder, c2w, images, meta_extra):
    """A nerfstudio capture: ``images/frame_<i>.jpg`` (or png) and transforms.json with the given intrinsics."""
    (folder / "images").mkdir(parents=True)
    frames = []
    for i, image in enumerate(images):
        name = f"images/frame_{i:05d}.jpg"
        Image.fromarray(image).save(folder / name, quality=98)
        frames.append({"file_path": name, "transform_matrix": c2w[i].tolist()})
    meta = {"camera_model": "OPENCV", **meta_extra, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(meta))


def test_recentring_and_scaling_keep_what_every_camera_sees(tmp_path):
    """Cameras 30 units from a point far from the origin; after loading they sit within distance 1 of the origin,
    and every 3D point (moved by the scene's transform) projects to the same pixel in every camera."""
    gen = torch.Generator().manual_seed(0)
    target = torch.tensor([10.0, -5.0, 3.0], dtype=torch.float64)
    directions = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64, generator=gen), dim=-1)
    c2w = look_at(target + 30 * directions, target.expand(8, 3) + torch.randn(8, 3, dtype=torch.float64) * 0.5)
    write_capture(tmp_path, c2w, [np.full((20, 16, 3), 128, np.uint8)] * 8,
                  {"fl_x": 20.0, "fl_y": 20.0, "cx": 8.0, "cy": 10.0, "w": 16, "h": 20})
    scene = load_nerfstudio(tmp_path, test_every=4)
    views = [scene.train, scene.test]
    loaded = torch.cat([v.c2w for v in views]).double()
    assert loaded[:, :3, 3].norm(dim=-1).max() == pytest.approx(1.0, abs=1e-6)
    points = target + torch.randn(20, 3, dtype=torch.float64, generator=gen) * 3
    moved = points @ scene.transform[:3, :3].T + scene.transform[:3, 3]
    order = [i for i in range(8) if i % 4 != 2] + [i for i in range(8) if i % 4 == 2]  # train frames, then test
    intrinsics = torch.tensor([20.0, 20.0, 8.0, 10.0], dtype=torch.float64)
    for k, i in enumerate(order):
        before, _ = project_points(points, c2w[i], intrinsics)
        after, _ = project_points(moved, loaded[k], intrinsics)
        assert (before - after).abs().max() < 1e-3


def test_a_distorted_portrait_jpeg_capture_is_undistorted_on_loading(tmp_path):
    """A dot where the lens images a known 3D point lands within 0.5 px of that point's projection through the
    loaded (undistorted) camera."""
    coeffs = {"k1": -0.1, "k2": 0.02, "p1": 0.001, "p2": -0.0005}
    k = torch.tensor([coeffs["k1"], coeffs["k2"], 0.0, coeffs["p1"], coeffs["p2"]], dtype=torch.float64)
    intrinsics = torch.tensor([40.0, 40.0, 24.3, 32.6], dtype=torch.float64)  # 48 x 64 portrait
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-3.0, 0.0, 0.0]],
                               dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64))
    point = torch.tensor([[0.4, 0.3, -0.5]], dtype=torch.float64)
    images = []
    for i in range(4):
        local = (point - c2w[i, :3, 3]) @ c2w[i, :3, :3]  # OpenGL camera axes; OpenCV: x, -y over -z
        ideal = torch.stack([local[0, 0] / -local[0, 2], -local[0, 1] / -local[0, 2]])
        raw = distort(ideal, k) * intrinsics[:2] + intrinsics[2:]
        v, u = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5, indexing="ij")
        dot = np.exp(-((u - float(raw[0])) ** 2 + (v - float(raw[1])) ** 2) / (2 * 1.3**2))
        images.append(np.repeat((dot * 255).round().astype(np.uint8)[..., None], 3, -1))
    write_capture(tmp_path, c2w, images, {"fl_x": 40.0, "fl_y": 40.0, "cx": 24.3, "cy": 32.6, "w": 48, "h": 64,
                                          **coeffs})
    scene = load_nerfstudio(tmp_path, test_every=2)
    new = undistorted_intrinsics(intrinsics, k, 64, 48).float()
    for views in (scene.train, scene.test):
        assert torch.allclose(views.intrinsics, new.expand_as(views.intrinsics), atol=1e-4)
        moved = (point @ scene.transform[:3, :3].T + scene.transform[:3, 3]).float()
        for image, camera, cam_k in zip(views.images, views.c2w, views.intrinsics):
            expected, _ = project_points(moved, camera, cam_k)
            grey = image[..., 0].double()
            weights = torch.where(grey > 0.05, grey, 0.0)
            v, u = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(48.0) + 0.5, indexing="ij")
            centroid = torch.stack([(weights * u).sum(), (weights * v).sum()]) / weights.sum()
            assert (centroid - expected[0]).norm() < 0.5


def test_unsupported_lens_models_are_named(tmp_path):
    write_capture(tmp_path, look_at(torch.tensor([[0.0, -3, 0], [0, 3, 0]]), torch.zeros(2, 3)),
                  [np.zeros((4, 4, 3), np.uint8)] * 2, {"fl_x": 4.0, "w": 4, "h": 4, "k4": 0.1})
    with pytest.raises(ValueError, match="k4"):
        load_nerfstudio(tmp_path, test_every=2)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta.pop("k4")
    meta["camera_model"] = "OPENCV_FISHEYE"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="OPENCV_FISHEYE"):
        load_nerfstudio(tmp_path, test_every=2)
