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
from priors3d.shaping.clicks import Click
from priors3d.shaping.shape import ShapeConfig, shape_field
from priors3d.shaping.sources import (LabelFree, SegmentConfig, associate, depth_geometry, felzenszwalb,
                                      label_free_source, segment_lookup)

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


def test_consistent_ids_are_shared_across_views_without_chaining():
    # Three views of two surfaces A (voxels 0-9) and B (voxels 10-19): view 0 and view 1 see both with swapped
    # segment ids; view 2 has them merged into one segment, which must not join A and B into one id.
    voxel = torch.cat([torch.arange(20), torch.arange(20), torch.arange(20)]).reshape(3, 4, 5)
    a_b = (torch.arange(20) >= 10).long()
    segments = torch.stack([a_b, 1 - a_b, torch.zeros(20, dtype=torch.long)]).reshape(3, 4, 5)
    ids, votes = associate(segments, voxel, iou=0.5)
    assert ids[0].flatten()[0] == ids[1].flatten()[0] != ids[0].flatten()[-1] == ids[1].flatten()[-1]
    assert len(votes) == 20 and set(votes[:, 0].tolist()) == set(range(20))


def test_segment_lookup_gives_each_pixel_its_segments_click():
    consistent = torch.tensor([[[0, 0, 1, 1, 2]]])
    votes = torch.tensor([[0, 0], [1, 0], [2, 1], [3, 1], [4, 2]])
    source = LabelFree(consistent, consistent, votes, (0.0, 0.0, 0.0, 5.0, 1.0, 1.0), 5)
    points = torch.tensor([[[[4.5, 0.5, 0.5], [0.5, 0.5, 0.5], [2.5, 0.5, 0.5]]]])  # voxels 4, 0, 2
    labels = segment_lookup(source, (None, points, torch.ones(1, 1, 3, dtype=torch.bool)),
                            [Click(0, 0, 0, 3), Click(0, 2, 0, 5)])
    assert labels.tolist() == [[[-1, 3, 5]]]  # segment 2 has no click


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
    first, second = (label_free_source(room.train, geometry, tuple(room.aabb.flatten().tolist()), SegmentConfig())
                     for _ in range(2))
    assert torch.equal(first.segments, second.segments)
    assert torch.equal(first.consistent, second.consistent) and torch.equal(first.votes, second.votes)
    assert int(first.consistent.max()) + 1 < sum(int(s.max()) + 1 for s in first.segments)  # some ids shared


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
