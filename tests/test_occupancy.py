"""Occupancy data, IoU, marching cubes, mesh files and Chamfer distance."""

import numpy as np
import pytest
import torch

from priors3d.pointcloud.data.synthetic import make_shape
from priors3d.pointcloud.mesh import (
    chamfer_l1,
    grid_points,
    load_mesh,
    marching_cubes,
    reconstruct,
    render_meshes,
    sample_mesh,
    save_mesh,
)
from priors3d.pointcloud.occupancy import OccupancyShapes, noisy_subset, sample_queries, volumetric_iou


@pytest.fixture(scope="module")
def occupancy(tmp_path_factory):
    """Two test shapes of each of three categories."""
    root = tmp_path_factory.mktemp("cache")
    return OccupancyShapes(root, "test", per_class=2, categories=["chair", "mug", "airplane"], n_stored=1024,
                           n_iou=512, n_surface=512, progress=False)


# --- labels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("category", ["chair", "mug", "lamp", "shelf"])
def test_labels_agree_with_the_surface_normals(category):
    """Surface samples pushed outwards along their normals are outside, pushed inwards inside."""
    shape = make_shape(category, 3)
    points, normals, _ = shape.sample_surface(400, np.random.default_rng(0))
    step = 2e-3
    assert not shape.contains(points + step * normals).any()
    # a thin part can be thinner than the step from the far side; allow a handful of such samples
    assert shape.contains(points - step * normals).mean() > 0.97


def test_query_labels_are_the_exact_inside_test_and_mix_near_and_far_points():
    shape = make_shape("table", 1)
    surface, _, _ = shape.sample_surface(500, np.random.default_rng(1))
    points, occ = sample_queries(shape, surface, 2000, np.random.default_rng(2), near_fraction=0.5, sigma=0.02)
    assert points.shape == (2000, 3) and occ.shape == (2000,) and occ.dtype == bool
    np.testing.assert_array_equal(occ, shape.contains(points))
    distance = np.linalg.norm(points[:, None] - surface[None], axis=-1).min(1)
    assert 0.4 < (distance < 0.1).mean() < 0.8          # about half near the surface
    assert np.abs(points).max() <= 1.05 + 0.1           # uniform part inside the padded box
    assert 0 < occ.mean() < 0.5


def test_dataset_items_match_the_exact_solid(occupancy):
    item = occupancy[3]
    shape = occupancy.shape(3)
    np.testing.assert_array_equal(item["occ"].bool().numpy(), shape.contains(item["points"].double().numpy()))
    np.testing.assert_array_equal(item["iou_occ"].bool().numpy(), shape.contains(item["iou_points"].double().numpy()))
    assert item["inputs"].shape == (300, 3) and item["points"].shape == (512, 3)
    # inputs are surface samples plus noise of standard deviation 0.005
    offsets = torch.cdist(item["inputs"], occupancy.surface(3)).amin(1)
    assert 0.002 < offsets.median() < 0.012


def test_items_are_reproducible_and_epochs_redraw_them(occupancy):
    first, again = occupancy[1], occupancy[1]
    torch.testing.assert_close(first["inputs"], again["inputs"])
    occupancy.set_epoch(1)
    try:
        assert not torch.equal(occupancy[1]["inputs"], first["inputs"])
    finally:
        occupancy.set_epoch(0)


def test_dataset_is_cached(occupancy):
    assert occupancy.cache_path.is_file()
    reloaded = OccupancyShapes(occupancy.surfaces.root, "test", per_class=2, categories=["chair", "mug", "airplane"],
                               n_stored=1024, n_iou=512, n_surface=512, progress=False)
    np.testing.assert_array_equal(reloaded.data["points"], occupancy.data["points"])


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_queries"):
        OccupancyShapes(tmp_path, "test", per_class=1, n_queries=4096, n_stored=1024, progress=False)
    with pytest.raises(ValueError, match="split"):
        OccupancyShapes(tmp_path, "val", per_class=1, progress=False)


def test_noisy_subset_draws_distinct_rows():
    surface = torch.arange(30.0).view(10, 3)
    chosen = noisy_subset(surface, 6, 0.0, torch.Generator().manual_seed(0))
    assert len({tuple(r) for r in chosen.tolist()}) == 6
    assert all(row in surface.tolist() for row in chosen.tolist())


# --- metrics -------------------------------------------------------------------------------------

def test_volumetric_iou_on_hand_made_cases():
    occ = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
    # probabilities 0.3 (above the 0.2 threshold) and 0.1 (below)
    p_in, p_out = np.log(0.3 / 0.7), np.log(0.1 / 0.9)
    logits = torch.tensor([[p_in, p_out, p_in, p_out, p_out], [p_in, p_out, p_out, p_out, p_out],
                           [p_out] * 5], dtype=torch.float32)
    torch.testing.assert_close(volumetric_iou(logits, occ), torch.tensor([1 / 3, 1.0, 1.0]))
    # at threshold 0.5 the 0.3 predictions are outside: IoU 0 where there is something to find
    torch.testing.assert_close(volumetric_iou(logits, occ, 0.5), torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="threshold"):
        volumetric_iou(logits, occ, 1.5)


def test_chamfer_on_hand_made_cases():
    a = np.zeros((1, 3))
    b = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    # a -> b: 1; b -> a: (1 + 2) / 2
    assert chamfer_l1(a, b) == pytest.approx((1 + 1.5) / 2)
    assert chamfer_l1(b, b) == 0.0
    assert chamfer_l1(a, b) == chamfer_l1(b, a)
    with pytest.raises(ValueError, match="non-empty"):
        chamfer_l1(np.zeros((0, 3)), b)


# --- meshes --------------------------------------------------------------------------------------

def sphere_logits(points: torch.Tensor, radius: float = 0.6) -> torch.Tensor:
    return 20 * (radius - points.norm(dim=-1))


def test_marching_cubes_recovers_a_sphere_with_outward_faces():
    vertices, faces = reconstruct(sphere_logits, resolution=32, threshold=0.5)
    r = np.linalg.norm(vertices, axis=1)
    assert np.abs(r - 0.6).max() < 0.01
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    assert ((normals * triangles.mean(1)).sum(1) > 0).all()
    samples = sample_mesh(vertices, faces, 1000, np.random.default_rng(0))
    assert np.abs(np.linalg.norm(samples, axis=1) - 0.6).max() < 0.01
    # the threshold moves the surface: p >= 0.2 means logit >= log(1/4), a slightly larger sphere
    bigger, _ = reconstruct(sphere_logits, resolution=32, threshold=0.2)
    assert np.linalg.norm(bigger, axis=1).mean() == pytest.approx(0.6 + np.log(4) / 20, abs=3e-3)


def test_marching_cubes_closes_shapes_at_the_box_and_handles_empty_grids():
    full = np.ones((8, 8, 8))
    vertices, faces = marching_cubes(full, 0.0, bound=1.0)
    assert len(faces) > 0 and np.abs(vertices).max() <= 1.0 + 2 / 7 + 1e-9
    empty_v, empty_f = marching_cubes(-full, 0.0)
    assert empty_v.shape == (0, 3) and empty_f.shape == (0, 3)
    with pytest.raises(ValueError, match="cubic grid"):
        marching_cubes(np.zeros((4, 4)), 0.0)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_mesh_is_written_and_loads_back(tmp_path, suffix):
    vertices, faces = reconstruct(sphere_logits, resolution=16, threshold=0.5)
    path = save_mesh(tmp_path / f"sphere{suffix}", vertices, faces)
    loaded_v, loaded_f = load_mesh(path)
    np.testing.assert_allclose(loaded_v, vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded_f, faces)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match=".ply"):
        save_mesh(tmp_path / "sphere.stl", vertices, faces)
    with pytest.raises(FileNotFoundError):
        load_mesh(tmp_path / "missing.ply")


def test_grid_points_span_the_box():
    points = grid_points(5, bound=1.0)
    assert points.shape == (125, 3)
    assert points.min() == -1.0 and points.max() == 1.0
    torch.testing.assert_close(points[1] - points[0], torch.tensor([0.0, 0.0, 0.5]))


def test_render_writes_a_png(tmp_path):
    vertices, faces = reconstruct(sphere_logits, resolution=12, threshold=0.5)
    path = render_meshes(tmp_path / "r.png", [("sphere", vertices, faces, vertices[:50]),
                                              ("empty", np.zeros((0, 3)), np.zeros((0, 3), int), None)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
