"""Rays through pixel centres, ray-box bounds, and the volume-rendering quadrature."""

from __future__ import annotations

import math

import pytest
import roma
import torch

from priors3d.fields.nerf import NeRF, NeRFConfig
from priors3d.fields.rays import camera_rays, project_points, ray_aabb
from priors3d.fields.render import (accumulate_along_rays, dilate_weights, distortion_loss, importance_edges,
                                    ray_fraction, render_rays, render_weight_from_density, stratified_edges,
                                    unbounded_edges)


def random_camera(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = roma.unitquat_to_rotmat(torch.nn.functional.normalize(torch.randn(4, generator=g, dtype=torch.float64), dim=0))
    c2w[:3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
    return c2w, torch.tensor([40.0, 30.0, 12.5, 9.0], dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centre_ray_is_camera_minus_z(seed):
    c2w, intrinsics = random_camera(seed)  # cx = 12.5, cy = 9.0 -> 25 x 18 image, centre pixel (12, 8) or so
    height, width = 17, 25
    intrinsics = torch.tensor([40.0, 30.0, width / 2, height / 2], dtype=torch.float64)
    origins, dirs = camera_rays(c2w[None], intrinsics[None], height, width)
    assert origins.shape == dirs.shape == (1, height, width, 3)
    centre = dirs[0, height // 2, width // 2]
    torch.testing.assert_close(centre, -c2w[:3, 2])
    torch.testing.assert_close(origins[0, 3, 5], c2w[:3, 3])
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(1, height, width, dtype=torch.float64))
    # Rows go down the image: the top row looks up (+y of the camera), the left column to -x.
    assert float(dirs[0, 0, width // 2] @ c2w[:3, 1]) > 0
    assert float(dirs[0, height // 2, 0] @ c2w[:3, 0]) < 0


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_round_trip(seed):
    c2w, intrinsics = random_camera(seed)
    height, width = 18, 25
    origins, dirs = camera_rays(c2w[None], intrinsics[None], height, width)
    t = torch.rand(height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5 + 0.1
    points = (origins[0] + t[..., None] * dirs[0]).reshape(-1, 3)
    uv, z = project_points(points, c2w, intrinsics)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    centres = torch.stack([u, v], dim=-1).reshape(-1, 2).double() + 0.5
    torch.testing.assert_close(uv, centres)
    cos = (dirs[0] @ -c2w[:3, 2]).reshape(-1)
    torch.testing.assert_close(z, t.reshape(-1) * cos)
    assert torch.equal(uv.floor().long(), centres.floor().long())


def test_ray_aabb_bounds_and_misses():
    g = torch.Generator().manual_seed(0)
    aabb = torch.tensor([[-1.0, -2.0, -0.5], [1.0, 2.0, 0.5]], dtype=torch.float64)
    origins = torch.randn(500, 3, generator=g, dtype=torch.float64) * 2
    targets = torch.rand(500, 3, generator=g, dtype=torch.float64) * (aabb[1] - aabb[0]) + aabb[0]
    aims = torch.where(torch.arange(500)[:, None] % 2 == 0, targets - origins,
                       torch.randn(500, 3, generator=g, dtype=torch.float64))  # half aim at the box
    dirs = torch.nn.functional.normalize(aims, dim=-1)
    origins[0], dirs[0] = torch.tensor([-3.0, 0.1, 0.2]), torch.tensor([1.0, 0.0, 0.0])  # axis-parallel hit
    origins[1], dirs[1] = torch.tensor([-3.0, 0.1, 0.7]), torch.tensor([1.0, 0.0, 0.0])  # axis-parallel miss
    t_near, t_far, hit = ray_aabb(origins, dirs, aabb)

    def inside(p, tol=1e-9):
        return ((p >= aabb[0] - tol) & (p <= aabb[1] + tol)).all(dim=-1)

    def on_surface(p):
        return ((p - aabb[0]).abs().amin(-1).minimum((p - aabb[1]).abs().amin(-1)) < 1e-9) & inside(p)

    starts_inside = inside(origins, tol=0.0)
    assert torch.all(hit[starts_inside]) and torch.all(t_near[starts_inside] == 0)
    exit_points = origins + t_far[:, None] * dirs
    entry_points = origins + t_near[:, None] * dirs
    assert torch.all(on_surface(exit_points[hit]))
    assert torch.all(on_surface(entry_points[hit & ~starts_inside]))
    assert torch.all(inside(0.5 * (entry_points + exit_points)[hit]))
    # Brute force: no sample along a missing ray (t >= 0) lies inside the box.
    ts = torch.linspace(0, 20, 4001, dtype=torch.float64)
    samples = origins[~hit, None] + ts[:, None] * dirs[~hit, None]
    assert hit.sum() > 50 and (~hit).sum() > 50
    assert not inside(samples, tol=0.0).any()
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        ray_aabb(origins, dirs, aabb.flatten())


def reference_weights(t_starts, t_ends, sigmas):
    """Per-ray Python loop of the quadrature, as written in the NeRF paper."""
    weights = torch.zeros_like(sigmas)
    trans = torch.zeros_like(sigmas)
    for r in range(sigmas.shape[0]):
        light = 1.0
        for i in range(sigmas.shape[1]):
            alpha = 1.0 - math.exp(-float(sigmas[r, i]) * float(t_ends[r, i] - t_starts[r, i]))
            trans[r, i] = light
            weights[r, i] = light * alpha
            light *= 1.0 - alpha
    return weights, trans


def test_weights_match_loop_reference():
    g = torch.Generator().manual_seed(0)
    near = torch.rand(6, generator=g, dtype=torch.float64)
    edges = stratified_edges(near, near + 3.0, 20, g)
    sigmas = torch.rand(6, 20, generator=g, dtype=torch.float64) * torch.tensor([0.0, 0.1, 1, 3, 10, 100])[:, None]
    weights, trans, alphas = render_weight_from_density(edges[:, :-1], edges[:, 1:], sigmas)
    ref_w, ref_t = reference_weights(edges[:, :-1], edges[:, 1:], sigmas)
    torch.testing.assert_close(weights, ref_w)
    torch.testing.assert_close(trans, ref_t)
    assert torch.all(weights >= 0) and torch.all(weights.sum(-1) <= 1 + 1e-12)
    assert torch.all(trans[:, 1:] <= trans[:, :-1])
    assert torch.all((alphas >= 0) & (alphas <= 1))
    # Opacity equals 1 - transmittance through the whole ray.
    total = (sigmas * (edges[:, 1:] - edges[:, :-1])).sum(-1)
    torch.testing.assert_close(accumulate_along_rays(weights), 1 - torch.exp(-total))
    colours = torch.rand(6, 20, 3, generator=g, dtype=torch.float64)
    loop = torch.stack([sum(weights[r, i] * colours[r, i] for i in range(20)) for r in range(6)])
    torch.testing.assert_close(accumulate_along_rays(weights, colours), loop)
    with pytest.raises(ValueError, match=r"\[\.\.\., S, C\]"):
        accumulate_along_rays(weights, colours[:, :5])


def test_stratified_edges_sorted_and_bounded():
    near, far = torch.tensor([0.5, 1.0]), torch.tensor([2.0, 6.0])
    even = stratified_edges(near, far, 8)
    torch.testing.assert_close(even[:, 1:] - even[:, :-1], ((far - near) / 8)[:, None].expand(2, 8))
    g = torch.Generator().manual_seed(0)
    jittered = stratified_edges(near, far, 8, g)
    assert torch.all(jittered[:, 1:] >= jittered[:, :-1])
    assert torch.all(jittered >= near[:, None]) and torch.all(jittered <= far[:, None])
    assert not torch.allclose(jittered, even)


@pytest.mark.parametrize("unbounded", [False, True])
def test_ray_fraction_inverts_the_spacing(unbounded):
    """The edges' fractions are the uniform (or jittered) fractions the spacing started from."""
    g = torch.Generator().manual_seed(3)
    near = 0.02 + 0.1 * torch.rand(5, generator=g, dtype=torch.float64)
    split, far = near + 0.1 + 2 * torch.rand(5, generator=g, dtype=torch.float64), torch.full((5,), 1000.0,
                                                                                            dtype=torch.float64)
    s = stratified_edges(torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64), 16,
                         torch.Generator().manual_seed(4))
    edges = (unbounded_edges(near, split, far, 16, torch.Generator().manual_seed(4)) if unbounded
             else stratified_edges(near, far, 16, torch.Generator().manual_seed(4)))
    torch.testing.assert_close(ray_fraction(edges, near, far, split if unbounded else None), s)


def test_distortion_loss_matches_the_double_sum_and_prefers_one_surface():
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(4, 24, generator=g, dtype=torch.float64) / 24
    s_edges = torch.sort(torch.rand(4, 25, generator=g, dtype=torch.float64), dim=-1).values
    mids, widths = 0.5 * (s_edges[:, 1:] + s_edges[:, :-1]), s_edges[:, 1:] - s_edges[:, :-1]
    double_sum = (weights[:, :, None] * weights[:, None] * (mids[:, :, None] - mids[:, None]).abs()).sum((1, 2))
    torch.testing.assert_close(distortion_loss(weights, s_edges), double_sum + (weights**2 * widths).sum(-1) / 3)
    # The same opacity on one interval costs less than split between a floater and a surface.
    even = torch.linspace(0, 1, 25, dtype=torch.float64)
    surface, floater = torch.zeros(24, dtype=torch.float64), torch.zeros(24, dtype=torch.float64)
    surface[18], floater[[2, 18]] = 0.9, 0.45
    assert distortion_loss(surface, even) < 0.2 * distortion_loss(floater, even)
    with pytest.raises(ValueError, match=r"S \+ 1"):
        distortion_loss(weights, s_edges[:, :-1])


@pytest.mark.parametrize("random", [False, True])
def test_importance_edges_sorted_bounded_and_concentrated(random):
    g = torch.Generator().manual_seed(0) if random else None
    edges = torch.linspace(2.0, 4.0, 33).expand(3, 33).contiguous()
    weights = torch.full((3, 32), 0.01)
    weights[0, 5] = 10.0
    weights[1, 20:23] = 5.0
    out = importance_edges(edges, weights, 64, generator=g)
    assert out.shape == (3, 65)
    assert torch.all(out[:, 1:] >= out[:, :-1])
    assert torch.all(out[:, 0] == 2.0) and torch.all(out[:, -1] == 4.0)
    mids = 0.5 * (out[:, 1:] + out[:, :-1])
    assert ((mids[0] >= edges[0, 5]) & (mids[0] <= edges[0, 6])).float().mean() > 0.8
    assert ((mids[1] >= edges[1, 20]) & (mids[1] <= edges[1, 23])).float().mean() > 0.8
    # Uniform weights give (nearly) equal intervals.
    torch.testing.assert_close(out[2, 1:] - out[2, :-1], torch.full((64,), 2.0 / 64), atol=0.03 if random else 1e-5,
                               rtol=0)


def test_dilate_weights_spreads_to_neighbours():
    weights = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    dilated = dilate_weights(weights)
    assert torch.all(dilated[1:4] > 0) and torch.all(dilated[[0, 4, 5]] == 0)
    assert torch.all(dilated >= 0.5 * weights)


def test_render_rays_matches_analytic_slab():
    """A slab of constant density and colour: C = c (1 - exp(-sigma L))."""
    sigma, colour = 0.7, torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)

    def slab(positions, directions):
        inside = ((positions[..., 0] > 1.0) & (positions[..., 0] < 2.5)).double()
        rgb = None if directions is None else colour.expand(*positions.shape[:-1], 3)
        return sigma * inside, rgb

    rays_o = torch.zeros(2, 3, dtype=torch.float64)
    rays_d = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]], dtype=torch.float64)
    out = render_rays(slab, rays_o, rays_d, torch.zeros(2, dtype=torch.float64), torch.full((2,), 5.0, dtype=torch.float64),
                      n_samples=1000, background=torch.ones(3, dtype=torch.float64))
    length = 1.5 / rays_d[:, 0]
    opacity = 1 - torch.exp(-sigma * length)
    torch.testing.assert_close(out["acc"], opacity, atol=2e-3, rtol=0)
    torch.testing.assert_close(out["rgb"], opacity[:, None] * colour + (1 - opacity)[:, None], atol=2e-3, rtol=0)
    assert torch.all(out["weights"].sum(-1) <= 1)


def test_importance_sampling_sharpens_depth_of_opaque_sphere():
    def sphere(positions, directions):
        sigma = 200.0 * (positions.norm(dim=-1) < 1.0).float()
        return sigma, None if directions is None else torch.ones(*positions.shape[:-1], 3)

    g = torch.Generator().manual_seed(0)
    target = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1) * 0.5
    rays_o = torch.tensor([0.0, 0.0, 4.0]).expand(64, 3)
    rays_d = torch.nn.functional.normalize(target - rays_o, dim=-1)
    near, far = torch.full((64,), 1.0), torch.full((64,), 7.0)
    b = (rays_o * rays_d).sum(-1)
    true_depth = -b - torch.sqrt(b**2 - (rays_o.norm(dim=-1) ** 2 - 1.0))
    single = render_rays(sphere, rays_o, rays_d, near, far, n_samples=24)
    hierarchical = render_rays(sphere, rays_o, rays_d, near, far, n_samples=24, n_proposal=24)
    assert hierarchical["weights"].shape == (64, 24)
    err_single = (single["depth"] - true_depth).abs().mean()
    err_hier = (hierarchical["depth"] - true_depth).abs().mean()
    assert err_hier < 0.5 * err_single
    assert err_hier < 0.02


def test_skipping_empty_space_changes_nothing_but_the_work():
    """Samples the cached density calls empty are not evaluated; where it covers the field the render is the same,
    and the vectorisable path (``params``) agrees with the packed one."""
    torch.manual_seed(0)
    field = NeRF(NeRFConfig(resolutions=(4, 8), features=2, hidden=8, geo_features=3, dir_frequencies=1,
                            init_scale=0.5, density_grid=8)).double()
    evaluated = []
    field.register_forward_pre_hook(lambda module, inputs: evaluated.append(inputs[0].shape[:-1].numel()))
    g = torch.Generator().manual_seed(1)
    rays_o = 0.3 * torch.randn(50, 3, generator=g, dtype=torch.float64)
    rays_d = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=-1)
    near, far = torch.zeros(50, dtype=torch.float64), torch.full((50,), 1.5, dtype=torch.float64)

    def cached(positions):  # the field's own density inside a ball, empty outside: covers the field there
        return field(positions, None)[0] * (positions.norm(dim=-1) < 0.6)

    def ball(positions, directions):  # the same field, zero outside the ball
        sigma, rgb = field(positions, directions)
        return sigma * (positions.norm(dim=-1) < 0.6), rgb

    full = render_rays(ball, rays_o, rays_d, near, far, n_samples=16)
    evaluated.clear()
    skipped = render_rays(field, rays_o, rays_d, near, far, n_samples=16, proposal=cached, skip=1e-12)
    assert evaluated[-1] < 0.7 * 50 * 16  # the field saw only the occupied samples
    for key in ("rgb", "depth", "acc", "weights"):
        torch.testing.assert_close(skipped[key], full[key], rtol=0, atol=1e-12)
    masked = render_rays(field, rays_o, rays_d, near, far, n_samples=16, proposal=cached, skip=1e-12,
                         params={"rgb_out.bias": field.rgb_out.bias})
    assert evaluated[-1] == 50 * 16
    torch.testing.assert_close(masked["rgb"], skipped["rgb"], rtol=0, atol=1e-12)
    nothing = render_rays(field, rays_o, rays_d, near, far, n_samples=16, proposal=lambda p: 0 * p[..., 0], skip=1e-12)
    assert evaluated[-1] == 0 and torch.equal(nothing["acc"], torch.zeros(50, dtype=torch.float64))
    with pytest.raises(ValueError, match="proposal"):
        render_rays(field, rays_o, rays_d, near, far, n_samples=16, skip=0.1)


def test_render_rays_rejects_bad_shapes():
    field = lambda p, d: (p[..., 0], None if d is None else p)  # noqa: E731
    with pytest.raises(ValueError, match="near and far"):
        render_rays(field, torch.zeros(4, 3), torch.ones(4, 3), torch.zeros(3), torch.ones(4))
    with pytest.raises(ValueError, match="rays_o and rays_d"):
        render_rays(field, torch.zeros(4, 3), torch.ones(4, 2), torch.zeros(4), torch.ones(4))
