import pytest
import torch
from torch import nn

from priors3d import vn
from priors3d.so3 import random_rotation


class TinyVNNet(nn.Module):
    """Points [B, N, 3] → rotation-equivariant vectors [B, 4, 3]."""

    def __init__(self):
        super().__init__()
        self.layer = vn.VNLinearLeakyReLU(1, 4, batchnorm=False)

    def forward(self, points):
        return self.layer(vn.to_vn(points)).mean(-1)


class Norms(nn.Module):
    """The rotation-invariant lengths of a net's output vectors."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, points):
        return self.net(points).norm(dim=-1)


def _similarity(points, seed):
    g = torch.Generator().manual_seed(seed)
    r = random_rotation(points.shape[0], g, points.dtype)
    s = torch.rand(points.shape[0], 1, 1, generator=g, dtype=points.dtype) * 3 + 0.2
    t = torch.randn(points.shape[0], 1, 3, generator=g, dtype=points.dtype) * 5
    return points @ r * s + t, r, s, t


@pytest.mark.parametrize("scale", ["rms", "max"])
def test_sim3_wrapper_outputs_follow_similarities(scale):
    torch.manual_seed(0)
    net = TinyVNNet().double()
    points = torch.randn(3, 50, 3, dtype=torch.float64)
    moved, r, s, t = _similarity(points, 1)

    vectors = vn.Sim3Wrapper(net, "vectors", scale)
    assert torch.allclose(vectors(moved), vectors(points) @ r * s, atol=1e-10)
    as_points = vn.Sim3Wrapper(net, "points", scale)
    assert torch.allclose(as_points(moved), as_points(points) @ r * s + t, atol=1e-10)
    invariant = vn.Sim3Wrapper(Norms(net), "invariant", scale)
    assert torch.allclose(invariant(moved), invariant(points), atol=1e-10)
    # without the wrapper the same net is not translation-invariant
    assert not torch.allclose(net(points + 1).norm(dim=-1), net(points).norm(dim=-1), atol=1e-3)


def test_canonicalize_and_bad_input():
    points = torch.randn(2, 30, 3, dtype=torch.float64) * 4 + 2
    canonical, c, s = vn.canonicalize(points)
    assert torch.allclose(canonical.mean(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(canonical.pow(2).sum(-1).mean(1), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(canonical * s + c, points)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        vn.canonicalize(torch.randn(2, 3, 30))
    with pytest.raises(ValueError, match="output"):
        vn.Sim3Wrapper(nn.Identity(), "rotations")
