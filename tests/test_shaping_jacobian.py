import pytest
import torch

from priors3d.fields.nerf import NeRF, NeRFConfig
from priors3d.shaping.jacobian import (flatten, loop_pixel_jacobians, parameter_subset, pixel_jacobians,
                                       pixel_jacobians_chunked, point_jacobians, unflatten)

TINY = NeRFConfig(resolutions=(4, 8), features=2, hidden=8, geo_features=3, dir_frequencies=1, init_scale=0.5,
                  density_grid=6)


def tiny_field(seed: int) -> NeRF:
    torch.manual_seed(seed)
    model = NeRF(TINY)
    model.update_density_grid()
    return model


def rays(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    o = 0.2 * torch.randn(n, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return o, d, torch.zeros(n), torch.full((n,), 1.5)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("options", [{}, {"channel": 1}, {"n_proposal": 8}, {"skip": 0.25},
                                     {"names": ("rgb_geo.weight", "rgb_out.bias")}])
def test_vectorised_jacobians_equal_a_loop_of_autograd(seed, options):
    """With ``skip`` the vectorised path masks the skipped samples and the loop evaluates only the others."""
    model = tiny_field(seed)
    if options.get("n_proposal") or options.get("skip"):
        options = {**options, "proposal": model.grid_density}
    args = rays(5, seed)
    vec = pixel_jacobians(model, *args, n_samples=6, **options)
    ref = loop_pixel_jacobians(model, *args, n_samples=6, **options)
    assert vec.shape == ref.shape and vec.shape[0] == 5
    assert ref.abs().max() > 0
    torch.testing.assert_close(vec, ref, rtol=1e-5, atol=1e-7)


def test_jacobians_train_the_whole_field_like_the_loop():
    model = tiny_field(2)
    args = rays(4, 3)
    params = list(model.parameters())
    vec = torch.autograd.grad(pixel_jacobians(model, *args, n_samples=6).pow(2).sum(), params)
    ref = torch.autograd.grad(loop_pixel_jacobians(model, *args, n_samples=6, create_graph=True).pow(2).sum(), params)
    assert all(v.abs().sum() > 0 for v in vec)  # every parameter, not only theta_D, gets a gradient
    for v, r in zip(vec, ref):
        torch.testing.assert_close(v, r, rtol=1e-4, atol=1e-7)


def test_chunked_jacobians_match_and_keep_no_graph():
    model = tiny_field(4)
    args = rays(7, 5)
    full = pixel_jacobians(model, *args, n_samples=6)
    chunked = pixel_jacobians_chunked(model, *args, chunk=3, n_samples=6)
    assert not chunked.requires_grad
    torch.testing.assert_close(chunked, full.detach())


def test_point_jacobians_equal_autograd_per_point():
    model = tiny_field(5)
    x = 0.3 * torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    d = torch.nn.functional.normalize(torch.ones(4, 3), dim=-1)
    vec = point_jacobians(model, x, d)
    theta = parameter_subset(model)
    for i in range(4):
        _, rgb = model(x[i:i + 1], d[i:i + 1])
        g = torch.autograd.grad(rgb.mean(), list(theta.values()))
        torch.testing.assert_close(vec[i], torch.cat([t.reshape(-1) for t in g]))


def test_flatten_roundtrip_and_bad_names():
    model = tiny_field(0)
    theta = parameter_subset(model)
    back = unflatten(flatten(theta), theta)
    assert all(torch.equal(back[n], theta[n]) for n in theta)
    with pytest.raises(ValueError, match="unknown parameter"):
        parameter_subset(model, ("nope",))
    with pytest.raises(ValueError, match="vector must be"):
        unflatten(torch.zeros(3), theta)
