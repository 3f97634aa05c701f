"""Vector Neuron layers on features ``[B, C, 3, N, ...]`` (batch, channels, xyz, points, ...)."""

from .graph import VNEdgeConv, edge_features, gather_neighbors, knn
from .invariant import VNInvariant, orthonormalize
from .layers import VNDropout, VNLeakyReLU, VNLinear, VNLinearLeakyReLU, vn_leaky_relu, vn_linear
from .layout import check_features, from_vn, to_vn
from .norm import VNBatchNorm, VNLayerNorm, vector_norm
from .pooling import VNMaxPool, VNSoftMaxPool, make_pool, mean_pool
from .sim3 import Sim3Wrapper, canonicalize

__all__ = [
    "VNBatchNorm", "VNDropout", "VNEdgeConv", "VNInvariant", "VNLayerNorm", "VNLeakyReLU", "VNLinear",
    "VNLinearLeakyReLU", "VNMaxPool", "VNSoftMaxPool", "Sim3Wrapper", "canonicalize", "check_features",
    "edge_features", "from_vn", "gather_neighbors", "knn", "make_pool", "mean_pool", "orthonormalize",
    "to_vn", "vector_norm", "vn_leaky_relu", "vn_linear",
]
