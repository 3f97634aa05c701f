import math
from pathlib import Path

import pytest
import torch

from priors3d.shaping.losses import info_nce, jacobian_cosines, norm_penalty, shaping_loss
from priors3d.metrics import label_map_metrics
from priors3d.shaping.pairs import adaptive_feature_pairs, corrupt_masks, mask_pairs
from priors3d.shaping.shape import ShapeConfig, jacobian_batch, jacobian_pixels


def test_info_nce_matches_hand_computation():
    cos = torch.tensor([[1.0, 0.8, 0.1], [0.8, 1.0, 0.3], [0.1, 0.3, 1.0]])
    pos = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    tau = 0.5
    a0 = -math.log(math.exp(0.8 / tau) / (math.exp(0.8 / tau) + math.exp(0.1 / tau)))
    a1 = -math.log(math.exp(0.8 / tau) / (math.exp(0.8 / tau) + math.exp(0.3 / tau)))
    assert info_nce(cos, pos, tau).item() == pytest.approx((a0 + a1) / 2, rel=1e-6)


def test_info_nce_averages_over_several_positives_and_ignores_the_diagonal():
    cos = torch.tensor([[5.0, 0.5, 0.2, 0.9], [0.5, 5.0, 0.0, 0.0], [0.2, 0.0, 5.0, 0.0], [0.9, 0.0, 0.0, 5.0]])
    pos = torch.zeros(4, 4, dtype=torch.bool)
    pos[0, 1] = pos[0, 2] = pos[0, 0] = True
    z = math.exp(0.5) + math.exp(0.2) + math.exp(0.9)
    expected = -(math.log(math.exp(0.5) / z) + math.log(math.exp(0.2) / z)) / 2
    assert info_nce(cos, pos, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert info_nce(cos, torch.zeros_like(pos)).item() == 0.0


def test_absolute_cosine_and_norm_penalty():
    j = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]])
    assert jacobian_cosines(j)[0, 1].item() == pytest.approx(1.0)
    assert jacobian_cosines(j, absolute=False)[0, 1].item() == pytest.approx(-1.0)
    assert norm_penalty(j).item() == pytest.approx((0 + 1 + 4) / 3)
    parts = shaping_loss(torch.tensor(0.5), j, mask_pairs(torch.tensor([0, 0, 1])), lam=2.0, gamma=3.0)
    assert parts["loss"].item() == pytest.approx(0.5 + 2 * parts["mi"].item() + 3 * parts["norm"].item())


def test_mask_pairs_same_id_same_view_no_void():
    ids = torch.tensor([0, 0, 1, -1, -1, 0])
    views = torch.tensor([0, 0, 0, 0, 0, 1])
    pairs = mask_pairs(ids, views)
    assert pairs[0, 1] and pairs[1, 0] and not pairs[0, 0]
    assert not pairs[3, 4] and not pairs[0, 5] and not pairs[0, 2]
    assert pairs.sum() == 2


def positive_ratio(pairs):
    """Fraction of the ``N (N - 1)`` off-diagonal pairs that are positive."""
    n = pairs.shape[0]
    return float(pairs.sum()) / max(n * (n - 1), 1)


def test_adaptive_threshold_keeps_positive_ratio_in_band():
    feats = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    for start in (-0.9, 0.0, 0.95):
        pairs, threshold = adaptive_feature_pairs(feats, start)
        assert 0.05 <= positive_ratio(pairs) <= 0.15
        assert not pairs.diagonal().any()


def test_corrupt_masks():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    labels[:, 0, 0] = -1
    assert torch.equal(corrupt_masks(labels), labels)
    merged = corrupt_masks(labels, merge=1.0, generator=g)
    assert all(len(merged[v][merged[v] >= 0].unique()) == 1 for v in range(2))
    split = corrupt_masks(labels, split=1.0, generator=g)
    assert all(len(split[v][split[v] >= 0].unique()) > 2 for v in range(2))
    new = [set(split[v].unique().tolist()) - {-1, 0, 1} for v in range(2)]
    assert new[0] and new[1] and not new[0] & new[1]  # split-off parts of different views never share an id
    noisy = corrupt_masks(labels, noise=0.5, generator=g)
    assert (noisy == -1).sum() == 2 and 0 < (noisy != labels).sum() < labels.numel()


def test_segmentation_metrics_by_hand():
    target = torch.tensor([0, 0, 1, 1, -1, 2])
    pred = torch.tensor([0, 1, 1, -1, 0, 2])
    m = label_map_metrics(pred, target, 4)
    # class 0: tp 1, gt 2, pred 1 -> IoU 1/2; class 1: tp 1, gt 2, pred 2 -> 1/3; class 2: 1; class 3 absent
    assert m["miou"] == pytest.approx((0.5 + 1 / 3 + 1) / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["class_accuracy"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["classes"] == [0, 1, 2]


def test_balanced_jacobian_pixels_draw_every_mask_equally_and_never_void():
    ids = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(90, dtype=torch.long),
                     torch.full((10,), 2), torch.full((24,), -1)])
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(200):
        pix = jacobian_pixels(ids, len(ids), 12, True, generator)
        assert len(pix.unique()) == 12 and bool((ids[pix] >= 0).all())
        counts += torch.bincount(ids[pix], minlength=3)
    assert torch.allclose(counts / counts.sum(), torch.full((3,), 1 / 3), atol=0.05)  # uniform would give 0.88
    uniform = jacobian_pixels(ids, len(ids), 1024, False, generator)
    assert sorted(uniform.tolist()) == list(range(len(ids)))


def test_jacobian_batch_splits_pixels_over_distinct_views():
    masks = torch.arange(6).repeat_interleave(50).reshape(6, 5, 10) % 3  # 6 views of 50 pixels, 3 masks each
    generator = torch.Generator().manual_seed(0)
    cfg = ShapeConfig(run=Path("unused"), jacobian_rays=24, views_per_step=3)
    view, pix = jacobian_batch(masks, 6, 50, cfg, generator)
    assert view.shape == pix.shape == (24,)
    assert len(view.unique()) == 3 and torch.bincount(view, minlength=6).max() == 8
    assert len(set(zip(view.tolist(), pix.tolist()))) == 24  # no pixel twice
    one_view, _ = jacobian_batch(masks, 6, 50, ShapeConfig(run=Path("unused"), jacobian_rays=24), generator)
    assert len(one_view.unique()) == 1
    with pytest.raises(ValueError, match="per-view ids"):
        ShapeConfig(run=Path("unused"), views_per_step=2, pairs="segments")
