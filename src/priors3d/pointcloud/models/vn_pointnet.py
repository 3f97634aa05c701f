"""VN-PointNet (Deng et al., ICCV 2021): PointNet with vector-neuron layers, classification and parts.

A point alone is one vector, too little to learn directions from, so the first layer looks at ``k``
neighbours in xyz through the edge feature ``[x_j − x_i, x_i, x_j × x_i]`` and pools them away; the
rest works point by point. Where the reference concatenates a VN-STN global feature, this model
concatenates the mean over points (the same ``[x, global]`` shape, without the extra network).
ReLU-style non-linearities (slope 0) as in the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priors3d.vn import VNBatchNorm, VNEdgeConv, VNInvariant, VNLinear, VNLinearLeakyReLU, knn, to_vn

from .heads import SegmentationHead, check_points, classifier, width
from .vn_dgcnn import edge_pool, project_on_frame


class VNPointNetEncoder(nn.Module):
    """Points ``[B, N, 3]`` → ``(local [B, 63, 3, N], invariant [B, 682, 3, N], frame [B, 3, 3, N])``.

    Cross-product edge feature (``k`` neighbours) → ``VNLinearLeakyReLU(3 → 21)``, pool over
    neighbours, ``21 → 21``, concatenation with the mean over points, ``42 → 42``, ``VNLinear(42 → 341)``
    with VN batch norm, then the invariant layer on ``[x, mean x]`` (un-normalised frame). ``local``
    holds the 21- and 42-channel point features for segmentation.
    """

    def __init__(self, k: int = 20, pooling: str = "mean", width_divisor: int = 1, negative_slope: float = 0.0,
                 recompute: bool = True, frame: str = "point"):
        super().__init__()
        self.k = k
        w21, w42, w341 = (width(c, width_divisor, 2) for c in (21, 42, 341))
        self.conv_pos = VNEdgeConv(1, w21, negative_slope, cross=True, pool=edge_pool(pooling, w21),
                                   recompute=recompute)
        self.conv1 = VNLinearLeakyReLU(w21, w21, negative_slope)
        self.conv2 = VNLinearLeakyReLU(2 * w21, w42, negative_slope)
        self.conv3 = VNLinear(w42, w341)
        self.bn3 = VNBatchNorm(w341)
        self.invariant = VNInvariant(w341, concat_mean=True, orthonormal=False, negative_slope=negative_slope,
                                     frame=frame)
        self.local_channels, self.invariant_channels = w21 + w42, 2 * w341

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        check_points(points, type(self).__name__)
        x = to_vn(points)
        x1 = self.conv1(self.conv_pos(x, knn(x, self.k)))
        x2 = self.conv2(torch.cat([x1, x1.mean(-1, keepdim=True).expand_as(x1)], dim=1))
        invariant, frame = self.invariant(self.bn3(self.conv3(x2)))
        return torch.cat([x1, x2], dim=1), invariant, frame


class VNPointNetCls(nn.Module):
    """VN-PointNet classifier: points ``[B, N, 3]`` → logits ``[B, classes]``, rotation-invariant.

    Max pool of the 2046 invariants per point, then the MLP 512 → 256 → classes (dropout 0.4).
    """

    def __init__(self, num_classes: int, k: int = 20, pooling: str = "mean", width_divisor: int = 1,
                 dropout: float = 0.4, recompute: bool = True, frame: str = "point"):
        super().__init__()
        self.encoder = VNPointNetEncoder(k, pooling, width_divisor, recompute=recompute, frame=frame)
        self.head = classifier(3 * self.encoder.invariant_channels, num_classes, dropout=dropout, negative_slope=0.0)

    def forward(self, points: Tensor) -> Tensor:
        _, invariant, _ = self.encoder(points)
        return self.head(invariant.flatten(1, 2).amax(-1))


class VNPointNetSeg(nn.Module):
    """VN-PointNet part segmentation: points ``[B, N, 3]``, category ``[B, K]`` → ``[B, N, parts]``.

    The global feature is the max over points of the invariants; the per-point features are the
    encoder's local VN features projected on the learned frame: one per shape by default, one per point (the
    reference) with ``frame="point"``.
    """

    def __init__(self, num_classes: int, num_parts: int, k: int = 40, pooling: str = "mean",
                 width_divisor: int = 1, dropout: float = 0.5, recompute: bool = True, frame: str = "shape"):
        super().__init__()
        self.encoder = VNPointNetEncoder(k, pooling, width_divisor, recompute=recompute, frame=frame)
        self.head = SegmentationHead(3 * self.encoder.local_channels, 3 * self.encoder.invariant_channels,
                                     num_classes, num_parts, dropout=dropout, negative_slope=0.0)

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        local, invariant, frame = self.encoder(points)
        return self.head(project_on_frame(local, frame), invariant.flatten(1, 2).amax(-1), category)
