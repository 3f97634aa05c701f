"""Positive pairs for shaping: from per-pixel features (adaptive cosine threshold) or from masks.

A pair matrix is ``[N, N]`` bool with ``pairs[i, j]`` true when pixels ``i`` and ``j`` should
resonate; the diagonal is always false. Mask ids are compared within one view only (like SAM
masks, whose ids mean nothing across images); ``-1`` is void and pairs with nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mask_pairs(ids: Tensor, views: Tensor | None = None) -> Tensor:
    """``[N] -> [N, N]``: same non-void mask id (and same view when ``views [N]`` is given)."""
    if ids.ndim != 1 or (views is not None and views.shape != ids.shape):
        raise ValueError(f"ids must be [N] and views [N] or None, got {list(ids.shape)} and "
                         f"{None if views is None else list(views.shape)}")
    same = (ids[:, None] == ids[None, :]) & (ids[:, None] >= 0)
    if views is not None:
        same = same & (views[:, None] == views[None, :])
    return same & ~torch.eye(ids.shape[0], dtype=torch.bool, device=ids.device)


def adaptive_feature_pairs(features: Tensor, threshold: float, low: float = 0.05, high: float = 0.15,
                           step: float = 0.01, max_steps: int = 200) -> tuple[Tensor, float]:
    """Pairs of ``features [N, D]`` whose cosine exceeds a threshold moved until the positive ratio lies in
    ``[low, high]``.

    The threshold rises by ``step`` while more than ``high`` of the pairs are positive and falls
    while fewer than ``low`` are (at most ``max_steps`` moves), as JacobiNeRF does per batch;
    carry the returned threshold to the next batch.

    Returns:
        pairs ``[N, N]`` bool and the threshold used.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got {list(features.shape)}")
    unit = F.normalize(features.float(), dim=-1)
    cos = unit @ unit.T
    off = ~torch.eye(cos.shape[0], dtype=torch.bool, device=cos.device)
    values = cos[off]
    for _ in range(max_steps):
        ratio = float((values > threshold).float().mean()) if values.numel() else 0.0
        if ratio > high:
            threshold += step
        elif ratio < low:
            threshold -= step
        else:
            break
    return (cos > threshold) & off, threshold


def corrupt_masks(labels: Tensor, merge: float = 0.0, split: float = 0.0, noise: float = 0.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """Damage per-view mask maps ``[V, H, W]`` (``-1`` void) the way real mask sources err.

    Args:
        merge: probability that a mask of a view is merged into another mask of the same view.
        split: probability that a mask is cut in two by a random line through its centroid.
        noise: fraction of non-void pixels that get a random mask id of their view.

    Merged masks take another mask's id and noisy pixels a random id present in their view; split-off parts
    get new ids used nowhere else. So ids shared across views (view-consistent masks) stay shared where no damage
    fell: a merge is then a wrong association, a split an unmatched part.

    Returns:
        ``[V, H, W]`` int64 mask ids.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be [V, H, W], got {list(labels.shape)}")
    for name, p in (("merge", merge), ("split", split), ("noise", noise)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    out = labels.clone().long()
    next_id = int(out.max()) + 1
    height, width = labels.shape[1:]
    vv, uu = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    for v in range(out.shape[0]):
        view = out[v]
        ids = view[view >= 0].unique()
        if merge > 0 and len(ids) > 1:
            for i in ids.tolist():
                if float(torch.rand((), generator=generator)) < merge:
                    others = ids[ids != i]
                    view = torch.where(view == i, others[torch.randint(len(others), (), generator=generator)], view)
        if split > 0:
            for i in view[view >= 0].unique().tolist():
                if float(torch.rand((), generator=generator)) < split:
                    inside = view == i
                    angle = float(torch.rand((), generator=generator)) * torch.pi
                    cu, cv = uu[inside].mean(), vv[inside].mean()
                    side = ((uu - cu) * torch.cos(torch.tensor(angle)) + (vv - cv) * torch.sin(torch.tensor(angle))) > 0
                    view = torch.where(inside & side, torch.full_like(view, next_id), view)
                    next_id += 1
        if noise > 0:
            valid = view >= 0
            present = view[valid].unique()
            if len(present):
                flip = valid & (torch.rand(view.shape, generator=generator) < noise)
                random_ids = present[torch.randint(len(present), view.shape, generator=generator)]
                view = torch.where(flip, random_ids, view)
        out[v] = view
    return out
