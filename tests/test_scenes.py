import math

import pytest
import torch

from priors3d.fields.scenes import CLASS_NAMES, RoomConfig, build_room, generate_room, room_views
from priors3d.fields.scenes.primitives import BOX, CYLINDER, SPHERE, Grouped, ScenePart, Primitives, intersect, to_local
from priors3d.fields.scenes.raycast import cast, render_views

SMALL = dict(width=32, height=24, n_views=12, test_every=4, light_samples=1, overview_fov_deg=0.0)


@pytest.fixture(scope="module")
def room():
    return build_room(RoomConfig(seed=5, **SMALL))


@pytest.fixture(scope="module")
def views(room):
    return room_views(room)


def unproject(views, i):
    """World points [N, 3] of view i's pixels with depth, and their pixel (row, col) indices."""
    h, w = views.hw
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    fx, fy, cx, cy = views.intrinsics[i].tolist()
    z = views.depth[i]
    cam = torch.stack([(u - cx) / fx * z, -(v - cy) / fy * z, -z], -1)
    world = cam @ views.c2w[i, :3, :3].T + views.c2w[i, :3, 3]
    keep = z > 0
    return world[keep], keep.nonzero()


def project(points, c2w, intrinsics):
    """Pixel coordinates (u, v) and z-depth of world points [N, 3] in one OpenGL camera."""
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    z = -cam[:, 2]
    fx, fy, cx, cy = intrinsics.tolist()
    return cx + fx * cam[:, 0] / z, cy - fy * cam[:, 1] / z, z


def inside(kind, local, size):
    if kind == BOX:
        return (local.abs() <= size).all(-1)
    if kind == SPHERE:
        return local.norm(dim=-1) <= size[0]
    return (local[:, :2].norm(dim=-1) <= size[0]) & (local[:, 2].abs() <= size[2])


@pytest.mark.parametrize("kind", [BOX, SPHERE, CYLINDER])
def test_intersections_match_ray_marching(kind):
    gen = torch.Generator().manual_seed(kind)
    part = ScenePart(kind, (0.1, -0.2, 0.3), (0.4, 0.25, 0.3) if kind == BOX else (0.3, 0.3, 0.35), 0, 0, (1, 1, 1),
                yaw=0.7)
    prims = Primitives.stack([part])
    origins = torch.nn.functional.normalize(torch.randn(400, 3, generator=gen), dim=-1) * 2.0
    targets = torch.rand(400, 3, generator=gen) * 0.8 - 0.4 + torch.tensor(part.center)
    dirs = torch.nn.functional.normalize(targets - origins, dim=-1)
    t = intersect(prims, origins, dirs)[:, 0]
    steps = torch.linspace(0, 4, 8001)
    points = origins[:, None] + steps[None, :, None] * dirs[:, None]
    local = to_local(prims, points.reshape(-1, 3), torch.zeros(points.shape[0] * points.shape[1], dtype=torch.long))
    hit = inside(kind, local, prims.size[0]).reshape(400, -1)
    first = torch.where(hit.any(1), steps[hit.float().argmax(1)], torch.inf)
    assert (torch.isfinite(t) == torch.isfinite(first)).float().mean() > 0.99  # grazing rays may differ
    both = torch.isfinite(t) & torch.isfinite(first)
    assert both.sum() > 100
    assert (t[both] - first[both]).abs().max() < 1e-3


def test_culled_casting_equals_brute_force(room):
    origins = room.c2w[:, None, :3, 3].expand(-1, 50, -1).reshape(-1, 3)
    dirs = torch.nn.functional.normalize(torch.randn(origins.shape[0], 3, generator=torch.Generator().manual_seed(0)),
                                         dim=-1)
    brute_t, brute_i = intersect(room.world.prims, origins, dirs).min(-1)
    t, index = cast(room.world, origins, dirs)
    assert torch.equal(index, brute_i)
    assert torch.allclose(t, brute_t)
    # Any-hit with a distance cap, as the shadow rays use it.
    cap = brute_t * 0.5 + 0.1
    _, blocked = Grouped(room.world.prims).nearest(origins, dirs, t_max=cap)
    assert torch.equal(blocked >= 0, brute_t < cap)


def test_depth_is_z_depth_on_known_surfaces(room, views):
    for i in range(len(views)):
        points, pix = unproject(views, i)
        cls = views.semantic[i][pix[:, 0], pix[:, 1]]
        floor = points[cls == CLASS_NAMES.index("floor")]
        assert floor.shape[0] > 0 and floor[:, 2].abs().max() < 1e-3
        wall = points[cls == CLASS_NAMES.index("wall")]
        on_wall = torch.minimum((wall[:, 0].abs() - 2.0).abs(), (wall[:, 1].abs() - 2.0).abs())
        assert on_wall.max() < 1e-3


def test_labels_and_depth_agree_across_views(room, views):
    exact_ok, exact_n, pixel_ok, pixel_n = 0, 0, 0, 0
    for i in range(len(views)):
        j = (i + 1) % len(views)
        points, pix = unproject(views, i)
        inst = views.instance[i][pix[:, 0], pix[:, 1]]
        # Exact: cast from camera j straight at each point; it is either occluded or hit, same instance.
        origin = views.c2w[j, :3, 3].expand_as(points)
        dist = (points - origin).norm(dim=-1)
        t, index = cast(room.world, origin, (points - origin) / dist[:, None])
        visible = t > dist - 1e-3
        exact_n += int(visible.sum())
        exact_ok += int(((t - dist).abs() < 1e-3)[visible].logical_and(
            room.world.prims.instance[index[visible]] == inst[visible]).sum())
        # Pixel maps: the re-projected point lands on a pixel of the same instance, at the same depth.
        u, v, z = project(points, views.c2w[j], views.intrinsics[j])
        h, w = views.hw
        inb = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        r, c = v[inb].long(), u[inb].long()
        seen = (views.depth[j][r, c] - z[inb]).abs() < 0.03 * z[inb]
        pixel_n += int(seen.sum())
        pixel_ok += int((views.instance[j][r, c] == inst[inb])[seen].sum())
    assert exact_n > 0.3 * views.depth.numel() and pixel_n > 0.2 * views.depth.numel()
    assert exact_ok / exact_n > 0.995
    assert pixel_ok / pixel_n > 0.97


def test_seed_determines_the_scene():
    cfg = RoomConfig(seed=2, width=16, height=12, n_views=4, test_every=2, light_samples=1)
    a, b = generate_room(cfg), generate_room(cfg)
    c = generate_room(RoomConfig(**{**cfg.__dict__, "seed": 3}))
    for name in ("images", "depth", "semantic", "instance", "c2w"):
        assert torch.equal(getattr(a.train, name), getattr(b.train, name))
    assert not torch.equal(a.train.images, c.train.images)
    # two trajectory views train, two test, and the four overview cameras always train
    assert len(a.train) == 2 + 4 and len(a.test) == 2 and a.test.names == ["frame_0001", "frame_0003"]


def test_room_has_many_classes_and_instances(views, room):
    classes = views.semantic.unique()
    assert len(classes) >= 7 and classes.min() >= 0  # a closed room: no void
    assert len(views.instance.unique()) >= 12
    assert views.images.min() >= 0 and views.images.max() <= 1
    # An instance never spans two classes.
    for i in views.instance.unique():
        assert len(views.semantic[views.instance == i].unique()) == 1
        assert room.instance_classes[i] == int(views.semantic[views.instance == i][0])
    # Instances of one class get different colours (chairs).
    chairs = [i for i, c in enumerate(room.instance_classes) if CLASS_NAMES[c] == "chair"]
    colours = {tuple(room.world.prims.color[room.world.prims.instance == i][0].tolist()) for i in chairs}
    assert len(chairs) >= 2 and len(colours) == len(chairs)


def test_shadows_only_darken_and_emitters_are_unshaded(room):
    cfg = room.config
    lit = render_views(room.world, room.c2w, room.intrinsics, cfg.height, cfg.width)
    unshadowed = build_room(RoomConfig(**{**cfg.__dict__, "light_samples": 0}))
    flat = render_views(unshadowed.world, room.c2w, room.intrinsics, cfg.height, cfg.width)
    assert (lit["images"] <= flat["images"] + 1e-6).all()
    assert (lit["images"] < flat["images"] - 0.05).any()
    window = lit["semantic"] == CLASS_NAMES.index("window")
    assert window.any()
    assert torch.allclose(lit["images"][window], torch.tensor([0.75, 0.88, 1.0]))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="n_views"):
        build_room(RoomConfig(n_views=1))
    with pytest.raises(ValueError, match="c2w"):
        render_views(build_room(RoomConfig(**SMALL)).world, torch.eye(4), torch.ones(1, 4), 4, 4)


def test_bounds_contain_the_cameras_and_surfaces(room, views):
    lo, hi = room.aabb
    assert ((room.c2w[:, :3, 3] > lo) & (room.c2w[:, :3, 3] < hi)).all()
    points, _ = unproject(views, 0)
    assert ((points > lo) & (points < hi)).all()
    assert room.far >= (hi - lo).norm() - 0.2 and 0 < room.near < 0.3
    assert math.isclose(views.intrinsics[0, 2].item(), views.hw[1] / 2)


def test_generate_command_writes_a_loadable_folder(tmp_path):
    import tyro

    from priors3d.commands.fit import GenerateConfig, generate
    from priors3d.fields.formats import load_scene

    cfg = tyro.cli(GenerateConfig, args=[str(tmp_path / "room"), "--seed", "4", "--width", "12", "--height", "10",
                                          "--n-views", "6", "--test-every", "3", "--light-samples", "1",
                                          "--no-progress"])
    assert cfg.room.seed == 4 and cfg.room.n_views == 6
    generate(cfg)
    assert (tmp_path / "room" / "contact_sheet.png").stat().st_size > 0
    scene = load_scene(tmp_path / "room")
    expected = generate_room(cfg.room)
    assert torch.equal(scene.test.semantic, expected.test.semantic) and len(scene.train) == 4 + 4
    assert torch.allclose(scene.train.intrinsics, expected.train.intrinsics)  # per-frame focal lengths kept


def test_one_overview_camera_sees_every_class():
    """The default room has a training view holding a click for every class (one-click propagation needs it)."""
    scene = generate_room(RoomConfig(seed=0, n_views=2, test_every=2, light_samples=0))
    overview = scene.train.semantic[-4:]
    present = set(scene.train.semantic[scene.train.semantic >= 0].tolist())
    assert len(present) == len(CLASS_NAMES)
    assert max(len(set(v[v >= 0].tolist())) for v in overview) == len(CLASS_NAMES)
