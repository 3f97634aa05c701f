"""Metrics shared by every task: the confusion matrix and mIoU / total and class-average accuracy of
label maps (void = -1 ignored), and the PSNR of images."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "label_map_metrics", "psnr"]


def confusion_matrix(pred: Tensor, target: Tensor, n_classes: int) -> Tensor:
    """``[C, C]`` int64 counts, rows = truth, columns = prediction, over items whose target is not void (-1).

    A prediction of -1 ("no response") counts in no column, so it still lowers the true class's
    accuracy and IoU (see ``label_map_metrics``). Any other label outside ``0..C-1`` raises.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {list(pred.shape)} and {list(target.shape)}")
    keep = target >= 0
    pred, target = pred[keep].long(), target[keep].long()
    if pred.numel() and (pred.min() < -1 or pred.max() >= n_classes or target.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}) (predictions may be -1), got pred in "
                         f"[{pred.min()}, {pred.max()}] and target up to {target.max()}")
    answered = pred >= 0
    index = target[answered] * n_classes + pred[answered]
    return torch.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def label_map_metrics(pred: Tensor, target: Tensor, n_classes: int) -> dict:
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


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1]."""
    mse = float(torch.mean((pred - target) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))
