import pytest
import torch
from torch import nn

from priors3d import check, vn


class BiasedVNLinear(nn.Module):
    """A VN linear layer with a bias vector: a translation in feature space, not equivariant."""

    def __init__(self):
        super().__init__()
        self.linear = vn.VNLinear(3, 4)
        self.bias = nn.Parameter(torch.randn(1, 4, 3, 1))

    def forward(self, x):
        return self.linear(x) + self.bias


def test_checker_reports_non_equivariant_modules():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 32, dtype=torch.float64)
    assert check.equivariance_error(BiasedVNLinear().double(), x) > 0.05
    # nn.Linear on the xyz dimension mixes coordinates: neither equivariant nor invariant
    mixing = nn.Linear(3, 3).double()
    points = torch.randn(2, 16, 3, dtype=torch.float64)
    assert check.equivariance_error(mixing, points, vector_dim=-1, output_vector_dim=-1) > 0.05
    assert check.invariance_error(mixing, points, vector_dim=-1) > 0.05


def test_checker_passes_equivariant_and_invariant_functions():
    points = torch.randn(2, 16, 3, dtype=torch.float64)
    assert check.equivariance_error(lambda p: 2 * p, points, vector_dim=-1, output_vector_dim=-1) < 1e-14
    assert check.invariance_error(lambda p: p.norm(dim=-1), points, vector_dim=-1) < 1e-14
    # an input that must not rotate (None), e.g. a one-hot label
    label = torch.ones(2, 4, dtype=torch.float64)
    f = lambda p, l: p * l.sum(-1).view(-1, 1, 1)  # noqa: E731
    assert check.equivariance_error(f, (points, label), vector_dim=(-1, None), output_vector_dim=-1) < 1e-14


def test_checker_uses_given_rotations_and_same_random_state():
    points = torch.randn(1, 8, 3, dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64).unsqueeze(0)
    noisy = lambda p: p + torch.randn_like(p)  # noqa: E731  same noise for both calls
    assert check.equivariance_error(noisy, points, vector_dim=-1, output_vector_dim=-1, rotations=identity) == 0


def test_non_finite_outputs_raise_instead_of_measuring():
    x = torch.randn(2, 3, 3, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="non-finite values"):
        check.equivariance_error(lambda t: t * float("nan"), x)
    with pytest.raises(ValueError, match="non-finite values"):
        check.invariance_error(lambda t: t.norm(dim=2) * float("inf"), x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_assert_equivariant_passes_vn_layers_and_fails_biased_ones(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 32, dtype=dtype)
    layer = nn.Sequential(vn.VNLinearLeakyReLU(3, 8), vn.VNLinear(8, 4)).eval().to(dtype)
    assert check.assert_equivariant(layer, x) <= check.TOLERANCE[dtype]
    with pytest.raises(AssertionError, match=f"not equivariant: .* \\({dtype}\\)"):
        check.assert_equivariant(BiasedVNLinear().to(dtype), x)
    with pytest.raises(AssertionError, match="not invariant"):
        check.assert_invariant(layer, x)  # equivariant features are not invariant
    assert check.assert_invariant(lambda t: layer(t).norm(dim=2), x) <= check.TOLERANCE[dtype]
