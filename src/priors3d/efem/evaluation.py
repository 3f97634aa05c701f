"""Instance segmentation scores (the ScanNet/SoftGroup AP protocol) and the geometric baseline.

:func:`instance_ap`: for each IoU threshold, predictions of all scenes are taken by decreasing confidence;
each is a true positive when its mask overlaps a ground-truth instance of its scene not matched yet with
IoU above the threshold (the best such one), else a false positive (duplicates included). AP is the
area under the precision-recall curve with precision replaced by its running maximum from the right
(all-point interpolation). ``AP`` averages the thresholds 0.50:0.05:0.95; ``AP50`` and ``AP25`` are
single thresholds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _matches(masks: Tensor, confidence: Tensor, truth: Tensor,
             threshold: float) -> tuple[list[tuple[float, bool]], int]:
    """``(confidence, true positive)`` per prediction of one scene, and its number of ground-truth instances."""
    ids = truth[truth >= 0].unique()
    gt = truth[None] == ids[:, None]                                      # [G, N]
    m = masks.float()
    inter = m @ gt.float().T                                              # [K, G]
    iou = inter / (m.sum(1)[:, None] + gt.sum(1)[None] - inter).clamp_min(1)
    matched = torch.zeros(len(ids), dtype=torch.bool)
    records = []
    for k in confidence.argsort(descending=True).tolist():
        overlap = iou[k].masked_fill(matched, -1.0)
        j = int(overlap.argmax()) if len(ids) else -1
        hit = j >= 0 and overlap[j] > threshold
        if hit:
            matched[j] = True
        records.append((float(confidence[k]), bool(hit)))
    return records, len(ids)


def average_precision(records: list[tuple[float, bool]], n_truth: int) -> float:
    """All-point interpolated AP of ``(confidence, true positive)`` records against ``n_truth`` instances."""
    if n_truth == 0:
        return float("nan")
    if not records:
        return 0.0
    records = sorted(records, key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records])
    precision = tp / np.arange(1, len(records) + 1)
    recall = tp / n_truth
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((envelope * steps).sum())


def instance_ap(predictions: list[tuple[Tensor, Tensor]], truths: list[Tensor]) -> dict[str, float]:
    """``AP``, ``AP50``, ``AP25`` of ``(masks [K, N] bool, confidence [K])`` per scene against ``truth [N]``
    (instance ids, −1 = not an instance of the category)."""
    if len(predictions) != len(truths):
        raise ValueError(f"need one truth per prediction, got {len(predictions)} and {len(truths)}")
    scores = {}
    for threshold in THRESHOLDS + (0.25,):
        records, total = [], 0
        for (masks, confidence), truth in zip(predictions, truths):
            if masks.shape[1:] != truth.shape:
                raise ValueError(f"masks {list(masks.shape)} do not cover the {len(truth)} scene points")
            scene_records, count = _matches(masks, confidence, truth, threshold)
            records += scene_records
            total += count
        scores[threshold] = average_precision(records, total)
    return {"AP": float(np.mean([scores[t] for t in THRESHOLDS])), "AP50": scores[0.5], "AP25": scores[0.25]}


def dbscan_instances(points: Tensor, eps: float = 0.15, min_samples: int = 5, min_points: int = 40,
                     floor_height: float = 0.03) -> tuple[Tensor, Tensor]:
    """Geometric baseline: DBSCAN clusters of the points above the floor (z up) as instances.

    Returns ``(masks [K, N] bool, confidence [K])``, the confidence being the cluster's share of those points.
    """
    from sklearn.cluster import DBSCAN

    above = points[:, 2] > floor_height
    labels = np.full(len(points), -1)
    if above.sum() >= min_samples:
        labels[above.numpy()] = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(points[above].double().numpy())
    labels = torch.from_numpy(labels)
    ids, counts = labels[labels >= 0].unique(return_counts=True)
    ids = ids[counts >= min_points]
    masks = labels[None] == ids[:, None]
    return masks, masks.sum(1).float() / max(int(above.sum()), 1)
