"""Plain PointNet and DGCNN, built from the same heads as the VN models (not rotation-invariant).

Widths are the papers' (64, 128, 1024 scalars), divided by ``width_divisor`` for small runs. The
spatial/feature transform networks of the originals are left out, as in most rotation benchmarks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priors3d.vn import gather_neighbors

from .heads import SegmentationHead, check_points, classifier, dynamic_graph, max_mean_pool, pointwise, width


class EdgeConv(nn.Module):
    """DGCNN EdgeConv: ``max_k LeakyReLU(BN(W [x_j − x_i, x_i]))``, optionally a second edge layer.

    ``x [B, C, N]``, ``index [B, N, k]`` → ``[B, O, N]``. The linear map runs on the points before the
    neighbours are gathered (``W [x_j − x_i, x_i] = W₁ x_j + (W₂ − W₁) x_i``); ``second`` adds a
    ``O → O`` layer on the edges before the max (DGCNN's part model).
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2, second: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.weight = nn.Parameter(torch.empty(out_channels, 2 * in_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.post = nn.Sequential(nn.BatchNorm2d(out_channels), nn.LeakyReLU(negative_slope))
        self.second = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(negative_slope)) if second else nn.Identity()

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"EdgeConv expects features [B, {self.in_channels}, N], got {list(x.shape)}")
        w_diff, w_center = self.weight[:, :self.in_channels], self.weight[:, self.in_channels:]
        edges = gather_neighbors(w_diff @ x, index) + ((w_center - w_diff) @ x).unsqueeze(-1)
        return self.second(self.post(edges)).amax(-1)


class PointNetEncoder(nn.Module):
    """Points ``[B, N, 3]`` → ``(local [B, 256, N], global [B, 1024, N])``: shared MLP 3 → 64 → 64 → 128 → 1024
    (the last layer batch-normalised, without activation), as PointNet without its transform nets."""

    def __init__(self, width_divisor: int = 1):
        super().__init__()
        w64, w128, w1024 = (width(c, width_divisor) for c in (64, 128, 1024))
        self.convs = nn.ModuleList([pointwise(3, w64, 0.0), pointwise(w64, w64, 0.0), pointwise(w64, w128, 0.0)])
        self.last = pointwise(w128, w1024, activation=False)
        self.local_channels, self.global_channels = 2 * w64 + w128, w1024

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        check_points(points, type(self).__name__)
        x = points.transpose(1, 2)
        local = []
        for conv in self.convs:
            x = conv(x)
            local.append(x)
        return torch.cat(local, dim=1), self.last(x)


class PointNetCls(nn.Module):
    """PointNet classifier: ``[B, N, 3]`` → ``[B, classes]``; max pool, MLP 512 → 256 → classes (dropout 0.4)."""

    def __init__(self, num_classes: int, width_divisor: int = 1, dropout: float = 0.4):
        super().__init__()
        self.encoder = PointNetEncoder(width_divisor)
        self.head = classifier(self.encoder.global_channels, num_classes, dropout=dropout, negative_slope=0.0)

    def forward(self, points: Tensor) -> Tensor:
        return self.head(self.encoder(points)[1].amax(-1))


class PointNetSeg(nn.Module):
    """PointNet part segmentation: ``[B, N, 3]``, category ``[B, K]`` → ``[B, N, parts]``."""

    def __init__(self, num_classes: int, num_parts: int, width_divisor: int = 1, dropout: float = 0.5):
        super().__init__()
        self.encoder = PointNetEncoder(width_divisor)
        self.head = SegmentationHead(self.encoder.local_channels, self.encoder.global_channels, num_classes,
                                     num_parts, dropout=dropout, negative_slope=0.0)

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        local, global_feature = self.encoder(points)
        return self.head(local, global_feature.amax(-1), category)


class DGCNNCls(nn.Module):
    """DGCNN classifier: ``[B, N, 3]`` → ``[B, classes]``.

    EdgeConvs 64, 64, 128, 256 (neighbours in xyz, then in feature space), concatenation → 1024,
    max + mean pool, MLP 512 → 256 → classes (LeakyReLU 0.2, dropout 0.5).
    """

    def __init__(self, num_classes: int, k: int = 20, width_divisor: int = 1, dropout: float = 0.5):
        super().__init__()
        self.k = k
        w64, w128, w256, w1024 = (width(c, width_divisor) for c in (64, 128, 256, 1024))
        widths = [(3, w64), (w64, w64), (w64, w128), (w128, w256)]
        self.edge_convs = nn.ModuleList(EdgeConv(c_in, c_out) for c_in, c_out in widths)
        self.conv5 = pointwise(sum(c for _, c in widths), w1024)
        self.head = classifier(2 * w1024, num_classes, dropout=dropout)

    def forward(self, points: Tensor) -> Tensor:
        check_points(points, type(self).__name__)
        x = points.transpose(1, 2)
        return self.head(max_mean_pool(self.conv5(dynamic_graph(x, self.edge_convs, self.k))))


class DGCNNSeg(nn.Module):
    """DGCNN part segmentation: ``[B, N, 3]``, category ``[B, K]`` → ``[B, N, parts]``.

    Three EdgeConvs of 64 channels (the first two with a second edge layer), concatenation (192)
    → 1024, max over points as the global feature, the 192 per-point channels as local features.
    """

    def __init__(self, num_classes: int, num_parts: int, k: int = 40, width_divisor: int = 1, dropout: float = 0.5):
        super().__init__()
        self.k = k
        w64, w1024 = width(64, width_divisor), width(1024, width_divisor)
        self.edge_convs = nn.ModuleList([EdgeConv(3, w64, second=True), EdgeConv(w64, w64, second=True),
                                         EdgeConv(w64, w64)])
        self.conv6 = pointwise(3 * w64, w1024)
        self.head = SegmentationHead(3 * w64, w1024, num_classes, num_parts, dropout=dropout)

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        check_points(points, type(self).__name__)
        x = points.transpose(1, 2)
        local = dynamic_graph(x, self.edge_convs, self.k)
        return self.head(local, self.conv6(local).amax(-1), category)
