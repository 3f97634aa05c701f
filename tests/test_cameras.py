"""OpenCV lens distortion: the inverse is an inverse, and undistorted images put 3D points where a pinhole would."""

import pytest
import torch

from priors3d.fields.cameras import distort, undistort, undistort_image, undistorted_intrinsics

PHONE = torch.tensor([-0.12, 0.03, -0.004, 0.0012, -0.0008])  # k1 k2 k3 p1 p2, a wide phone lens
INTRINSICS = torch.tensor([52.0, 51.0, 30.4, 40.9], dtype=torch.float64)  # a 60 x 80 portrait frame


def test_undistort_inverts_distort_over_the_frame():
    xy = torch.rand(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.7
    assert (undistort(distort(xy, PHONE), PHONE) - xy).abs().max() < 1e-12
    assert (distort(xy, PHONE) - xy).abs().max() > 0.01  # the lens is not the identity


def test_a_folding_lens_is_refused():
    with pytest.raises(ValueError, match="fold"):
        undistort(torch.tensor([[3.0, 3.0]], dtype=torch.float64), torch.tensor([-0.5, 0.0, 0.0, 0.0, 0.0]))


def test_the_new_pinhole_sees_only_pixels_the_lens_recorded():
    new = undistorted_intrinsics(INTRINSICS, PHONE, 80, 60)
    v, u = torch.meshgrid(torch.arange(80.0) + 0.5, torch.arange(60.0) + 0.5, indexing="ij")
    xy = torch.stack([(u - new[2]) / new[0], (v - new[3]) / new[1]], -1).double()
    raw = distort(xy, PHONE) * INTRINSICS[:2] + INTRINSICS[2:]
    assert raw[..., 0].min() > -0.01 and raw[..., 0].max() < 60.01
    assert raw[..., 1].min() > -0.01 and raw[..., 1].max() < 80.01
    # alpha = 0 keeps as much as it can: the border pixels reach the raw image's edge
    assert raw[..., 0].min() < 1.0 or raw[..., 1].min() < 1.0


@pytest.mark.parametrize("point", [(0.3, -0.2), (-0.45, 0.5), (0.0, 0.0)])
def test_a_3d_point_lands_on_its_pinhole_pixel_after_undistortion(point):
    """A bright dot where the lens images a 3D point (camera coordinates (x, y, 1)); after undistortion its centroid
    lies within 0.5 px of the point's projection through the new pinhole."""
    ideal = torch.tensor(point, dtype=torch.float64)
    raw = distort(ideal, PHONE) * INTRINSICS[:2] + INTRINSICS[2:]
    v, u = torch.meshgrid(torch.arange(80.0) + 0.5, torch.arange(60.0) + 0.5, indexing="ij")
    dot = torch.exp(-((u - raw[0]) ** 2 + (v - raw[1]) ** 2) / (2 * 1.2**2))
    new = undistorted_intrinsics(INTRINSICS, PHONE, 80, 60)
    out = undistort_image(dot[..., None], INTRINSICS, PHONE, new)[..., 0].double()
    weights = torch.where(out > 0.05, out, 0.0)
    centroid = torch.stack([(weights * u).sum(), (weights * v).sum()]) / weights.sum()
    expected = ideal * new[:2] + new[2:]
    assert (centroid - expected).norm() < 0.5


def test_labels_are_resampled_without_mixing():
    labels = torch.arange(80 * 60).reshape(80, 60, 1) % 7
    new = undistorted_intrinsics(INTRINSICS, PHONE, 80, 60)
    out = undistort_image(labels, INTRINSICS, PHONE, new, mode="nearest")
    assert out.dtype == labels.dtype and set(out.unique().tolist()) <= set(range(7))


def test_distort_follows_opencvs_model():
    """One point worked by hand from OpenCV's documented model: r2 = 0.13, radial = 0.984898212."""
    out = distort(torch.tensor([0.3, -0.2], dtype=torch.float64), PHONE)
    assert torch.allclose(out, torch.tensor([0.2950774636, -0.1966316424], dtype=torch.float64), atol=1e-10)
