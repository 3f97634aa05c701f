"""Classification and part-segmentation metrics, as sums that add up across batches and ranks.

Classification: overall accuracy (OA) and class-mean accuracy (mAcc) from a confusion matrix
(:func:`priors3d.metrics.confusion_matrix`).
Part segmentation follows the ShapeNetPart convention: a shape's IoU is the mean over its category's
parts of ``|pred ∩ true| / |pred ∪ true|``, where a part absent from both prediction and truth counts
1; predictions are restricted to the category's parts. Instance mIoU averages over shapes,
class mIoU averages the per-category means. Labels ``-1`` (void) are ignored everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor


def classification_metrics(confusion: Tensor) -> dict[str, float]:
    """``{"oa", "macc"}`` from a confusion matrix; mAcc averages over classes present in the truth."""
    confusion = confusion.double()
    total = confusion.sum()
    per_class = confusion.sum(1)
    present = per_class > 0
    oa = (confusion.diagonal().sum() / total).item() if total > 0 else 0.0
    macc = (confusion.diagonal()[present] / per_class[present]).mean().item() if present.any() else 0.0
    return {"oa": oa, "macc": macc}


def part_mask(categories: Tensor, seg_classes: list[list[int]], num_parts: int) -> Tensor:
    """``[B, P]`` bool: which global part ids belong to each shape's category (``categories [B]``)."""
    table = torch.zeros(len(seg_classes), num_parts, dtype=torch.bool)
    for c, parts in enumerate(seg_classes):
        table[c, parts] = True
    return table.to(categories.device)[categories]


def restricted_prediction(logits: Tensor, categories: Tensor, seg_classes: list[list[int]]) -> Tensor:
    """Arg-max over the category's parts only: ``logits [B, N, P]``, ``categories [B]`` → ``[B, N]``."""
    mask = part_mask(categories, seg_classes, logits.shape[-1])
    return logits.masked_fill(~mask.unsqueeze(1), float("-inf")).argmax(-1)


def shape_ious(pred: Tensor, target: Tensor, categories: Tensor, seg_classes: list[list[int]]) -> Tensor:
    """Per-shape IoU ``[B]``: mean over the category's parts; a part absent from both counts 1.

    ``pred``, ``target`` ``[B, N]`` global part ids (``target`` may hold ``-1`` = void, ignored).
    """
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred and target must both be [B, N], got {list(pred.shape)} and {list(target.shape)}")
    num_parts = max(max(parts) for parts in seg_classes) + 1
    valid = (target >= 0).unsqueeze(-1)
    parts = torch.arange(num_parts, device=pred.device)
    pred_hot = (pred.unsqueeze(-1) == parts) & valid                   # [B, N, P]
    true_hot = (target.unsqueeze(-1) == parts) & valid
    intersection = (pred_hot & true_hot).sum(1)
    union = (pred_hot | true_hot).sum(1)
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones((), device=pred.device))
    mask = part_mask(categories, seg_classes, num_parts)
    return (iou * mask).sum(1) / mask.sum(1)


class SegmentationMeter:
    """Accumulates per-category IoU sums and shape counts (``[K]`` tensors, all-reduce friendly)."""

    def __init__(self, seg_classes: list[list[int]]):
        self.seg_classes = seg_classes
        self.iou_sum = torch.zeros(len(seg_classes), dtype=torch.float64)
        self.count = torch.zeros(len(seg_classes), dtype=torch.float64)

    def update(self, pred: Tensor, target: Tensor, categories: Tensor) -> None:
        """``pred``, ``target [B, N]``, ``categories [B]``."""
        ious = shape_ious(pred, target, categories, self.seg_classes).double().cpu()
        categories = categories.cpu()
        self.iou_sum.index_add_(0, categories, ious)
        self.count.index_add_(0, categories, torch.ones_like(ious))

    def compute(self) -> dict[str, float]:
        """``{"instance_miou", "class_miou"}`` (class mIoU over categories with at least one shape)."""
        return segmentation_metrics(self.iou_sum, self.count)


def segmentation_metrics(iou_sum: Tensor, count: Tensor) -> dict[str, float]:
    """Instance and class mIoU from per-category IoU sums and shape counts ``[K]``."""
    present = count > 0
    if not present.any():
        return {"instance_miou": 0.0, "class_miou": 0.0}
    return {"instance_miou": (iou_sum.sum() / count.sum()).item(),
            "class_miou": (iou_sum[present] / count[present]).mean().item()}
