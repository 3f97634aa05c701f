"""Equivariance of every VN layer on random inputs and rotations, float64 and float32.

Tolerances: float64 layers agree to ~1e-15 relative (machine epsilon 2.2e-16 times a few reductions);
we require < 1e-10. Float32 has epsilon 1.2e-7; stacks of a few layers with sums over <= 64 channels
and points accumulate ~1e-6; we require < 1e-5.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from priors3d import check, vn
from priors3d.so3 import random_rotation, rotate

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
DTYPES = [torch.float64, torch.float32]
PROPERTY = settings(max_examples=12, deadline=None, derandomize=True)

# At least two channels: with one channel every learned direction is parallel to the input, so a VN-ReLU
# either keeps a vector or shrinks it to ~ε·v; the relative error of such a 1e-6-sized output measures
# floating-point cancellation, not equivariance.
shapes = st.tuples(st.integers(1, 4), st.integers(2, 8), st.integers(2, 33), st.integers(0, 2**16))


def _features(b, c, n, seed, dtype, extra=()):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, 3, n, *extra, generator=g, dtype=dtype)


def _layers(c: int) -> dict[str, nn.Module]:
    return {
        "VNLinear": vn.VNLinear(c, 2 * c + 1),
        "VNLeakyReLU": vn.VNLeakyReLU(c),
        "VNLeakyReLU-shared": vn.VNLeakyReLU(c, negative_slope=0.0, share_nonlinearity=True),
        "VNLinearLeakyReLU": vn.VNLinearLeakyReLU(c, c + 2),
        "VNLinearLeakyReLU-noBN": vn.VNLinearLeakyReLU(c, 3, batchnorm=False, share_nonlinearity=True),
        "VNBatchNorm": vn.VNBatchNorm(c),
        "VNLayerNorm": vn.VNLayerNorm(c),
        "VNDropout": vn.VNDropout(0.3),
        "VNSoftMaxPool": vn.VNSoftMaxPool(c, temperature=0.5),
        "mean_pool": vn.mean_pool,
    }


def _as_mode(layer, dtype, train):
    if isinstance(layer, nn.Module):
        layer = layer.to(dtype).train(train)
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [True, False])
@PROPERTY
@given(shape=shapes)
def test_every_layer_is_equivariant(dtype, train, shape):
    b, c, n, seed = shape
    torch.manual_seed(seed)
    x = _features(b, c, n, seed, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    for name, layer in _layers(c).items():
        if isinstance(layer, (vn.VNBatchNorm, vn.VNLinearLeakyReLU)) and train and b * n < 2:
            continue  # batch norm needs more than one value per channel in training
        err = check.equivariance_error(_as_mode(layer, dtype, train), x, n_rotations=3, generator=g)
        assert err < TOL[dtype], f"{name}: {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@PROPERTY
@given(shape=shapes)
def test_hard_max_pool_is_equivariant_away_from_ties(dtype, shape):
    """The argmax jumps where two projections tie; compare only channels with a clear winner."""
    b, c, n, seed = shape
    torch.manual_seed(seed)
    pool = vn.VNMaxPool(c).to(dtype)
    x = _features(b, c, n, seed, dtype)
    r = random_rotation(1, torch.Generator().manual_seed(seed), dtype)
    dot = (x * vn.vn_linear(x, pool.map_to_dir.weight)).sum(2)
    top2 = dot.topk(min(2, n), dim=-1).values
    clear = (top2[..., 0] - top2[..., -1]) > 1e-3 * top2.abs().amax(-1) if n > 1 else torch.ones_like(top2[..., 0], dtype=bool)
    with torch.no_grad():
        out, out_rot = rotate(pool(x), r, 2), pool(rotate(x, r, 2))
    assert clear.float().mean() > 0.5, "the test input has too few clear winners to check anything"
    diff = (out - out_rot).norm(dim=2)[clear]
    assert diff.max() / out.norm(dim=2)[clear].max() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@PROPERTY
@given(shape=shapes, orthonormal=st.booleans(), frame=st.sampled_from(vn.invariant.FRAMES))
def test_invariant_layer(dtype, shape, orthonormal, frame):
    b, c, n, seed = shape
    torch.manual_seed(seed)
    layer = vn.VNInvariant(c, orthonormal=orthonormal, frame=frame).to(dtype).eval()
    x = _features(b, c, n, seed, dtype)
    assert check.invariance_error(lambda v: layer(v)[0], x, n_rotations=3) < TOL[dtype]
    assert check.equivariance_error(lambda v: layer(v)[1], x, n_rotations=3) < TOL[dtype]
    frames = layer(x)[1]
    spread = (frames - frames[..., :1]).abs().amax()
    if frame == "shape":  # one frame shared by every point
        assert spread == 0
    else:  # per-point frames differ between points
        assert spread > 1e-3 * frames.abs().amax()
    if orthonormal:
        frame = layer(x)[1].movedim(-1, 1).reshape(-1, 3, 3)  # [B*N, 3 vectors, 3]
        eye = torch.eye(3, dtype=dtype).expand_as(frame)
        assert torch.allclose(frame @ frame.transpose(1, 2), eye, atol=TOL[dtype] * 10)
        assert torch.allclose(torch.linalg.det(frame), torch.ones(frame.shape[0], dtype=dtype), atol=TOL[dtype] * 10)


def _stack(dtype, train, exotic: bool) -> tuple[nn.Module, vn.VNInvariant]:
    """A small VN network. ``exotic`` chains a slope-0 shared ReLU after a layer norm: composites like
    that can have a large Lipschitz constant (a ReLU whose learned direction is tiny), which amplifies
    float32 rounding, so they are checked in float64 only."""
    torch.manual_seed(0)
    middle = [vn.VNLinearLeakyReLU(16, 16, share_nonlinearity=True), vn.VNLayerNorm(16)]
    head = [vn.VNLinear(16, 8), vn.VNLeakyReLU(8, 0.0 if exotic else 0.2, share_nonlinearity=exotic)]
    stack = nn.Sequential(vn.VNLinearLeakyReLU(2, 16), vn.VNDropout(0.2), *middle, *head)
    return stack.to(dtype).train(train), vn.VNInvariant(8).to(dtype).train(train)


def _rounding_error(f32, f64, x: torch.Tensor) -> float:
    """Relative distance between a float32 network and its float64 twin on the same input: the
    function's own float32 accuracy, which no rotation test can beat."""
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        a = f32(x)
        torch.manual_seed(0)
        b = f64(x.double())
    return ((a.double() - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("exotic", [False, True])
def test_stack_of_layers_train_and_eval(dtype, train, exotic):
    if exotic and dtype == torch.float32:
        pytest.skip("ill-conditioned composite: float64 only (see _stack)")
    stack, invariant = _stack(dtype, train, exotic)
    pool = vn.VNSoftMaxPool(8).to(dtype)
    x = _features(4, 2, 64, 0, dtype)
    assert check.equivariance_error(lambda v: pool(stack(v)), x) < TOL[dtype]
    readout = lambda v: invariant(stack(v))[0]  # noqa: E731
    tol = TOL[dtype]
    if dtype == torch.float32:
        # the frame MLP makes this a 9-layer chain; allow up to 4x its own float32 rounding error
        stack64, invariant64 = _stack(torch.float64, train, exotic)
        tol = max(tol, 4 * _rounding_error(readout, lambda v: invariant64(stack64(v))[0], x))
    assert check.invariance_error(readout, x) < tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_conv_with_dynamic_graph(dtype):
    torch.manual_seed(0)
    x = _features(2, 3, 48, 0, dtype)
    conv = vn.VNEdgeConv(3, 5, cross=True, pool=vn.VNSoftMaxPool(5)).to(dtype)
    # the graph is recomputed on the rotated input: kNN in feature space is invariant (float64 ties are
    # measure-zero; in float32 we fix the graph so that a near-tie cannot swap two neighbours)
    if dtype == torch.float64:
        f = lambda v: conv(v, vn.knn(v, 10))  # noqa: E731
    else:
        index = vn.knn(x, 10)
        f = lambda v: conv(v, index)  # noqa: E731
    assert check.equivariance_error(f, x) < TOL[dtype]


def test_fused_edge_conv_equals_edge_features_then_layer():
    torch.manual_seed(0)
    x = _features(2, 4, 40, 1, torch.float64)
    index = vn.knn(x, 7)
    for cross in (False, True):
        fused = vn.VNEdgeConv(4, 6, cross=cross).double()
        plain = vn.VNLinearLeakyReLU(12 if cross else 8, 6).double()
        with torch.no_grad():
            plain.map_to_feat.weight.copy_(fused.weight[:6])
            plain.map_to_dir.weight.copy_(fused.weight[6:])
        expected = plain(vn.edge_features(x, index, cross=cross)).mean(-1)
        assert torch.allclose(fused(x, index), expected, atol=1e-12)


def test_knn_matches_brute_force_and_chunks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 300, generator=g, dtype=torch.float64)
    index = vn.knn(x, 6, chunk=64)
    d = ((x.unsqueeze(-1) - x.unsqueeze(-2)) ** 2).sum(1)  # [B, N, N]
    expected = d.argsort(-1)[..., :6]
    assert torch.equal(index.sort(-1).values, expected.sort(-1).values)
    assert torch.equal(index[..., 0], torch.arange(300).expand(2, 300))  # the point itself comes first
    with pytest.raises(ValueError, match="k must be"):
        vn.knn(x, 301)


def test_knn_exact_far_from_the_origin():
    # a 0.01-sized cloud 1000 away: in float32, ‖x‖² + ‖y‖² − 2⟨x, y⟩ loses every digit of its distances
    g = torch.Generator().manual_seed(0)
    far = (0.01 * torch.rand(2, 3, 200, generator=g) + torch.tensor([1000.0, -700.0, 500.0]).view(1, 3, 1))
    d = ((far.double().unsqueeze(-1) - far.double().unsqueeze(-2)) ** 2).sum(1)
    assert torch.equal(vn.knn(far, 8).sort(-1).values, d.argsort(-1)[..., :8].sort(-1).values)


def test_knn_leaves_its_input_alone():
    points = torch.rand(2, 50, 3) + 5.0
    before = points.clone()
    vn.knn(vn.to_vn(points), 4)      # [B, 1, 3, N], a view of the points
    vn.knn(points.transpose(1, 2), 4)
    assert torch.equal(points, before)


def test_knn_graph_of_a_rotated_float32_cloud_is_the_same():
    # the fast formula's rounding (~1e-7 of ‖x‖²) reorders near-tied neighbours (this cloud has a few);
    # the exact recheck leaves only the rotation's own rounding of the coordinates
    g = torch.Generator().manual_seed(0)
    cloud = torch.randn(8, 3, 2048, generator=g, dtype=torch.float64)
    rotation = random_rotation(8, g, torch.float64)
    graph = vn.knn(cloud.float(), 20)
    rotated = vn.knn((rotation @ cloud).float(), 20)
    assert torch.equal(graph.sort(-1).values, rotated.sort(-1).values)


def test_gather_and_edge_features_layout():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float64).view(2, 1, 3, 4)
    index = torch.tensor([[[1, 2]] * 4, [[3, 0]] * 4])
    e = vn.edge_features(x, index, cross=True)
    assert e.shape == (2, 3, 3, 4, 2)
    assert torch.equal(e[1, 1, :, 2, 0], x[1, 0, :, 2])                     # x_i
    assert torch.equal(e[1, 0, :, 2, 0], x[1, 0, :, 3] - x[1, 0, :, 2])     # x_j − x_i
    assert torch.equal(e[0, 2, :, 0, 1], torch.linalg.cross(x[0, 0, :, 2], x[0, 0, :, 0]))


def test_leaky_relu_semantics():
    q = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64).view(1, 1, 3)
    k_along = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 1, 3)
    assert torch.equal(vn.vn_leaky_relu(q, k_along), q)                      # ⟨q, k⟩ > 0: unchanged
    out = vn.vn_leaky_relu(q, -k_along, negative_slope=0.0)                  # ⟨q, k⟩ < 0: component removed
    assert torch.allclose(out, torch.tensor([[[0.0, 2.0, 0.0]]], dtype=torch.float64), atol=1e-5)
    leaky = vn.vn_leaky_relu(q, -k_along, negative_slope=0.2)
    assert torch.allclose(leaky, 0.2 * q + 0.8 * out)
    assert torch.allclose(vn.vn_leaky_relu(q, -k_along, negative_slope=1.0), q)
    assert torch.equal(vn.vn_leaky_relu(q, torch.zeros_like(q)), q)          # k = 0 is safe


def test_max_pool_picks_best_projection_and_soft_pool_trains_direction():
    torch.manual_seed(0)
    x = _features(2, 3, 20, 0, torch.float64, ).requires_grad_()
    hard, soft = vn.VNMaxPool(3).double(), vn.VNSoftMaxPool(3, temperature=1e-4).double()
    soft.map_to_dir.weight.data.copy_(hard.map_to_dir.weight.data)
    dot = (x * vn.vn_linear(x, hard.map_to_dir.weight)).sum(2)
    best = dot.argmax(-1)
    expected = x.gather(-1, best[:, :, None, None].expand(2, 3, 3, 1)).squeeze(-1)
    assert torch.equal(hard(x), expected)
    assert torch.allclose(soft(x), expected, atol=1e-6)  # tiny temperature ~ hard max
    hard(x).sum().backward()
    assert hard.map_to_dir.weight.grad is None or not hard.map_to_dir.weight.grad.any()
    warm = vn.VNSoftMaxPool(3, temperature=1.0).double()
    warm(x).pow(2).sum().backward()
    assert warm.map_to_dir.weight.grad.abs().sum() > 0


def test_batch_norm_normalises_norms_and_uses_running_stats_in_eval():
    torch.manual_seed(0)
    bn = vn.VNBatchNorm(4).double()
    scales = torch.tensor([1.0, 5.0, 0.1, 2.0], dtype=torch.float64).view(1, 4, 1, 1)
    x = _features(8, 4, 50, 0, torch.float64) * scales
    y = bn(x)
    # every output vector is parallel to its input, with signed length BN(‖v‖) (batch statistics)
    assert torch.linalg.cross(y, x, dim=2).abs().max() < 1e-12
    signed_length = (y * x).sum(2) / vn.vector_norm(x)
    norm = vn.vector_norm(x)
    mean, var = norm.mean((0, 2), keepdim=True), norm.var((0, 2), unbiased=False, keepdim=True)
    assert torch.allclose(signed_length, (norm - mean) / (var + 1e-5).sqrt(), atol=1e-10)
    bn.eval()
    assert torch.allclose(bn(x[:1]), bn(torch.cat([x[:1], 10 * x[1:]]))[:1])  # eval: no batch coupling
    running = bn.bn.running_mean.view(1, 4, 1)
    assert torch.allclose(running, 0.1 * mean)  # one update with momentum 0.1 from zero


def test_dropout_drops_whole_vectors():
    torch.manual_seed(0)
    x = torch.ones(4, 16, 3, 32)
    y = vn.VNDropout(0.5).train()(x)
    per_vector = y.eq(0).all(2) | y.eq(2).all(2)
    assert per_vector.all()
    assert 0.3 < y.eq(0).float().mean() < 0.7
    assert torch.equal(vn.VNDropout(0.5).eval()(x), x)


def _all_layers_and_inputs(x):
    layers = list(_layers(3).values()) + [vn.VNMaxPool(3)]
    for layer in layers:
        yield (layer, x)
    inv = vn.VNInvariant(3)
    yield (lambda v: inv(v)[0], x)
    conv = vn.VNEdgeConv(3, 4, cross=True)
    yield (lambda v: conv(v, vn.knn(v, 5)), x)


@pytest.mark.parametrize("case", ["zeros", "duplicates"])
def test_zero_vectors_and_duplicate_points_are_finite(case):
    torch.manual_seed(0)
    x = torch.zeros(2, 3, 3, 16) if case == "zeros" else torch.randn(2, 3, 3, 1).expand(2, 3, 3, 16).clone()
    x.requires_grad_()
    for layer, inp in _all_layers_and_inputs(x):
        out = layer(inp)
        assert torch.isfinite(out).all()
        (grad,) = torch.autograd.grad(out.pow(2).sum() + out.sum(), inp, allow_unused=True)
        assert grad is None or torch.isfinite(grad).all()
        if isinstance(layer, nn.Module):
            for p in layer.parameters():
                if p.grad is not None:
                    assert torch.isfinite(p.grad).all()


def test_wrong_layout_raises_with_expected_layout():
    points = torch.randn(2, 100, 3)  # [B, N, 3] given to a layer that expects [B, C, 3, N]
    for layer in [vn.VNLinear(4, 4), vn.VNLinearLeakyReLU(4, 4), vn.VNBatchNorm(4), vn.VNMaxPool(4),
                  vn.VNLayerNorm(4), vn.VNLeakyReLU(4), vn.VNInvariant(4)]:
        with pytest.raises(ValueError, match=r"\[B, 4, 3, N, \.\.\.\]"):
            layer(points)
    with pytest.raises(ValueError, match="to_vn"):
        vn.VNEdgeConv(1, 4)(points, torch.zeros(2, 100, 5, dtype=torch.long))
    assert vn.to_vn(points).shape == (2, 1, 3, 100)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        vn.to_vn(torch.randn(2, 3, 100))


def _twin_batchnorms(train: bool) -> tuple[vn.VNBatchNorm, vn.VNBatchNorm]:
    """Two float64 ``VNBatchNorm(4)`` with the same random affine and running statistics, in one mode."""
    plain, other = vn.VNBatchNorm(4).double(), vn.VNBatchNorm(4).double()
    with torch.no_grad():
        plain.bn.weight.uniform_(0.5, 1.5), plain.bn.bias.uniform_(-0.5, 0.5)
        plain.bn.running_mean.uniform_(0, 1), plain.bn.running_var.uniform_(0.5, 1)
    other.load_state_dict(plain.state_dict())
    plain.train(train), other.train(train)
    return plain, other


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("directions,mean_last", [(4, False), (1, False), (4, True)])
def test_fused_batchnorm_leaky_relu_matches_composition(train, directions, mean_last):
    from priors3d.vn.fused import _BatchNormLeakyReLU, vn_batchnorm_leaky_relu

    torch.manual_seed(0)
    both = torch.randn(3, 4 + directions, 3, 5, 2, dtype=torch.float64, requires_grad=True)
    q, k = both[:, :4], both[:, 4:]
    plain, fused = _twin_batchnorms(train)
    expected = vn.vn_leaky_relu(plain(q), k, 0.2)
    expected = expected.mean(-1) if mean_last else expected
    out = vn_batchnorm_leaky_relu(both, 4, fused.bn, 0.2, mean_last)
    assert torch.allclose(out, expected, atol=1e-13)
    for name, buffer in plain.bn.named_buffers():
        assert torch.allclose(buffer.double(), getattr(fused.bn, name).double()), name
    g = torch.randn_like(out)
    wrt = lambda m: [both, m.bn.weight, m.bn.bias]  # noqa: E731
    for a, b in zip(torch.autograd.grad(expected, wrt(plain), g), torch.autograd.grad(out, wrt(fused), g)):
        assert torch.allclose(a, b, atol=1e-12)
    stats = (None, None) if train else (fused.bn.running_mean, fused.bn.running_var)
    weight, bias = fused.bn.weight.detach().clone().requires_grad_(), fused.bn.bias.detach().clone().requires_grad_()
    f = lambda x, w, b: _BatchNormLeakyReLU.apply(x, 4, w, b, *stats, train, 0.1, 1e-5, 0.2, mean_last)  # noqa: E731
    assert torch.autograd.gradcheck(f, (both, weight, bias))
    with pytest.raises(ValueError, match="C = 4"):
        vn_batchnorm_leaky_relu(torch.randn(3, 6, 3, 5, dtype=torch.float64), 4, fused.bn, 0.2)


@pytest.mark.parametrize("train", [True, False])
def test_edgeconv_kernel_matches_gathered_edges_then_fused_norm(train):
    from priors3d.vn.fused import _EdgeConvMean, vn_batchnorm_leaky_relu, vn_edgeconv_mean

    torch.manual_seed(0)
    per_neighbor = torch.randn(2, 8, 3, 12, dtype=torch.float64, requires_grad=True)
    per_center = torch.randn(2, 8, 3, 12, dtype=torch.float64, requires_grad=True)
    index = vn.knn(per_neighbor.detach(), 4)
    plain, kernel = _twin_batchnorms(train)
    edges = vn.gather_neighbors(per_neighbor, index) + per_center.unsqueeze(-1)
    expected = vn_batchnorm_leaky_relu(edges, 4, plain.bn, 0.2, mean_last=True)
    out = vn_edgeconv_mean(per_neighbor, per_center, index, 4, kernel.bn, 0.2)
    assert torch.allclose(out, expected, atol=1e-13)
    for name, buffer in plain.bn.named_buffers():
        assert torch.equal(buffer, getattr(kernel.bn, name)), name
    g = torch.randn_like(out)
    wrt = lambda m: [per_neighbor, per_center, m.bn.weight, m.bn.bias]  # noqa: E731
    for a, b in zip(torch.autograd.grad(expected, wrt(plain), g), torch.autograd.grad(out, wrt(kernel), g)):
        assert torch.allclose(a, b, atol=1e-12)
    stats = (None, None) if train else (kernel.bn.running_mean, kernel.bn.running_var)
    weight, bias = (p.detach().clone().requires_grad_() for p in (kernel.bn.weight, kernel.bn.bias))
    f = lambda pn, pc, w, b: _EdgeConvMean.apply(pn, pc, index, 4, w, b, *stats, train, 0.1, 1e-5, 0.2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (per_neighbor, per_center, weight, bias))
    with pytest.raises(ValueError, match=r"\[B, N, k\]"):
        vn_edgeconv_mean(per_neighbor, per_center, index[:, :5], 4, kernel.bn, 0.2)


def test_workspace_keeps_its_buffers_and_refuses_overlapping_use():
    from priors3d.vn import workspace

    space, like = workspace.Workspace(), torch.zeros(1)
    with space.borrow(like) as new:
        first = new("edges", (4, 5)).data_ptr()
        with pytest.raises(RuntimeError, match="twice"):
            new("edges", (4, 5))
        with pytest.raises(RuntimeError, match="re-entrant"):
            with space.borrow(like):
                pass
    with space.borrow(like) as new:
        assert new("edges", (2, 3)).data_ptr() == first      # a smaller request reuses the buffer
        assert new("n", (3,), torch.bool).dtype == torch.bool
    assert space.nbytes() == 20 * 4 + 3
    with space.borrow(like) as new:
        assert new("edges", (5, 5)).shape == (5, 5)           # grown
    assert space.nbytes() == 25 * 4 + 3
    space.clear()
    assert space.nbytes() == 0


def test_edgeconv_kernel_reuses_its_workspace_between_steps():
    from priors3d.vn import workspace

    workspace.release()
    conv = vn.VNEdgeConv(3, 5, recompute=True).double()
    x = _features(2, 3, 40, 0, torch.float64)
    index = vn.knn(x, 8)
    conv(x, index).square().sum().backward()
    held = workspace.workspace().nbytes()
    assert held > 0
    for _ in range(2):
        conv(x, index).square().sum().backward()
    assert workspace.workspace().nbytes() == held
    workspace.release()
    assert workspace.workspace().nbytes() == 0


@pytest.mark.parametrize("orthonormal", [False, True])
def test_invariant_layer_mean_split_equals_concatenation(orthonormal):
    torch.manual_seed(0)
    layer = vn.VNInvariant(5, orthonormal=orthonormal).double()
    x = _features(3, 5, 40, 0, torch.float64)
    features, frame = layer(x)
    full = torch.cat([x, x.mean(-1, keepdim=True).expand_as(x)], dim=1)
    expected = layer.frame_mlp(full)
    if orthonormal:
        expected = vn.orthonormalize(expected)
    assert torch.allclose(frame, expected, atol=1e-12)
    assert torch.allclose(features, torch.einsum("bcxn,bkxn->bckn", full, expected), atol=1e-12)


def test_knn_refuses_points_in_the_wrong_layout():
    points = torch.randn(2, 64, 3)
    with pytest.raises(ValueError, match="looks like points"):
        vn.knn(points, k=3)
    assert vn.knn(points.transpose(1, 2), k=3).shape == (2, 64, 3)


def test_a_layer_names_a_dtype_mismatch():
    with pytest.raises(ValueError, match="VNLinear has torch.float32 parameters but got torch.float64"):
        vn.VNLinear(2, 4)(torch.randn(1, 2, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="VNLinearLeakyReLU has torch.float32"):
        vn.VNLinearLeakyReLU(2, 4)(torch.randn(1, 2, 3, 5, dtype=torch.float64))
