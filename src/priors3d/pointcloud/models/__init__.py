"""Point-cloud models behind one factory: VN-PointNet, VN-DGCNN and their plain counterparts.

Every model takes points ``[B, N, 3]`` (and, for part segmentation, the category one-hot
``[B, num_classes]``) and returns logits ``[B, classes]`` or ``[B, N, parts]``. The VN models'
outputs are rotation-invariant; the plain ones are not.
:func:`from_official` loads the Vector Neurons authors' VN-DGCNN checkpoints.

Example::

    from priors3d.pointcloud.models import build_model
    model = build_model("vn_pointnet", "cls", num_classes=12, k=10).eval()
    logits = model(points)                        # points [B, N, 3] -> [B, 12]
"""

from __future__ import annotations

from torch import nn

from .baselines import DGCNNCls, DGCNNSeg, EdgeConv, PointNetCls, PointNetSeg
from .heads import SegmentationHead, classifier, max_mean_pool
from .official import from_official
from .vn_dgcnn import NeighborPool, VNDGCNNCls, VNDGCNNSeg, project_on_frame
from .vn_pointnet import VNPointNetCls, VNPointNetEncoder, VNPointNetSeg

MODELS = ("vn_pointnet", "vn_dgcnn", "pointnet", "dgcnn")
TASKS = ("cls", "seg")
DEFAULT_K = {"cls": 20, "seg": 40}
DEFAULT_FRAME = {"cls": "point", "seg": "shape"}
POOLINGS = ("mean", "max", "softmax")

__all__ = ["DEFAULT_FRAME", "DEFAULT_K", "DGCNNCls", "DGCNNSeg", "EdgeConv", "MODELS", "NeighborPool", "POOLINGS",
           "PointNetCls", "PointNetSeg", "SegmentationHead", "TASKS", "VNDGCNNCls", "VNDGCNNSeg", "VNPointNetCls",
           "VNPointNetEncoder", "VNPointNetSeg", "build_model", "classifier", "from_official", "is_equivariant",
           "max_mean_pool",
           "project_on_frame"]


def is_equivariant(name: str) -> bool:
    """Whether the model ``name`` is a rotation-invariant VN model."""
    return name.startswith("vn_")


def build_model(name: str, task: str = "cls", num_classes: int = 40, num_parts: int | None = None,
                k: int | None = None, pooling: str = "mean", width_divisor: int = 1,
                dropout: float | None = None, recompute: bool = True, frame: str | None = None) -> nn.Module:
    """A model by name.

    Args:
        name: ``vn_pointnet``, ``vn_dgcnn``, ``pointnet`` or ``dgcnn``.
        task: ``cls`` (logits ``[B, num_classes]``) or ``seg`` (``[B, N, num_parts]``, needs ``num_parts``
            and takes the category one-hot as a second input).
        k: neighbours (default 20 for ``cls``, 40 for ``seg``; plain PointNet uses none).
        pooling: how VN models pool over neighbours: ``mean``, ``max`` or ``softmax`` (plain DGCNN max-pools).
        width_divisor: divide every channel width (1 = the papers' widths).
        dropout: head dropout (default 0.4 for PointNet classifiers, 0.5 otherwise).
        recompute: VN models keep only their EdgeConvs' inputs for the backward pass and recompute the
            ``[B, C, 3, N, k]`` edge tensors there (same values and gradients, less memory, some time).
        frame: VN models' invariant layer: ``point`` (one learned frame per point, the reference) or
            ``shape`` (the frame averaged over the points; see :class:`priors3d.vn.VNInvariant`); default
            ``point`` for ``cls``, ``shape`` for ``seg`` (per-point frames keep part models at the category
            prior for many epochs, docs/pointcloud.md).
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if task == "seg" and not num_parts:
        raise ValueError("task='seg' needs num_parts (the number of part labels)")
    k = DEFAULT_K[task] if k is None else k
    frame = DEFAULT_FRAME[task] if frame is None else frame
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if dropout is None:
        dropout = 0.4 if (name.endswith("pointnet") and task == "cls") else 0.5
    options = dict(width_divisor=width_divisor, dropout=dropout)
    if is_equivariant(name):
        options.update(k=k, pooling=pooling, recompute=recompute, frame=frame)
    elif name == "dgcnn":
        options.update(k=k)
    cls, seg = {"vn_pointnet": (VNPointNetCls, VNPointNetSeg), "vn_dgcnn": (VNDGCNNCls, VNDGCNNSeg),
                "pointnet": (PointNetCls, PointNetSeg), "dgcnn": (DGCNNCls, DGCNNSeg)}[name]
    return cls(num_classes, **options) if task == "cls" else seg(num_classes, num_parts, **options)
