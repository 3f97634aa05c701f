"""Primitives and unions: exact areas, area-uniform sampling, and surfaces that bound ``contains``."""

import math

import numpy as np
import pytest
import torch
import trimesh

from priors3d.pointcloud.data.primitives import (
    Box,
    Ellipsoid,
    Frustum,
    Part,
    Shape,
    Torus,
    cylinder,
    frame_from_z,
    rotation_about,
)

PRIMITIVES = [
    Box((0.5, 0.2, 1.0)),
    cylinder(0.3, 0.7),
    Frustum(0.6, 0.15, 0.4),
    Frustum(0.5, 0.0, 0.5),  # a cone
    Ellipsoid((0.3, 0.8, 0.5)),
    Torus(0.6, 0.15),
]


def push_test(points, normals, contains, delta):
    """Fractions of samples that are outside after a push along the normal and inside after a pull."""
    outside = ~contains(points + delta * normals)
    inside = contains(points - delta * normals)
    return outside.mean(), inside.mean()


@pytest.mark.parametrize("primitive", PRIMITIVES, ids=lambda p: type(p).__name__)
def test_samples_bound_the_solid(primitive):
    points, normals = primitive.sample(3000, np.random.default_rng(0))
    assert points.shape == normals.shape == (3000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-12)
    outside, inside = push_test(points, normals, primitive.contains, 1e-4)
    assert outside == 1.0
    assert inside >= 0.999  # a pull from within 1e-4 of a rim may leave through the neighbouring face


@pytest.mark.parametrize(("primitive", "mesh"), [
    (Box((0.5, 0.2, 1.0)), trimesh.creation.box(extents=(1.0, 0.4, 2.0))),
    (cylinder(0.3, 0.7), trimesh.creation.cylinder(radius=0.3, height=1.4, sections=512)),
    (Frustum(0.5, 0.0, 0.5), trimesh.creation.cone(radius=0.5, height=1.0, sections=512)),
    (Ellipsoid((0.3, 0.8, 0.5)), trimesh.creation.icosphere(subdivisions=6).apply_scale((0.3, 0.8, 0.5))),
    (Torus(0.6, 0.15), trimesh.creation.torus(0.6, 0.15, major_sections=256, minor_sections=128)),
])
def test_area_matches_a_fine_mesh(primitive, mesh):
    assert primitive.area == pytest.approx(mesh.area, rel=2e-3)


def test_box_faces_get_points_in_proportion_to_their_area():
    box = Box((1.0, 0.5, 0.1))
    points, normals = box.sample(20000, np.random.default_rng(1))
    axis = np.abs(normals).argmax(axis=1)
    fractions = np.bincount(axis, minlength=3) / len(axis)
    expected = box.face_areas / box.face_areas.sum()
    np.testing.assert_allclose(fractions, expected, atol=0.015)
    # Within a face the points are uniform: quadrants of the largest face hold a quarter each.
    top = points[axis == 2]
    quadrants = np.bincount((top[:, 0] > 0) * 2 + (top[:, 1] > 0), minlength=4) / len(top)
    np.testing.assert_allclose(quadrants, 0.25, atol=0.02)


def test_cone_side_density_grows_with_radius():
    cone = Frustum(1.0, 0.0, 0.5)  # radius 1 at z = -0.5, apex at z = 0.5
    points, normals = cone.sample(20000, np.random.default_rng(2))
    side = normals[:, 2] > -0.5
    assert side.mean() == pytest.approx(cone.part_areas[0] / cone.area, abs=0.015)
    # Area below height z is proportional to r0^2 - r(z)^2: the median sits where r = 1/sqrt(2).
    median_radius = np.median(np.hypot(points[side, 0], points[side, 1]))
    assert median_radius == pytest.approx(1 / math.sqrt(2), abs=0.02)


def test_torus_outer_half_gets_more_points():
    torus = Torus(1.0, 0.4)
    points, _ = torus.sample(20000, np.random.default_rng(3))
    outer = (np.hypot(points[:, 0], points[:, 1]) > 1.0).mean()
    assert outer == pytest.approx((math.pi * 1.0 + 2 * 0.4) / (2 * math.pi * 1.0), abs=0.015)


def test_ellipsoid_sampling_is_area_uniform():
    ellipsoid = Ellipsoid((1.0, 1.0, 3.0))
    points, _ = ellipsoid.sample(20000, np.random.default_rng(4))
    mesh = trimesh.creation.icosphere(subdivisions=5).apply_scale((1.0, 1.0, 3.0))
    caps = np.abs(mesh.triangles_center[:, 2]) > 2.0
    expected = mesh.area_faces[caps].sum() / mesh.area
    assert (np.abs(points[:, 2]) > 2.0).mean() == pytest.approx(expected, abs=0.015)


def test_frames_are_rotations_taking_z_to_the_direction():
    for direction in [(0, 0, 1), (1, 0, 0), (0.3, -2.0, 0.5), (0, -1, 0)]:
        R = frame_from_z(direction)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(np.array([0, 0, 1.0]) @ R, np.asarray(direction) / np.linalg.norm(direction))
    np.testing.assert_allclose(np.array([1.0, 0, 0]) @ rotation_about("z", math.pi / 2), [0, 1, 0], atol=1e-12)


def two_boxes(offset=1.0, rotation=np.eye(3)):
    """Cubes [-1, 1]^3 and [-1 + offset, 1 + offset] x [-1, 1]^2, both turned by ``rotation``."""
    cube = Box((1.0, 1.0, 1.0))
    return Shape((Part(cube, 0, rotation), Part(cube, 1, rotation, np.array([offset, 0, 0]) @ rotation)))


@pytest.mark.parametrize("offset", [1.0, 2.0], ids=["overlapping", "touching"])
@pytest.mark.parametrize("turned", [False, True], ids=["axis-aligned", "rotated"])
def test_union_samples_lie_on_the_union_boundary_once(offset, turned):
    # Union: the box [-1, 1 + offset] x [-1, 1]^2. Overlapping cubes share flush side faces over
    # [-1 + offset, 1]; touching cubes press their faces together at x = 1, inside the union.
    # Rotated, the shared faces only agree up to rounding.
    rotation = rotation_about("x", 0.3) @ rotation_about("z", 1.1) if turned else np.eye(3)
    shape = two_boxes(offset, rotation)
    points, normals, parts = shape.sample_surface(6000, np.random.default_rng(5))
    local = points @ rotation.T
    interior = np.all(np.abs(local - [offset / 2, 0, 0]) < [1 + offset / 2 - 1e-9, 1 - 1e-9, 1 - 1e-9], axis=1)
    assert not interior.any()
    outside, inside = push_test(points, normals, shape.contains, 1e-4)
    assert outside == 1.0 and inside >= 0.999
    # Uniform on the union's surface: the first cube owns x <= 1 (flush faces go to the part listed first).
    total = 2 * (4 + 2 * (2 + offset) * 2)
    first = 4 + 4 * 2 * 2
    assert (parts == 0).mean() == pytest.approx(first / total, abs=0.025)


def test_rotated_parts_and_normalisation_keep_samples_on_the_boundary():
    rotation = rotation_about("x", 0.7) @ rotation_about("z", -0.4)
    shape = Shape((
        Part(cylinder(0.2, 1.0), 3, frame_from_z((1, 1, 0)), np.array([0.0, 0.0, 0.5])),
        Part(Torus(0.5, 0.1), 4, rotation, np.array([0.3, 0.0, 0.0])),
        Part(Ellipsoid((0.4, 0.3, 0.2)), 5, rotation.T, np.array([-0.5, 0.2, 0.1])),
    )).normalized(np.random.default_rng(6))
    points, normals, parts = shape.sample_surface(4000, np.random.default_rng(7))
    assert np.linalg.norm(points, axis=1).max() <= 1.01
    assert set(np.unique(parts)) == {3, 4, 5}
    outside, inside = push_test(points, normals, shape.contains, 1e-4)
    assert outside >= 0.998 and inside >= 0.998


def test_contains_takes_numpy_and_torch_of_any_batch_shape():
    shape = two_boxes()
    queries = np.array([[[0.0, 0, 0], [1.9, 0.9, -0.9]], [[2.1, 0, 0], [-1.5, 0, 0]]])
    expected = np.array([[True, True], [False, False]])
    np.testing.assert_array_equal(shape.contains(queries), expected)
    result = shape.contains(torch.tensor(queries, dtype=torch.float32))
    assert isinstance(result, torch.Tensor) and result.dtype == torch.bool
    np.testing.assert_array_equal(result.numpy(), expected)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        shape.contains(np.zeros((4, 2)))


def test_sampling_is_deterministic_from_the_seed():
    shape = two_boxes()
    a = shape.sample_surface(100, 11)
    b = shape.sample_surface(100, np.random.default_rng(11))
    c = shape.sample_surface(100, 12)
    d = shape.sample_surface(100, torch.Generator().manual_seed(3))
    e = shape.sample_surface(100, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(d[0], e[0])
    assert not np.allclose(a[0], c[0])


@pytest.mark.parametrize("bad", [lambda: Box((1.0, -1.0, 1.0)), lambda: Torus(0.1, 0.2),
                                 lambda: Frustum(0.0, 0.0, 1.0), lambda: Ellipsoid((1.0, 1.0))])
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        bad()
