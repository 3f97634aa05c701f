import math

import pytest
import roma
import torch

from priors3d.fields.gaussians import (GaussianField, backproject_depth, covariance_from_scales,
                                       quaternion_to_matrix)
from priors3d.fields.rays import project_points
from priors3d.fields.splat import MAX_ALPHA, render_gaussians
from priors3d.fields.views import Views


def look_at(eye, target, up=(0.0, 1.0, 0.0), dtype=torch.float64):
    """Camera-to-world [4, 4] (OpenGL axes) at ``eye`` looking at ``target``."""
    eye, target, up = (torch.tensor(x, dtype=dtype) for x in (eye, target, up))
    back = eye - target
    back = back / back.norm()
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    c2w = torch.eye(4, dtype=dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, torch.linalg.cross(back, right), back, eye
    return c2w


def random_gaussians(g, generator, dtype=torch.float64, spread=0.6, scale=(-2.0, -1.2)):
    means = (torch.rand(g, 3, generator=generator, dtype=dtype) - 0.5) * 2 * spread
    log_scales = scale[0] + (scale[1] - scale[0]) * torch.rand(g, 3, generator=generator, dtype=dtype)
    quats = torch.randn(g, 4, generator=generator, dtype=dtype)
    logits = torch.randn(g, generator=generator, dtype=dtype) * 0.5
    colors = torch.rand(g, 3, generator=generator, dtype=dtype)
    return means, log_scales, quats, logits, colors


CAMERA = dict(c2w=look_at((0.4, 0.3, 3.0), (0.0, 0.0, 0.0)),
              intrinsics=torch.tensor([9.0, 8.0, 6.2, 4.7], dtype=torch.float64))


def reference_render(means, covs, opacities, colors, c2w, intrinsics, height, width, near=0.01, lowpass=0.3):
    """Per-pixel loop; the 2D covariance uses autograd's Jacobian of ``project_points`` in world space."""
    projected = []
    for g in range(means.shape[0]):
        uv, z = project_points(means[g:g + 1], c2w, intrinsics)
        if z[0] <= near:
            continue
        jac = torch.autograd.functional.jacobian(lambda p: project_points(p[None], c2w, intrinsics)[0][0], means[g])
        cov2d = jac @ covs[g] @ jac.T + lowpass * torch.eye(2, dtype=means.dtype)
        projected.append((z[0].item(), g, uv[0], torch.linalg.inv(cov2d)))
    projected.sort(key=lambda item: item[0])
    rgb = torch.zeros(height, width, colors.shape[1], dtype=means.dtype)
    alpha = torch.zeros(height, width, dtype=means.dtype)
    depth = torch.zeros(height, width, dtype=means.dtype)
    index = torch.full((height, width), -1)
    clamped = 0
    for v in range(height):
        for u in range(width):
            pixel = torch.tensor([u + 0.5, v + 0.5], dtype=means.dtype)
            transmittance, best = 1.0, 0.0
            for z, g, uv, conic in projected:
                d = pixel - uv
                a = opacities[g].item() * math.exp(-0.5 * (d @ conic @ d).item())
                clamped += a > MAX_ALPHA
                a = min(MAX_ALPHA, a)
                w = transmittance * a
                rgb[v, u] += w * colors[g]
                alpha[v, u] += w
                depth[v, u] += w * z
                if w > best:
                    best, index[v, u] = w, g
                transmittance *= 1.0 - a
    return rgb, alpha, depth / alpha.clamp_min(1e-6), index, clamped


def test_rasteriser_matches_per_pixel_reference():
    gen = torch.Generator().manual_seed(0)
    means, log_scales, quats, logits, colors = random_gaussians(5, gen, scale=(-1.5, -0.8))
    means[4] = torch.tensor([0.4, 0.3, 3.5], dtype=torch.float64)  # behind the camera: culled
    fx, fy, cx, cy = CAMERA["intrinsics"].tolist()
    local = torch.tensor([(5.5 - cx) / fx * 3.0, -(4.5 - cy) / fy * 3.0, -3.0], dtype=torch.float64)
    means[0] = CAMERA["c2w"][:3, :3] @ local + CAMERA["c2w"][:3, 3]  # centred on pixel (5, 4) ...
    covs, opacities = covariance_from_scales(log_scales, quats), torch.sigmoid(logits)
    opacities[0] = 1.0  # ... and opaque, so its alpha is clamped to 0.99 there
    h, w = 10, 12
    out = render_gaussians(means, covs, opacities, colors, CAMERA["c2w"], CAMERA["intrinsics"], h, w,
                           return_index=True)
    rgb, alpha, depth, index, clamped = reference_render(means, covs, opacities, colors, CAMERA["c2w"],
                                                         CAMERA["intrinsics"], h, w)
    assert clamped > 0 and alpha.max() > 0.9  # the case exercises clamping and occlusion
    torch.testing.assert_close(out["rgb"], rgb, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["alpha"], alpha, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["depth"], depth, rtol=1e-10, atol=1e-12)
    assert torch.equal(out["index"], index)


def test_input_order_and_culled_gaussians_do_not_matter():
    gen = torch.Generator().manual_seed(1)
    means, log_scales, quats, logits, colors = random_gaussians(6, gen)
    covs, opacities = covariance_from_scales(log_scales, quats), torch.sigmoid(logits)
    args = (CAMERA["c2w"], CAMERA["intrinsics"], 9, 11)
    out = render_gaussians(means, covs, opacities, colors, *args, return_index=True)
    perm = torch.randperm(6, generator=gen)
    shuffled = render_gaussians(means[perm], covs[perm], opacities[perm], colors[perm], *args, return_index=True)
    torch.testing.assert_close(shuffled["rgb"], out["rgb"], rtol=1e-12, atol=1e-14)
    assert torch.equal(perm[shuffled["index"]], out["index"])
    behind = torch.cat([means, torch.tensor([[0.8, 0.6, 6.0]], dtype=torch.float64)])  # behind the camera
    extra = render_gaussians(behind, torch.cat([covs, covs[:1]]), torch.cat([opacities, opacities[:1]]),
                             torch.cat([colors, colors[:1]]), *args)
    assert torch.equal(extra["rgb"], out["rgb"])
    at_camera = torch.cat([means, CAMERA["c2w"][None, :3, 3]]).requires_grad_()  # depth exactly 0: culled
    extra = render_gaussians(at_camera, torch.cat([covs, covs[:1]]), torch.cat([opacities, opacities[:1]]),
                             torch.cat([colors, colors[:1]]), *args)
    assert torch.equal(extra["rgb"], out["rgb"])
    (grad,) = torch.autograd.grad(extra["rgb"].sum(), at_camera)
    assert torch.isfinite(grad).all() and (grad[-1] == 0).all()
    empty = render_gaussians(means[:0], covs[:0], opacities[:0], colors[:0], *args, return_index=True)
    assert empty["alpha"].abs().max() == 0 and (empty["index"] == -1).all()


@pytest.mark.parametrize("lowpass", [0.0, 0.3])
def test_isotropic_gaussian_lands_where_its_mean_projects(lowpass):
    h, w, sigma, z = 40, 48, 0.05, 2.5
    intrinsics = torch.tensor([200.0, 160.0, 23.3, 18.6], dtype=torch.float64)
    c2w = look_at((1.0, 0.5, 2.0), (0.2, -0.1, 0.3))
    mean = c2w[:3, 3] - z * c2w[:3, 2]  # on the optical axis, z in front of the camera
    uv, depth = project_points(mean[None], c2w, intrinsics)
    assert depth.item() == pytest.approx(z)
    covs = (sigma ** 2 * torch.eye(3, dtype=torch.float64))[None]
    out = render_gaussians(mean[None], covs, torch.tensor([0.5], dtype=torch.float64),
                           torch.ones(1, 3, dtype=torch.float64), c2w, intrinsics, h, w, lowpass=lowpass,
                           return_index=True)
    weight = out["alpha"]
    peak = divmod(int(weight.argmax()), w)
    assert peak == (int(uv[0, 1]), int(uv[0, 0]))  # (row, column) of the pixel that contains uv
    assert weight.max().item() < 0.5  # never clamped, so the image is the Gaussian itself
    vv, uu = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                            indexing="ij")
    total = weight.sum()
    cu, cv = (weight * uu).sum() / total, (weight * vv).sum() / total
    torch.testing.assert_close(torch.stack([cu, cv]), uv[0], rtol=0, atol=1e-6)
    var_u = (weight * (uu - cu) ** 2).sum() / total
    var_v = (weight * (vv - cv) ** 2).sum() / total
    assert var_u.sqrt().item() == pytest.approx(math.sqrt((200.0 * sigma / z) ** 2 + lowpass), rel=1e-6)
    assert var_v.sqrt().item() == pytest.approx(math.sqrt((160.0 * sigma / z) ** 2 + lowpass), rel=1e-6)
    seen = weight > 1e-4
    torch.testing.assert_close(out["depth"][seen], torch.full_like(weight[seen], z))
    assert (out["index"] == 0).all()


def _render_parameters(camera, h, w, **options):
    def render(means, log_scales, quats, logits, colors):
        out = render_gaussians(means, covariance_from_scales(log_scales, quats), torch.sigmoid(logits), colors,
                               camera["c2w"], camera["intrinsics"], h, w, **options)
        return out["rgb"], out["alpha"], out["depth"]
    return render


@pytest.mark.parametrize("options", [dict(chunk=7), dict(cull_sigma=3.0, tile=3)])
def test_gradients_match_finite_differences(options):
    gen = torch.Generator().manual_seed(2)
    params = [p.requires_grad_() for p in random_gaussians(3, gen)]
    render = _render_parameters(CAMERA, 5, 6, **options)
    grads = torch.autograd.grad(sum(o.sum() for o in render(*params)), params)
    assert all(g.abs().max() > 1e-4 for g in grads)  # every parameter really moves the image
    assert torch.autograd.gradcheck(render, params, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_double_backward_matches_finite_differences():
    gen = torch.Generator().manual_seed(3)
    params = [p.requires_grad_() for p in random_gaussians(2, gen)]
    camera = dict(c2w=CAMERA["c2w"], intrinsics=CAMERA["intrinsics"] * 0.5)
    render = _render_parameters(camera, 3, 4)
    assert torch.autograd.gradgradcheck(render, params, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_chunking_does_not_change_results():
    gen = torch.Generator().manual_seed(4)
    params = [p.requires_grad_() for p in random_gaussians(8, gen)]
    outs, grads = [], []
    for chunk in (1, 13, 10 * 12, None):
        rgb, alpha, depth = _render_parameters(CAMERA, 10, 12, chunk=chunk)(*params)
        outs.append(torch.cat([rgb.flatten(), alpha.flatten(), depth.flatten()]))
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad((rgb * rgb).sum() + depth.sum(), params)]))
    for out, grad in zip(outs[:-1], grads[:-1]):
        torch.testing.assert_close(out, outs[-1], rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(grad, grads[-1], rtol=1e-12, atol=1e-14)


def test_quaternions_and_covariances():
    gen = torch.Generator().manual_seed(5)
    quats = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    rot = quaternion_to_matrix(quats)
    xyzw = torch.cat([quats[:, 1:], quats[:, :1]], dim=-1)
    torch.testing.assert_close(rot, roma.unitquat_to_rotmat(xyzw / xyzw.norm(dim=-1, keepdim=True)))
    log_scales = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    covs = covariance_from_scales(log_scales, quats)
    torch.testing.assert_close(covs, covs.transpose(-1, -2))
    eig = torch.linalg.eigvalsh(covs)
    torch.testing.assert_close(eig, torch.sort(torch.exp(2 * log_scales), dim=-1).values)
    with pytest.raises(ValueError, match="quaternions"):
        quaternion_to_matrix(quats[:, :3])


def _plane_views(h=16, w=20, z=2.0):
    """Two views of a fronto-parallel coloured plane at z-depth ``z`` from the first camera."""
    c2w = torch.stack([torch.eye(4), torch.eye(4)])
    c2w[1, :3, 3] = torch.tensor([0.1, 0.0, 0.0])
    intrinsics = torch.tensor([[18.0, 18.0, w / 2, h / 2]] * 2)
    images = torch.rand(2, h, w, 3, generator=torch.Generator().manual_seed(6))
    depth = torch.full((2, h, w), z)
    depth[1, :2] = 0.0  # unknown depth: no Gaussian
    return Views(images=images, c2w=c2w, intrinsics=intrinsics, names=["a", "b"], depth=depth)


def test_backprojected_pixels_reproject_to_their_pixels():
    views = _plane_views()
    points, colours, footprint = backproject_depth(views, stride=1)
    h, w = views.hw
    assert points.shape == (2 * h * w - 2 * w, 3)
    torch.testing.assert_close(points[:, 2], torch.full((points.shape[0],), -2.0))
    uv, z = project_points(points[: h * w], views.c2w[0], views.intrinsics[0])
    vv, uu = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    torch.testing.assert_close(uv, torch.stack([uu, vv], -1).reshape(-1, 2))
    torch.testing.assert_close(colours[: h * w], views.images[0].reshape(-1, 3))
    torch.testing.assert_close(footprint, torch.full_like(footprint, 2.0 / 18.0))


def test_field_from_depth_renders_its_view():
    views = _plane_views()
    field = GaussianField.from_depth(views.subset([0]), stride=1, opacity=0.99)
    with torch.no_grad():
        field.log_scales -= math.log(4.0)  # a quarter pixel wide: each pixel is dominated by its own Gaussian
    h, w = views.hw
    out = field(views.c2w[0], views.intrinsics[0], h, w, return_index=True)
    inner = (slice(2, -2), slice(2, -2))
    torch.testing.assert_close(out["depth"][inner], torch.full((h - 4, w - 4), 2.0), rtol=0, atol=1e-4)
    assert out["alpha"][inner].min() > 0.99
    assert torch.equal(out["index"], torch.arange(h * w).reshape(h, w))  # Gaussians are in pixel order
    # Front neighbours at the same depth bleed in, but the image is far closer to its own view than to a shifted one.
    error = (out["rgb"][inner] - views.images[0][inner]).abs().mean()
    assert error < 0.75 * (out["rgb"][inner] - views.images[0][inner].roll(1, 0)).abs().mean()
    out["rgb"].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in field.parameters())


def test_field_from_box_is_seeded_and_inside():
    aabb = torch.tensor([[-1.0, 0.0, 2.0], [1.0, 0.5, 3.0]])
    a = GaussianField.from_box(aabb, 50, torch.Generator().manual_seed(7))
    b = GaussianField.from_box(aabb, 50, torch.Generator().manual_seed(7))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ((a.means >= aabb[0]) & (a.means <= aabb[1])).all()
    torch.testing.assert_close(a.opacities(), torch.full((50,), 0.1))
    with pytest.raises(ValueError, match="aabb"):
        GaussianField.from_box(aabb.flip(0), 5)
    with pytest.raises(ValueError, match="depth"):
        GaussianField.from_depth(Views(images=torch.zeros(1, 2, 2, 3), c2w=torch.eye(4)[None],
                                       intrinsics=torch.ones(1, 4), names=["x"]))


def test_bad_shapes_are_rejected():
    means, covs = torch.zeros(2, 3), torch.eye(3).expand(2, 3, 3)
    with pytest.raises(ValueError, match="c2w"):
        render_gaussians(means, covs, torch.ones(2), torch.ones(2, 3), torch.eye(4)[None], torch.ones(4), 4, 4)
    with pytest.raises(ValueError, match="opacities"):
        render_gaussians(means, covs, torch.ones(3), torch.ones(2, 3), torch.eye(4), torch.ones(4), 4, 4)
    with pytest.raises(ValueError, match="covariances"):
        render_gaussians(means, covs[:, :2], torch.ones(2), torch.ones(2, 3), torch.eye(4), torch.ones(4), 4, 4)


def test_tiles_without_culling_match_dense_and_culling_stays_close():
    gen = torch.Generator().manual_seed(8)
    means, log_scales, quats, logits, colors = random_gaussians(40, gen, spread=1.0, scale=(-3.5, -2.5))
    covs, opacities = covariance_from_scales(log_scales, quats), torch.sigmoid(logits)
    camera = dict(c2w=CAMERA["c2w"], intrinsics=CAMERA["intrinsics"] * 3)
    h, w = 28, 36
    args = (means, covs, opacities, colors, camera["c2w"], camera["intrinsics"], h, w)
    dense = render_gaussians(*args, return_index=True)
    wide = render_gaussians(*args, cull_sigma=1e4, tile=5, return_index=True)  # tiles, nothing culled
    for key in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(wide[key], dense[key], rtol=1e-12, atol=1e-14)
    assert torch.equal(wide["index"], dense["index"])
    culled = render_gaussians(*args, cull_sigma=3.0, tile=8, return_index=True)
    difference = (culled["rgb"] - dense["rgb"]).abs().max()
    assert 0 < difference < 2 * math.exp(-4.5)  # it did cull, and only tails: ≤ e^{-k²/2} per Gaussian
    covered = dense["alpha"] > 0.1
    assert torch.equal(culled["index"][covered], dense["index"][covered])
    empty = render_gaussians(means[:0], covs[:0], opacities[:0], colors[:0], *args[4:], cull_sigma=3.0,
                             return_index=True)
    assert empty["alpha"].abs().max() == 0 and (empty["index"] == -1).all()


@pytest.mark.parametrize("options", [{}, dict(cull_sigma=3.0, tile=4)])
def test_per_pixel_jacobians_with_torch_func(options):
    """``functional_call`` + ``jacrev`` (as the shaping code uses) agree with autograd, pixel by pixel."""
    aabb = torch.tensor([[-0.5, -0.5, -3.0], [0.5, 0.5, -2.0]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(9)
    field = GaussianField.from_box(aabb, 6, gen, opacity=0.5)
    with torch.no_grad():  # anisotropic, so rotations matter
        field.log_scales += 0.5 * torch.randn(6, 3, generator=gen, dtype=torch.float64)
    camera = (torch.eye(4, dtype=torch.float64), torch.tensor([8.0, 8.0, 4.0, 3.0], dtype=torch.float64), 6, 8)
    params = {name: p.detach() for name, p in field.named_parameters()}
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(field, p, camera, options)["rgb"])(params)
    rgb = field(*camera, **options)["rgb"]
    for pixel in [(2, 3, 0), (0, 7, 2), (5, 1, 1)]:
        rows = torch.autograd.grad(rgb[pixel], list(field.parameters()), retain_graph=True)
        assert all(row.abs().max() > 1e-6 for row in rows)  # the pixel depends on every kind of parameter
        for (name, _), row in zip(field.named_parameters(), rows):
            torch.testing.assert_close(jac[name][pixel], row)
