"""Propagation and edits on a toy field whose Jacobians are known.

The field is an opaque slab at z = 0 whose colour is ``sigmoid(W onehot(x < 0, x >= 0))``: with
``theta_D = W`` a pixel's Jacobian lives in W's first column when its ray hits ``x < 0`` and in
the second otherwise, so the two halves never resonate and labels must follow the sign of x.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from priors3d.fields.render import FieldSetup
from priors3d.fields.views import Scene, Views
from priors3d.shaping.baseline import SemanticHead
from priors3d.shaping.edit import edit_picture, recolor, select
from priors3d.metrics import label_map_metrics
from priors3d.shaping.clicks import Click, auto_clicks
from priors3d.shaping.propagate import render_grey, view_rays
from priors3d.shaping.shape import propagate_labels
from priors3d.viz import label_pictures


class HalfPlanes(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.5, -0.3], [0.1, 0.4], [-0.2, 0.2]]))

    @staticmethod
    def rgb_head_parameter_names():
        return ("head.weight",)

    def forward(self, positions, directions=None):
        sigma = 80.0 * (positions[..., 2].abs() < 0.15).to(positions.dtype)
        if directions is None:
            return sigma, None
        side = (positions[..., 0] >= 0).to(positions.dtype)
        onehot = torch.stack([1.0 - side, side], dim=-1)
        return sigma, torch.sigmoid(self.head(onehot))


def toy_views(n=2, size=8):
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 2, 3] = 2.0
    c2w[:, 0, 3] = torch.linspace(-0.3, 0.3, n)
    intrinsics = torch.tensor([[4.0, 4.0, size / 2, size / 2]]).repeat(n, 1)
    views = Views(torch.zeros(n, size, size, 3), c2w, intrinsics, [f"v{i}" for i in range(n)])
    o, d, _, _ = view_rays(views, SETUP)
    x = (o + 2.0 / -d[..., 2:] * d)[..., 0].reshape(n, size, size)  # where each ray meets z = 0
    views.semantic = (x >= 0).long()
    return views


SETUP = FieldSetup(scene="toy", aabb=(-3.0, -3.0, -1.0, 3.0, 3.0, 1.0), near=0.05, far=4.0, n_samples=48,
                   n_proposal=0)


@pytest.mark.parametrize("method", ["first-order", "perturb", "3d"])
def test_propagation_recovers_the_half_planes(method):
    views = toy_views()
    clicks = auto_clicks(views.semantic, view=0)
    assert sorted(c.label for c in clicks) == [0, 1]
    result = propagate_labels(HalfPlanes(), SETUP, views, views, clicks, 2, method)
    assert torch.equal(result["labels"], views.semantic)
    assert result["responses"].shape == (2, 8, 8, 2)
    assert label_map_metrics(result["labels"], views.semantic, 2)["miou"] == 1.0


def test_no_response_threshold_and_unclicked_classes():
    views = toy_views()
    clicks = [c for c in auto_clicks(views.semantic, view=0) if c.label == 1]
    result = propagate_labels(HalfPlanes(), SETUP, views, views, clicks, 2, "first-order", min_response=0.5)
    assert torch.equal(result["labels"] == 1, views.semantic == 1)
    assert bool((result["labels"][views.semantic == 0] == -1).all())  # no response, not class 0


def test_select_and_recolor_change_only_the_resonating_half(tmp_path):
    views = toy_views()
    model = HalfPlanes()
    click = Click(0, 1, 4)
    masks, _ = select(model, SETUP, views, views, click, threshold=0.9)
    assert torch.equal(masks, views.semantic == views.semantic[0, 4, 1])
    target = (0.1, 0.8, 0.3)
    edited = recolor(model, SETUP, views, click, target)
    before = render_grey(model, SETUP, views, rgb=True)
    after = render_grey(edited, SETUP, views, rgb=True)
    torch.testing.assert_close(after[0, 4, 1], torch.tensor(target), atol=2e-3, rtol=0)
    same = views.semantic != views.semantic[0, 4, 1]
    torch.testing.assert_close(after[same], before[same])
    assert (after[~same] - before[~same]).abs().max() > 0.1
    picture = edit_picture(before, after, masks)
    assert picture.shape == (2 * 2 * 8, 2 * 3 * 8, 3) and picture.dtype == np.uint8


class SharedFeature(HalfPlanes):
    """Half planes plus a feature both halves share, so the click's own gradient also moves the other half."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.5, -0.3, 0.2], [0.1, 0.4, -0.1], [-0.2, 0.2, 0.3]]))

    def forward(self, positions, directions=None):
        sigma, rgb = super().forward(positions, None)
        if directions is None:
            return sigma, None
        side = (positions[..., 0] >= 0).to(positions.dtype)
        features = torch.stack([1.0 - side, side, torch.ones_like(side)], dim=-1)
        return sigma, torch.sigmoid(self.head(features))


def test_recolor_holds_the_non_resonating_pixels_of_the_click_view():
    views, model, click, target = toy_views(), SharedFeature(), Click(0, 1, 4), (0.1, 0.8, 0.3)
    other = views.semantic != views.semantic[0, 4, 1]
    before = render_grey(model, SETUP, views, rgb=True)
    moved = {}
    for keep in (0, 512):
        after = render_grey(recolor(model, SETUP, views, click, target, keep=keep), SETUP, views, rgb=True)
        torch.testing.assert_close(after[0, 4, 1], torch.tensor(target), atol=2e-3, rtol=0)
        moved[keep] = float((after[other] - before[other]).abs().max())
    assert moved[0] > 0.1 and moved[512] < 0.01  # the plain minimum-norm step moves the other half; this one not


def test_label_pictures_are_written(tmp_path):
    views = toy_views()
    scene = Scene(train=views, test=views, class_names=["left", "right"],
                  class_colors=torch.tensor([[255, 0, 0], [0, 0, 255]], dtype=torch.uint8))
    path = label_pictures(tmp_path / "labels.png", scene, views.semantic, views.semantic)
    image = np.asarray(Image.open(path))
    assert image.shape == (2 * 2 * 8, 2 * 3 * 8, 3)
    assert not list(tmp_path.glob(".*tmp"))
    assert (image[0, 2 * 8] == [255, 0, 0]).all()  # truth column, class 0: the scene's colour
    instances = views.semantic + 2 * (views.semantic >= 0)  # ids 2, 3: beyond the two class colours
    image = np.asarray(Image.open(label_pictures(tmp_path / "instances.png", scene, instances, instances)))
    assert image.shape == (2 * 2 * 8, 2 * 3 * 8, 3)


def test_semantic_head_shapes():
    head = SemanticHead(5, 3)
    assert head(torch.zeros(4, 7, 5)).shape == (4, 7, 3)


def test_bad_clicks_are_rejected():
    views, model = toy_views(), HalfPlanes()
    with pytest.raises(ValueError, match="0/8/0 is outside the 2 views of 8x8 pixels"):
        propagate_labels(model, SETUP, views, views, [Click(0, 1, 1, 0), Click(0, 8, 0, 1)], 2)
    with pytest.raises(ValueError, match="every click needs a class"):
        propagate_labels(model, SETUP, views, views, [Click(0, 1, 1)], 2)
    with pytest.raises(ValueError, match="need at least one click"):
        propagate_labels(model, SETUP, views, views, [], 2)
    with pytest.raises(ValueError, match=r"click labels must be in 0..1, got \[0, 2\]"):
        propagate_labels(model, SETUP, views, views, [Click(0, 1, 1, 0), Click(0, 6, 1, 2)], 2)
    with pytest.raises(ValueError, match="2/0/0 is outside"):
        select(model, SETUP, views, views, Click(2, 0, 0))
