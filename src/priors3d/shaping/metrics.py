"""Label-map metrics with void ignored: confusion matrix, mIoU, total and class-average accuracy."""

from __future__ import annotations

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, n_classes: int) -> Tensor:
    """``[C, C]`` int64 counts ``[true, predicted]`` over pixels whose target is not void (-1).

    Predictions outside ``0..C-1`` (e.g. -1 for "no response") count as misses: they add to no
    column but still lower the true class's accuracy and IoU (see ``segmentation_metrics``).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {list(pred.shape)} and {list(target.shape)}")
    valid = (target >= 0) & (target < n_classes) & (pred >= 0) & (pred < n_classes)
    index = target[valid].long() * n_classes + pred[valid].long()
    return torch.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def segmentation_metrics(pred: Tensor, target: Tensor, n_classes: int) -> dict:
    """mIoU, total accuracy and class-average accuracy of label maps (any equal shapes).

    Averages run over the classes present in ``target``; void target pixels are ignored and
    predictions of -1 ("no response") are wrong.

    Returns:
        dict with ``miou``, ``accuracy``, ``class_accuracy`` (floats), ``iou`` (list, NaN for absent
        classes) and ``classes`` (the present class ids).
    """
    conf = confusion_matrix(pred, target, n_classes).double()
    valid_target = (target >= 0) & (target < n_classes)
    gt_count = torch.bincount(target[valid_target].long(), minlength=n_classes).double()
    tp = conf.diag()
    pred_count = conf.sum(dim=0)
    union = gt_count + pred_count - tp
    present = gt_count > 0
    iou = torch.where(present, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    acc = tp / gt_count.clamp_min(1)
    return {"miou": float(iou[present].mean()) if present.any() else float("nan"),
            "accuracy": float(tp.sum() / gt_count.sum().clamp_min(1)),
            "class_accuracy": float(acc[present].mean()) if present.any() else float("nan"),
            "iou": iou.tolist(), "classes": present.nonzero().flatten().tolist()}
