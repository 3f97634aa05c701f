"""Label-free pair sources (segments, view-consistent segments, segment lookup) and label-free shaping end to end."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from priors3d import cli
from priors3d.commands import shaping as commands
from priors3d.fields.fit import FitConfig, fit_nerf, load_field
from priors3d.fields.formats import write_nerfstudio
from priors3d.fields.nerf import NeRFConfig
from priors3d.fields.render import render_nerf_views
from priors3d.fields.scenes import RoomConfig, generate_room
from priors3d.fields.views import Views
from priors3d.shaping.clicks import Click
from priors3d.shaping.shape import ShapeConfig, shape_field
from priors3d.shaping.sources import (LabelFree, SegmentConfig, depth_geometry, descriptor_lookup, felzenszwalb,
                                      graph_segments, label_free_source, segment_lookup)

SMALL = NeRFConfig(resolutions=(8, 16), features=2, hidden=16, density_grid=8)


def blocks(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 24x24 image of three colour blocks with a little seeded noise, and its block ids."""
    truth = np.zeros((24, 24), dtype=np.int64)
    truth[:, 12:] = 1
    truth[16:, :] = 2
    colours = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]])
    noise = 0.02 * np.random.default_rng(seed).standard_normal((24, 24, 3))
    return colours[truth] + noise, truth


def test_segments_follow_colour_blocks_and_are_deterministic():
    image, truth = blocks()
    ids = felzenszwalb(image, scale=4.0, min_size=10)
    assert len(np.unique(ids)) == 3
    pairs = {(int(a), int(b)) for a, b in zip(ids.ravel(), truth.ravel())}
    assert len(pairs) == 3  # one segment per block, every pixel in its block's
    assert np.array_equal(ids, felzenszwalb(image, scale=4.0, min_size=10))
    valid = np.ones((24, 24), bool)
    valid[:, :3] = False
    assert (felzenszwalb(image, 4.0, 10, valid=valid)[~valid] == -1).all()
    cut = np.ones((24, 24), bool)
    cut[:, 11:13] = False  # an invalid strip down the middle: no segment reaches across it
    ids = felzenszwalb(image, 4.0, 10, valid=cut)
    assert not set(ids[:, :11].ravel()) & set(ids[:, 13:].ravel())


def test_graph_segments_cut_heavy_edges_and_absorb_small_components():
    # a chain 0-1-2-3 | 4-5-6-7 with light edges inside each half and a heavy one between; node 8 hangs off 7
    a, b = np.array([0, 1, 2, 3, 4, 5, 6, 7]), np.array([1, 2, 3, 4, 5, 6, 7, 8])
    weight = np.array([0.01, 0.02, 0.01, 5.0, 0.01, 0.02, 0.01, 3.0])
    assert graph_segments(9, a, b, weight, scale=0.5, min_size=1).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert graph_segments(9, a, b, weight, scale=0.5, min_size=2).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert len(set(graph_segments(9, a, b, weight, scale=100.0, min_size=1).tolist())) == 1  # large k: one segment


def strips(first, second, camera, colours=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), n=60):
    """One view of two flat strips, rows ``0..n/2-1`` on ``first(t, y)`` and the rest on ``second(t, y)`` (``t`` in
    [0, 1) along a strip, ``y`` in [-1, 1] across), coloured ``colours``, seen from ``camera``: views, geometry."""
    t = torch.arange(n // 2, dtype=torch.float64) / (n // 2)
    tt, yy = torch.meshgrid(t, torch.linspace(-1, 1, n, dtype=torch.float64), indexing="ij")
    points = torch.cat([first(tt, yy), second(tt, yy)])[None]
    images = torch.cat([torch.tensor(c).expand(n // 2, n, 3) for c in colours])[None].float()
    c2w = torch.eye(4)[None]
    c2w[0, :3, 3] = torch.tensor(camera)
    views = Views(images=images, c2w=c2w, intrinsics=torch.tensor([[n, n, n / 2, n / 2]]), names=["strips"])
    return views, (points.norm(dim=-1), points, torch.ones(1, n, n, dtype=torch.bool))


def joined(*parts):
    """Views and geometry of several ``strips`` side by side, as views of one scene."""
    views = Views(images=torch.cat([v.images for v, _ in parts]), c2w=torch.cat([v.c2w for v, _ in parts]),
                  intrinsics=torch.cat([v.intrinsics for v, _ in parts]), names=[f"v{i}" for i in range(len(parts))])
    return views, tuple(torch.cat([g[i] for _, g in parts]) for i in range(3))


BOX = (-1.2, -1.2, -0.2, 1.2, 1.2, 1.2)
COARSE = SegmentConfig(voxels=24, surface_min_size=40)  # 10 cm voxels, several samples in each; no crease slivers


def consistent_ids(views, geometry):
    return label_free_source(views, geometry, BOX, COARSE).consistent


def test_surface_segments_part_concave_creases_and_hold_convex_ones():
    # the same 20-degree fold seen from above, as a ridge (convex: one object) and as a valley (concave: a crease
    # where two things meet); grey everywhere, so the fold's direction alone decides
    slope = float(np.tan(np.radians(20)))
    for sign, expected in ((1, 1), (-1, 2)):
        rise = lambda t, y: torch.stack([0.5 * t, y, 0.3 + sign * slope * 0.5 * t], -1)  # noqa: E731
        fall = lambda t, y: torch.stack([0.5 + 0.5 * t, y, 0.3 + sign * slope * 0.5 * (1 - t)], -1)  # noqa: E731
        assert len(consistent_ids(*strips(rise, fall, (0.5, 0.0, 2.0))).unique()) == expected


def test_surface_segments_follow_colour_and_name_a_surface_alike_in_every_view():
    left = lambda t, y: torch.stack([0.5 * t, y, torch.zeros_like(t)], -1)  # noqa: E731
    right = lambda t, y: torch.stack([0.5 + 0.5 * t, y, torch.zeros_like(t)], -1)  # noqa: E731
    grey = strips(left, right, (0.5, 0.0, 2.0))
    assert len(consistent_ids(*grey).unique()) == 1
    red_blue = strips(left, right, (0.5, 0.0, 2.0), ((0.8, 0.2, 0.2), (0.2, 0.2, 0.8)))
    ids = consistent_ids(*red_blue)[0]
    assert len(ids.unique()) == 2 and len(ids[:30].unique()) == 1 and len(ids[30:].unique()) == 1
    # a second camera sees the same floor, listed in the other order: every 3D point keeps its id
    flipped = strips(right, left, (0.2, 0.5, 1.5), ((0.2, 0.2, 0.8), (0.8, 0.2, 0.2)))
    both = consistent_ids(*joined(red_blue, flipped))
    assert torch.equal(both[0, :30], both[1, 30:]) and torch.equal(both[0, 30:], both[1, :30])


def test_descriptors_make_like_surfaces_alike_and_lookup_follows_them():
    # two views of one floor, each with a wall (x = +1 and x = -1): the walls are two segments whose descriptors
    # are nearer each other than the floor's, though the first wall has the floor's colour and the second not, so
    # a click on one wall labels both
    wall = lambda side: (lambda t, y: torch.stack([side * torch.ones_like(t), y, 1 - t], -1))  # noqa: E731
    floor = lambda side: (lambda t, y: torch.stack([side * (1 - t), y, torch.zeros_like(t)], -1))  # noqa: E731
    views, geometry = joined(strips(wall(1), floor(1), (-0.8, 0.0, 1.0), ((0.4, 0.4, 0.4), (0.4, 0.4, 0.4))),
                             strips(wall(-1), floor(-1), (0.8, 0.0, 1.0), ((0.6, 0.7, 0.8), (0.4, 0.4, 0.4))))
    source = label_free_source(views, geometry, BOX, COARSE)
    first, second, ground = (int(source.consistent[v, r, 30]) for v, r in ((0, 10), (1, 10), (0, 50)))
    assert len({first, second, ground}) == 3
    unit = torch.nn.functional.normalize(source.descriptors, dim=-1)
    assert float(unit[first] @ unit[second]) > float(unit[first] @ unit[ground]) + 0.5
    labels = descriptor_lookup(source, geometry, [Click(0, 30, 10, 4), Click(0, 30, 50, 7)])
    assert (labels[1, :25] == 4).all() and (labels[:, 35:] == 7).all()
    colour_only = label_free_source(views, geometry, BOX, replace(COARSE, descriptor_weights=(0, 0, 0, 0, 1)))
    assert (colour_only.descriptors[:, :7] == 0).all() and torch.equal(colour_only.descriptors[:, 7:],
                                                                      source.descriptors[:, 7:] * 2)


def test_segment_lookup_gives_each_pixel_its_segments_click():
    consistent = torch.tensor([[[0, 0, 1, 1, 2]]])
    votes = torch.tensor([[0, 0], [1, 0], [2, 1], [3, 1], [4, 2]])
    source = LabelFree(consistent, consistent, votes, torch.eye(3), (0.0, 0.0, 0.0, 5.0, 1.0, 1.0), 5)
    points = torch.tensor([[[[4.5, 0.5, 0.5], [0.5, 0.5, 0.5], [2.5, 0.5, 0.5]]]])  # voxels 4, 0, 2
    labels = segment_lookup(source, (None, points, torch.ones(1, 1, 3, dtype=torch.bool)),
                            [Click(0, 0, 0, 3), Click(0, 2, 0, 5)])
    assert labels.tolist() == [[[-1, 3, 5]]]  # segment 2 has no click
    features = source.features(torch.tensor([-1, 0, 2, 7]))  # 7: a part split off by corrupt_masks
    assert torch.equal(features, torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]))


@pytest.fixture(scope="module")
def room():
    return generate_room(RoomConfig(width=36, height=36, n_views=6, test_every=3, light_samples=1,
                                    overview_fov_deg=0.0))


def test_depth_geometry_lifts_to_the_scene_surface(room):
    views = room.train
    depth, points, valid = depth_geometry(views, views.depth)
    # back into the first camera: the lifted points' z-depth is the map's
    camera = torch.linalg.inv(views.c2w[0])
    z = -(points[0] @ camera[:3, :3].T + camera[:3, 3])[..., 2]
    assert valid.all() and torch.allclose(z, views.depth[0], atol=1e-4)


def test_label_free_shaping_never_reads_label_maps(room, tmp_path):
    fit = tmp_path / "fit"
    fit_nerf(room, FitConfig(scene=Path("room"), out=fit, iterations=20, batch_rays=64, n_samples=8, n_proposal=8,
                             eval_every=0, picture_views=0, progress=False, field=SMALL))
    generator = torch.Generator().manual_seed(1)
    scrambled = replace(room.train, semantic=torch.randint(0, 5, room.train.semantic.shape, generator=generator),
                        instance=torch.randint(0, 9, room.train.instance.shape, generator=generator))
    removed = replace(room.train, semantic=None, instance=None)
    states = []
    for name, train in (("scrambled", scrambled), ("removed", removed)):
        model, setup = load_field(fit)
        before = render_nerf_views(model, room.test, setup)
        summary = shape_field(model, setup, replace(room, train=train), ShapeConfig(
            run=fit, out=tmp_path / name, iterations=4, jacobian_rays=32, views_per_step=2, progress=False))
        states.append(model.state_dict())
        after = render_nerf_views(model, room.test, setup)
        assert all(torch.equal(b["rgb"], a["rgb"]) for b, a in zip(before, after))  # the head keeps appearance
        assert summary["psnr_before"] == summary["psnr_after"]
    assert states[0].keys() == states[1].keys() and any(k.startswith("shaping.") for k in states[0])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_label_free_sources_of_the_room_are_deterministic(room):  # the room has depth maps: no field needed
    geometry = depth_geometry(room.train, room.train.depth)
    coarse = SegmentConfig(voxels=40)  # the fixture's 4 views of 36 x 36 pixels sample the room sparsely
    first, second = (label_free_source(room.train, geometry, tuple(room.aabb.flatten().tolist()), coarse)
                     for _ in range(2))
    assert torch.equal(first.segments, second.segments) and torch.equal(first.descriptors, second.descriptors)
    assert torch.equal(first.consistent, second.consistent) and torch.equal(first.votes, second.votes)
    seen_in = [int((first.consistent == i).flatten(1).any(1).sum()) for i in range(int(first.consistent.max()) + 1)]
    assert max(seen_in) > 1  # ids shared across views


def test_a_folder_without_label_maps_fits_shapes_and_selects(room, tmp_path):
    folder = tmp_path / "capture"
    write_nerfstudio(replace(room, train=replace(room.train, semantic=None, instance=None, depth=None),
                             test=replace(room.test, semantic=None, instance=None, depth=None)), folder)
    assert not (folder / "semantic_class").exists() and not (folder / "depth").exists()
    runs = tmp_path / "runs"
    small = ["--field.resolutions", "8", "16", "--field.features", "2", "--field.hidden", "16",
             "--field.density-grid", "8"]
    cli.run_command("field", "fit", [str(folder), "--out", str(runs / "fit"), "--iterations", "20", "--batch-rays",
                                     "64", "--eval-every", "0", "--picture-views", "0", "--no-progress", *small])
    summary = cli.run_command("field", "shape", [str(runs / "fit"), "--out", str(runs / "shape"), "--iterations",
                                                 "3", "--no-progress"])  # default pairs: label-free
    assert summary["step"] == 3
    selected = cli.run_command("field", "select", [str(runs / "shape")])  # default click 0/32/32
    assert Path(selected["picture"]).is_file()


def test_a_missing_oracle_source_is_reported_before_loading(tmp_path, monkeypatch):
    folder = tmp_path / "capture"
    folder.mkdir()
    monkeypatch.setattr(commands, "load_field", lambda run, command: (None, replace_setup(folder)))
    monkeypatch.setattr(commands, "fitted_scene", lambda *a, **k: pytest.fail("the scene was loaded"))
    with pytest.raises(ValueError, match="semantic_class"):
        commands.shape(ShapeConfig(run=tmp_path / "fit", pairs="semantic"))
    with pytest.raises(ValueError, match="features"):
        commands.shape(ShapeConfig(run=tmp_path / "fit", pairs="features"))


def replace_setup(folder: Path):
    """A stand-in for a fitted run's setup: only the scene path matters before loading."""
    from priors3d.fields.render import FieldSetup

    return FieldSetup(scene=str(folder), aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), near=0.05, far=4.0, n_samples=8,
                      n_proposal=0)
