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
from priors3d.fields.fit import UNBOUNDED_PRIORS, load_field
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


def test_contraction_keeps_the_box_and_brings_infinity_to_the_grid_edge():
    from priors3d.fields.nerf import contract

    inside = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    assert torch.allclose(contract(inside), inside / 2)
    direction = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    radii = torch.tensor([1.0, 1.5, 4.0, 1e3, 1e9], dtype=torch.float64)
    points = direction[:, None, :] * radii[:, None] / direction.abs().amax(-1, keepdim=True)[:, None]
    norms = contract(points).abs().amax(-1)  # max-norm r lands at (2 - 1/r) / 2
    assert torch.allclose(norms, (2 - 1 / radii) / 2)
    assert (norms.diff(dim=1) > 0).all() and norms.max() <= 1.0


def test_unbounded_intervals_run_linear_in_the_box_then_even_in_disparity():
    from priors3d.fields.render import unbounded_edges

    near, split, far = torch.tensor([0.1, 0.5]), torch.tensor([1.0, 2.0]), torch.tensor([1000.0, 1000.0])
    edges = unbounded_edges(near, split, far, 8)
    assert torch.allclose(edges[:, :5], near[:, None] + (split - near)[:, None] * torch.linspace(0, 1, 5))
    assert torch.allclose((1 / edges[:, 4:]).diff(dim=1), ((1 / far - 1 / split) / 4)[:, None].expand(2, 4))
    jittered = unbounded_edges(near, split, far, 8, torch.Generator().manual_seed(0))
    assert (jittered.diff(dim=1) >= 0).all() and (jittered >= near[:, None]).all() and (jittered <= far[:, None]).all()


def test_a_photo_capture_is_fitted_unbounded(tmp_path):
    from priors3d.fields.scenes.capture import CaptureConfig, write_capture

    write_capture(tmp_path / "walk", CaptureConfig(width=12, height=16, n_frames=8, supersample=1))
    scene = load_nerfstudio(tmp_path / "walk", test_every=4)
    assert scene.unbounded and scene.background is None and scene.far >= 100
    run_cli("field", "fit", tmp_path / "walk", "--out", tmp_path / "fit", "--iterations", "2", "--eval-every", "0",
            "--picture-views", "0", "--batch-rays", "64")
    model, setup = load_field(tmp_path / "fit")
    assert setup.unbounded and model.config.contract
    far_away = torch.tensor([[300.0, -200.0, 50.0]])
    assert model(far_away)[0].item() > 0  # the contracted grid holds the background
    regularisers = lambda run: {k: json.loads((run / "config.json").read_text())["config"][k]  # noqa: E731
                                for k in UNBOUNDED_PRIORS}
    assert regularisers(tmp_path / "fit") == UNBOUNDED_PRIORS  # the floater priors of unbounded scenes
    run_cli("field", "fit", tmp_path / "walk", "--out", tmp_path / "boxed", "--unbounded", "False", "--iterations", "1",
            "--eval-every", "0", "--picture-views", "0", "--batch-rays", "64", "--sparsity", "0.5")
    model, setup = load_field(tmp_path / "boxed")
    assert not setup.unbounded and model(far_away)[0].item() == 0
    assert regularisers(tmp_path / "boxed") == {"distortion": 0.0, "sparsity": 0.5}  # none by default, or as given


def test_unbounded_rendering_spends_half_the_samples_in_the_box_and_reaches_far():
    from priors3d.fields.nerf import NeRF, NeRFConfig
    from priors3d.fields.render import render_rays

    model = NeRF(NeRFConfig(resolutions=(8,), density_grid=8, contract=True))
    o, d = torch.zeros(4, 3), torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    out = render_rays(model, o, d, torch.full((4,), 0.05), torch.full((4,), 1000.0), n_samples=16,
                      inner=model.aabb)
    leave = 1 / d.abs().amax(-1)  # where each ray leaves [-1, 1]^3
    assert torch.allclose(out["t_ends"][:, 7], leave, rtol=1e-5) and (out["t_ends"][:, -1] > 500).all()


def test_gaussians_fit_an_object_folder_as_read_and_start_in_its_box(object_folder, tmp_path):
    from dataclasses import replace

    from priors3d.fields.splat_fit import SplatFitConfig, initial_field, load_splats

    run_cli("splat", "fit", object_folder, "--out", tmp_path / "splats", "--downscale", "2", "--iterations", "2",
            "--eval-every", "0", "--picture-views", "0", "--init-count", "300")
    field, setup = load_splats(tmp_path / "splats")
    assert setup.downscale == 2 and setup.background == (1.0, 1.0, 1.0)
    scene = load_scene(object_folder)
    cfg = SplatFitConfig(scene=object_folder, out=tmp_path / "x", init_count=300)
    start = initial_field(scene, cfg, torch.Generator().manual_seed(0))  # auto: no depth maps, so the box
    assert start.means.shape[0] == 300 and (start.means.abs() <= scene.aabb[1] + 1e-6).all()
    with pytest.raises(ValueError, match="depth maps"):
        initial_field(scene, replace(cfg, init="depth"), torch.Generator())
    with pytest.warns(UserWarning, match="unbounded"):  # a box init among a capture's cameras is said to be poor
        initial_field(replace(scene, unbounded=True), cfg, torch.Generator())


def test_random_backgrounds_recomposite_the_target(tmp_path, monkeypatch):
    """Half-transparent frames of one colour over white: a field that renders exactly ``colour/2 + background/2``
    for whatever background the trainer draws has zero training loss (only if the target is recomposited)."""
    from dataclasses import replace

    from priors3d.fields import fit as fit_module
    from priors3d.fields.fit import FitConfig, fit_nerf
    from priors3d.fields.nerf import NeRFConfig
    from priors3d.runs import RunDir

    scene = load_scene(write_blender(tmp_path / "obj", TINY).parent)
    colour = torch.tensor([0.2, 0.6, 0.4])
    half = lambda v: replace(v, images=(0.5 * colour + 0.5).expand_as(v.images).clone(),  # noqa: E731
                             alpha=torch.full(v.images.shape[:3], 0.5))
    scene = replace(scene, train=half(scene.train), test=half(scene.test))
    seen = []

    def ideal(model, o, d, near, far, background=None, **kw):
        seen.append(background)
        zero = sum(p.sum() for p in model.parameters()) * 0
        return {"rgb": 0.5 * colour + 0.5 * background + zero}

    monkeypatch.setattr(fit_module, "render_rays", ideal)
    cfg = FitConfig(scene=tmp_path / "obj", out=tmp_path / "fit", iterations=3, batch_rays=32, eval_every=0,
                    picture_views=0, progress=False, field=NeRFConfig(resolutions=(4,), density_grid=4))
    fit_nerf(scene, cfg)
    assert all(b.shape == (32, 3) for b in seen) and not torch.equal(seen[0], seen[1])  # a colour per ray and step
    assert all(row["loss"] < 1e-12 for row in RunDir(cfg.out).read_metrics())


def test_supersampled_fits_train_on_jittered_rays_and_render_the_pixel_mean(object_folder, tmp_path, monkeypatch):
    """Training rays land inside their pixels and not only at the centres; a render is the mean of k x k rays."""
    from dataclasses import replace

    from priors3d.fields import fit as fit_module
    from priors3d.fields.render import render_nerf_views

    real, rays = fit_module.render_rays, []

    def spy(model, o, d, *args, **kwargs):
        rays.append((o.clone(), d.clone()))
        return real(model, o, d, *args, **kwargs)

    monkeypatch.setattr(fit_module, "render_rays", spy)
    run_cli("field", "fit", object_folder, "--out", tmp_path / "fit", "--supersample", "2", "--iterations", "2",
            "--eval-every", "0", "--picture-views", "0", "--batch-rays", "64")
    model, setup = load_field(tmp_path / "fit")
    scene = load_scene(object_folder)
    for o, d in rays:  # each ray, seen from the camera it starts at, passes through its pixel
        offset = torch.full((len(o),), torch.inf, dtype=torch.float64)
        for c2w, k in zip(scene.train.c2w.double(), scene.train.intrinsics.double()):
            uv, _ = project_points((o + d).double(), c2w, k)
            mine = (o.double() - c2w[:3, 3]).norm(dim=-1) < 1e-4
            offset = torch.where(mine, (uv - uv.floor() - 0.5).abs().amax(-1), offset)
        assert (offset <= 0.5).all() and (offset > 0.01).any()  # inside a pixel, and not always its centre
    views, single = scene.test.subset([0]), replace(setup, supersample=1)
    shifted = [render_nerf_views(model, replace(views, intrinsics=views.intrinsics - torch.tensor([0, 0, du, dv])),
                                 single)[0]["rgb"] for dv in (-0.25, 0.25) for du in (-0.25, 0.25)]
    mean = render_nerf_views(model, views, setup)[0]["rgb"]
    assert torch.allclose(mean, sum(shifted) / 4, atol=1e-6) and not torch.allclose(mean, shifted[0])


@pytest.mark.parametrize("kind", ["object", "capture"])
def test_field_generate_writes_each_layout(kind, tmp_path):
    sizes = {"object": ["--object.n-train", "3", "--object.n-val", "1", "--object.n-test", "2", "--object.width", "16",
                        "--object.height", "16"],
             "capture": ["--capture.n-frames", "8", "--capture.width", "12", "--capture.height", "16"]}[kind]
    run_cli("field", "generate", tmp_path / kind, "--kind", kind, *sizes)
    scene = load_scene(tmp_path / kind)
    assert len(scene.train) + len(scene.test) == (5 if kind == "object" else 8)
    assert scene.unbounded == (kind == "capture") and (scene.background is not None) == (kind == "object")
