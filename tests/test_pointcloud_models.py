"""Point-cloud models: rotation invariance of the VN models (and its absence in the plain ones), shapes,
pooling options, gradients, and the fused plain EdgeConv against the edge-tensor formula.

Tolerances: float64 outputs agree to ~1e-15 relative, we require < 1e-10; float32 (epsilon 1.2e-7,
a dozen layers with sums over a few hundred channels) to ~1e-6, we require < 1e-4. Batch-norm
running statistics are first set from a real batch, so eval-mode outputs are not degenerate.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from priors3d import check
from priors3d.pointcloud.models import MODELS, EdgeConv, build_model, is_equivariant
from priors3d.pointcloud.models.heads import SegmentationHead, classifier
from priors3d.pointcloud.train import PointCloudTrainConfig, resolve
from priors3d.so3 import random_rotation, rotate
from priors3d.vn import knn

B, N, K, CLASSES, PARTS = 2, 48, 6, 5, 7


def settle(model: nn.Module, inputs) -> nn.Module:
    """Running statistics of every batch norm := one training batch's statistics; then eval mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(*inputs)
    return model.eval()


def make(name, task, dtype, seed=0, **kwargs):
    """A model whose running statistics come from 8 clouds, and a batch of B = 2 of them to test it on.

    Statistics from 2 clouds alone would make per-shape features (one value per cloud) nearly constant in
    some channels, so that their batch norms divide float32 rounding by a tiny variance.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(4 * B, N, 3, generator=g, dtype=dtype)
    category = F.one_hot(torch.arange(4 * B) % CLASSES, CLASSES).to(dtype)
    inputs = (points,) if task == "cls" else (points, category)
    model = build_model(name, task, CLASSES, PARTS, k=K, width_divisor=4, **kwargs).to(dtype)
    return settle(model, inputs), tuple(x[:B] for x in inputs)


def invariance(model, inputs, n=3):
    dims = (-1,) if len(inputs) == 1 else (-1, None)
    return check.invariance_error(model, inputs, vector_dim=dims, n_rotations=n,
                                  generator=torch.Generator().manual_seed(1))


CASES = [(name, task) for name in MODELS for task in ("cls", "seg")]


@pytest.mark.parametrize("name,task", CASES)
def test_output_shapes(name, task):
    model, inputs = make(name, task, torch.float32)
    out = model(*inputs)
    assert out.shape == ((B, CLASSES) if task == "cls" else (B, N, PARTS))
    assert torch.isfinite(out).all()
    # not a constant function: two different clouds give clearly different outputs
    assert (out[0] - out[1]).norm() > 1e-3 * out.norm()


@pytest.mark.parametrize("frame", ["point", "shape"])
@pytest.mark.parametrize("name,task", [c for c in CASES if is_equivariant(c[0])])
def test_vn_models_invariant_float64(name, task, frame):
    model, inputs = make(name, task, torch.float64, frame=frame)
    assert invariance(model, inputs) < 1e-10


@pytest.mark.parametrize("frame", ["point", "shape"])
@pytest.mark.parametrize("name,task", [c for c in CASES if is_equivariant(c[0])])
def test_vn_models_invariant_float32_same_predictions(name, task, frame):
    model, inputs = make(name, task, torch.float32, frame=frame)
    assert invariance(model, inputs) < 1e-4
    with torch.no_grad():
        reference = model(*inputs).argmax(-1)
        for rotation in random_rotation(3, torch.Generator().manual_seed(2)):
            rotated = (rotate(inputs[0], rotation),) + inputs[1:]
            assert torch.equal(model(*rotated).argmax(-1), reference)


@pytest.mark.parametrize("name,task", [c for c in CASES if not is_equivariant(c[0])])
def test_plain_models_not_invariant(name, task):
    model, inputs = make(name, task, torch.float64)
    assert invariance(model, inputs) > 1e-2


@pytest.mark.parametrize("pooling", ["max", "softmax"])
@pytest.mark.parametrize("name", ["vn_dgcnn", "vn_pointnet"])
def test_pooling_options_invariant(name, pooling):
    model, inputs = make(name, "cls", torch.float64, pooling=pooling)
    assert invariance(model, inputs, n=2) < 1e-10


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    model, inputs = make(name, "seg", torch.float32)
    model.train()
    model(*inputs).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_plain_edgeconv_matches_edge_tensor_formula():
    torch.manual_seed(0)
    conv = EdgeConv(5, 8, second=True).double().train()
    x = torch.randn(2, 5, 30, dtype=torch.float64)
    index = knn(x, 4)
    neighbors = x.unsqueeze(-1).expand(-1, -1, -1, 4).gather(2, index.unsqueeze(1).expand(-1, 5, -1, -1))
    center = x.unsqueeze(-1).expand_as(neighbors)
    edges = torch.cat([neighbors - center, center], dim=1)                       # [B, 2C, N, k]
    expected = conv.second(conv.post(torch.einsum("oc,bcnk->bonk", conv.weight, edges))).amax(-1)
    assert torch.allclose(conv(x, index), expected, atol=1e-12)


def test_segmentation_head_is_blind_to_the_scale_of_each_input():
    """The head batch-normalises local and global features separately: rescaling one (as the products of
    vector norms in VN invariants do) changes nothing in training mode, where without the norms it would."""
    torch.manual_seed(0)
    head = SegmentationHead(6, 10, CLASSES, PARTS, dropout=0.0).double().train()
    local, global_feature = torch.randn(8, 6, N, dtype=torch.float64), torch.randn(8, 10, dtype=torch.float64)
    category = F.one_hot(torch.arange(8) % CLASSES, CLASSES).double()
    reference = head(local, global_feature, category)
    # equal up to batch norm's ε = 1e-5 against variances of order 1 (8 samples): < 1e-4 relative
    assert torch.allclose(head(local * 300.0, global_feature, category), reference, atol=1e-4)
    assert torch.allclose(head(local, global_feature * 300.0, category), reference, atol=1e-4)
    assert not torch.allclose(head(local, global_feature.flip(0), category), reference, atol=1e-2)


def test_classifier_is_blind_to_the_scale_of_its_input_channels():
    torch.manual_seed(0)
    head = classifier(10, CLASSES, dropout=0.0).double().train()
    features = torch.randn(8, 10, dtype=torch.float64)
    scales = torch.logspace(0, 4, 10, dtype=torch.float64)  # per channel, as VN invariants differ
    assert torch.allclose(head(features * scales), head(features), atol=1e-4)


def test_frame_and_lr_defaults():
    assert resolve(PointCloudTrainConfig(task="cls")).frame == "point"
    assert resolve(PointCloudTrainConfig(task="seg")).frame == "shape"
    assert resolve(PointCloudTrainConfig(task="seg", frame="point")).frame == "point"
    assert resolve(PointCloudTrainConfig(task="seg", paper=True)).frame == "point"
    assert resolve(PointCloudTrainConfig()).lr == 1e-2 and resolve(PointCloudTrainConfig(paper=True)).lr == 0.1


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("pointnet++", "cls", 3)
    with pytest.raises(ValueError, match="num_parts"):
        build_model("vn_dgcnn", "seg", 3)
    with pytest.raises(ValueError, match="pooling"):
        build_model("vn_dgcnn", "cls", 3, pooling="median")
    model = build_model("vn_pointnet", "cls", 3, k=4, width_divisor=4)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        model(torch.randn(2, 3, 40))
    seg = build_model("dgcnn", "seg", 3, 5, k=4, width_divisor=4)
    with pytest.raises(ValueError, match="one-hot"):
        seg(torch.randn(2, 40, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_recomputed_edgeconvs_same_values_gradients_and_running_stats(task):
    outputs = {}
    for recompute in (False, True):
        model, inputs = make("vn_dgcnn", task, torch.float64, recompute=recompute)
        model.train()
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.5
        torch.manual_seed(7)
        out = model(*inputs)
        out.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        stats = {n: b.clone() for n, b in model.named_buffers()}
        outputs[recompute] = (out.detach(), grads, stats)
    (out0, grads0, stats0), (out1, grads1, stats1) = outputs[False], outputs[True]
    assert torch.allclose(out0, out1, atol=1e-12)
    assert grads0.keys() == grads1.keys() and stats0.keys() == stats1.keys()  # same parameter names either way
    for name in grads0:
        assert torch.allclose(grads0[name], grads1[name], atol=1e-10), name
    for name in stats0:
        assert torch.equal(stats0[name], stats1[name]), name
