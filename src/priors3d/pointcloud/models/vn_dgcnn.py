"""VN-DGCNN (Deng et al., ICCV 2021): DGCNN with vector-neuron layers, for classification and parts.

Dynamic graphs: the first EdgeConv finds neighbours in xyz, the later ones in feature space (VN
features compared as ``3C``-vectors, a rotation-invariant distance). Every EdgeConv is
:class:`priors3d.vn.VNEdgeConv`, which applies its linear maps before gathering neighbours. Channel
widths are the DGCNN ones divided by 3 (a vector is three scalars): 64 → 21, 128 → 42, 256 → 85,
1024 → 341, and ``width_divisor`` divides them again for small runs.
"""

from __future__ import annotations

from torch import Tensor, nn

from priors3d.vn import VNEdgeConv, VNInvariant, VNLinearLeakyReLU, make_pool, to_vn
from priors3d.vn.invariant import frame_coordinates

from .heads import SegmentationHead, check_points, classifier, dynamic_graph, max_mean_pool, width


class NeighborPool(nn.Module):
    """Pool ``[B, C, 3, N, k]`` over neighbours: ``"mean"``, ``"max"`` (VN max) or ``"softmax"``."""

    def __init__(self, kind: str, channels: int):
        super().__init__()
        self.kind = kind
        self.pool = make_pool(kind, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(-1) if self.pool is None else self.pool(x)

    def extra_repr(self) -> str:
        return self.kind


def edge_pool(kind: str, channels: int) -> NeighborPool | None:
    """An EdgeConv's pool over neighbours: None for the mean (:class:`VNEdgeConv` fuses it), else a module."""
    return None if kind == "mean" else NeighborPool(kind, channels)


def project_on_frame(x: Tensor, frame: Tensor) -> Tensor:
    """Invariant scalars of VN features: ``x [B, C, 3, N]``, ``frame [B, 3, 3, N]`` → ``[B, 3C, N]``."""
    return frame_coordinates(x, frame).flatten(1, 2)


class VNDGCNNCls(nn.Module):
    """VN-DGCNN classifier: points ``[B, N, 3]`` → logits ``[B, classes]``, rotation-invariant.

    Four EdgeConvs (2 → 21, 42 → 21, 42 → 42, 84 → 85 edge channels), their outputs concatenated
    (169) into ``VNLinearLeakyReLU(169 → 341)`` with one shared direction, the invariant layer on
    ``[x, mean x]`` with an un-normalised frame (682 × 3 = 2046 scalars per point), max + mean pool
    over points, and the MLP 512 → 256 → classes (batch norm, LeakyReLU 0.2, dropout 0.5).
    ``recompute`` keeps only the EdgeConvs' inputs for the backward pass and recomputes the rest there
    (see :class:`priors3d.vn.VNEdgeConv`). ``reference_head``: the reference code's head (see
    :func:`classifier`), as :func:`priors3d.pointcloud.models.from_official` builds it.
    """

    def __init__(self, num_classes: int, k: int = 20, pooling: str = "mean", width_divisor: int = 1,
                 dropout: float = 0.5, negative_slope: float = 0.2, recompute: bool = True, frame: str = "point",
                 reference_head: bool = False):
        super().__init__()
        self.k = k
        w21, w42, w85, w341 = (width(c, width_divisor, 2) for c in (21, 42, 85, 341))
        widths = [(1, w21), (w21, w21), (w21, w42), (w42, w85)]
        self.edge_convs = nn.ModuleList(
            VNEdgeConv(c_in, c_out, negative_slope, pool=edge_pool(pooling, c_out), recompute=recompute)
            for c_in, c_out in widths)
        self.conv5 = VNLinearLeakyReLU(sum(c for _, c in widths), w341, negative_slope, share_nonlinearity=True)
        self.invariant = VNInvariant(w341, concat_mean=True, orthonormal=False, negative_slope=negative_slope,
                                     frame=frame)
        self.head = classifier(2 * 3 * 2 * w341, num_classes, dropout=dropout, negative_slope=negative_slope,
                               reference=reference_head)

    def forward(self, points: Tensor) -> Tensor:
        check_points(points, type(self).__name__)
        x = to_vn(points)
        x = self.conv5(dynamic_graph(x, self.edge_convs, self.k))
        invariant, _ = self.invariant(x)
        return self.head(max_mean_pool(invariant.flatten(1, 2)))


class VNDGCNNSeg(nn.Module):
    """VN-DGCNN part segmentation: points ``[B, N, 3]`` and category one-hot ``[B, K]`` → ``[B, N, parts]``.

    Three EdgeConvs of 21 channels (the first two followed by a second VN layer on the edges before
    pooling, as in DGCNN's part model), ``VNLinearLeakyReLU(63 → 341)``, the invariant layer on
    ``[x, mean x]``; the global feature is the max over points of its 2046 invariants, and the
    per-point features (the 63 EdgeConv vectors) are projected on the learned frame: one per shape by
    default, one per point (the reference) with ``frame="point"``. ``reference_head``: the reference code's
    head, without batch norm on its inputs (see :class:`SegmentationHead`).
    """

    def __init__(self, num_classes: int, num_parts: int, k: int = 40, pooling: str = "mean",
                 width_divisor: int = 1, dropout: float = 0.5, negative_slope: float = 0.2, recompute: bool = True,
                 frame: str = "shape", reference_head: bool = False):
        super().__init__()
        self.k = k
        w21, w341 = width(21, width_divisor, 2), width(341, width_divisor, 2)

        def pool(second_layer: bool) -> nn.Module | None:
            if second_layer:
                return nn.Sequential(VNLinearLeakyReLU(w21, w21, negative_slope), NeighborPool(pooling, w21))
            return edge_pool(pooling, w21)

        self.edge_convs = nn.ModuleList(
            VNEdgeConv(c_in, w21, negative_slope, pool=pool(second), recompute=recompute)
            for c_in, second in ((1, True), (w21, True), (w21, False)))
        self.conv6 = VNLinearLeakyReLU(3 * w21, w341, negative_slope, share_nonlinearity=True)
        self.invariant = VNInvariant(w341, concat_mean=True, orthonormal=False, negative_slope=negative_slope,
                                     frame=frame)
        self.head = SegmentationHead(3 * 3 * w21, 2 * 3 * w341, num_classes, num_parts,
                                     dropout=dropout, negative_slope=negative_slope, reference=reference_head)

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        check_points(points, type(self).__name__)
        x = to_vn(points)
        local = dynamic_graph(x, self.edge_convs, self.k)
        invariant, frame = self.invariant(self.conv6(local))
        global_feature = invariant.flatten(1, 2).amax(-1)
        return self.head(project_on_frame(local, frame), global_feature, category)

