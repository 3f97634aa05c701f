import math

import pytest
import torch

from priors3d import so3


def _is_rotation(r: torch.Tensor, tol: float) -> bool:
    eye = torch.eye(3, dtype=r.dtype).expand_as(r)
    return bool(torch.allclose(r.transpose(-1, -2) @ r, eye, atol=tol) and
                torch.allclose(torch.linalg.det(r), torch.ones(r.shape[0], dtype=r.dtype), atol=tol))


def test_random_rotations_are_rotations_and_seeded():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    r1 = so3.random_rotation(64, g1, torch.float64)
    assert _is_rotation(r1, 1e-12)
    assert torch.equal(r1, so3.random_rotation(64, g2, torch.float64))
    assert not torch.equal(r1, so3.random_rotation(64, g2, torch.float64))


def test_random_rotations_are_uniform():
    # Under the Haar measure E[R] = 0 and E[R_ij^2] = 1/3; 20000 samples give a std of the mean ~0.004.
    r = so3.random_rotation(20000, torch.Generator().manual_seed(0), torch.float64)
    assert r.mean(0).abs().max() < 0.02
    assert (r.pow(2).mean(0) - 1 / 3).abs().max() < 0.02
    # The rotation angle has density (1 - cos θ)/π on [0, π], so E[θ] = π/2 + 2/π.
    angle = torch.arccos(((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    assert abs(angle.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_rotation_about_up_axis_fixes_it(axis):
    r = so3.random_rotation_about(axis, 16, torch.Generator().manual_seed(1), torch.float64)
    up = torch.zeros(3, dtype=torch.float64)
    up[so3.AXES[axis]] = 1
    assert _is_rotation(r, 1e-12)
    assert torch.allclose(up @ r, up.expand(16, 3), atol=1e-12)


def test_rotation_about_is_right_handed_for_row_vectors():
    r = so3.rotation_about("z", torch.tensor([math.pi / 2], dtype=torch.float64))[0]
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(x_axis @ r, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12)


def test_protocols():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(so3.rotations_for_protocol("none", 4, generator=g), torch.eye(3).expand(4, 3, 3))
    z = so3.rotations_for_protocol("z", 4, up_axis="y", generator=g)
    assert torch.allclose(z[:, 1, :], torch.tensor([0.0, 1.0, 0.0]).expand(4, 3), atol=1e-6)
    assert so3.parse_protocol_pair("Z/SO3") == ("z", "so3")
    with pytest.raises(ValueError, match="protocol"):
        so3.rotations_for_protocol("xyz", 2)
    with pytest.raises(ValueError, match="up_axis"):
        so3.rotations_for_protocol("z", 2, up_axis="w")
    with pytest.raises(ValueError, match="TRAIN/TEST"):
        so3.parse_protocol_pair("z")


def test_evaluation_rotations_depend_on_the_seed_alone():
    a = so3.evaluation_rotations("so3", 5, seed=2)
    assert torch.equal(a, so3.evaluation_rotations("so3", 5, seed=2))
    assert not torch.equal(a, so3.evaluation_rotations("so3", 5, seed=3))
    # the stream the published point-cloud tables were tested on
    assert torch.equal(a, so3.rotations_for_protocol("so3", 5, generator=torch.Generator().manual_seed(2 + 104729)))
    z = so3.evaluation_rotations("z", 4, seed=0, up_axis="y")
    assert torch.allclose(z[:, 1, :], torch.tensor([0.0, 1.0, 0.0]).expand(4, 3), atol=1e-6)
    assert torch.equal(so3.evaluation_rotations("none", 3, seed=0), torch.eye(3).expand(3, 3, 3))


def test_rotate_points_and_features_agree():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    r = so3.random_rotation(2, g, torch.float64)
    features = points.transpose(1, 2).unsqueeze(1)  # [B, 1, 3, N]
    rotated = so3.rotate(features, r, vector_dim=2)
    assert torch.allclose(rotated.squeeze(1).transpose(1, 2), points @ r, atol=1e-14)
    with pytest.raises(ValueError, match="xyz"):
        so3.rotate(torch.zeros(2, 4, 5), r, vector_dim=2)
