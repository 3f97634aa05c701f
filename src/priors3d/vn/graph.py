"""k-nearest-neighbour graphs and EdgeConv edge features, in pure PyTorch (no compiled extensions).

Neighbour indices are ``[B, N, k]`` and include the point itself (its distance is 0), as in DGCNN.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .fused import vn_edgeconv_mean
from .layers import bn_leaky_relu, vn_linear
from .layout import check_features
from .norm import VNBatchNorm


CANDIDATES = 8  # extra candidates among which the distances from differences choose


def knn(x: Tensor, k: int, chunk: int = 256) -> Tensor:
    """Indices ``[B, N, k]`` of the ``k`` nearest neighbours of each point, nearest first.

    ``x`` is ``[B, D, N]`` (scalar features) or ``[B, C, 3, N]`` (VN features, compared as ``3C``-vectors,
    which is rotation-invariant). The fast distance ``‖x‖² + ‖y‖² − 2⟨x, y⟩`` (a matrix product) picks
    ``k + CANDIDATES`` candidates; their distances are then recomputed from the coordinate differences
    (accurate relative to the distance itself), which decide. The fast formula cancels digits, so on its
    own its rounding reorders near-tied neighbours, and a rotated input (equal distances, other rounding)
    could get another graph. Queries run in chunks of ``chunk`` points, so the distance matrix in memory
    is ``[B, chunk, N]``, not ``[B, N, N]``.
    """
    if x.ndim == 4:
        check_features(x, None, "knn")
        x = x.flatten(1, 2)
    if x.ndim != 3:
        raise ValueError(f"knn expects [B, D, N] or [B, C, 3, N], got {list(x.shape)}")
    if x.shape[-1] == 3 and x.shape[1] > 3:
        raise ValueError(f"knn expects channels first, [B, D, N], got {list(x.shape)}, which looks like points "
                         f"[B, N, 3]: pass points.transpose(1, 2) or vn.to_vn(points)")
    n = x.shape[-1]
    if not 0 < k <= n:
        raise ValueError(f"k must be in [1, N={n}], got {k}")
    with torch.no_grad():
        # [B, N, D], centred (fewer digits for the fast formula to lose); a new tensor, never the input
        points = (x - x.mean(-1, keepdim=True)).transpose(1, 2).contiguous()
        return torch.cat([_nearest(points[:, start:start + chunk], points, k) for start in range(0, n, chunk)], 1)


def _nearest(query: Tensor, points: Tensor, k: int) -> Tensor:
    """``[B, Q, k]`` indices into ``points [B, N, D]`` of the ``k`` nearest to each of ``query [B, Q, D]``."""
    (b, q, d), n = query.shape, points.shape[1]
    candidates = torch.cdist(query, points).topk(min(k + CANDIDATES, n), dim=-1, largest=False).indices
    rows = (candidates + n * torch.arange(b, device=candidates.device).view(b, 1, 1)).view(-1)
    near = points.view(b * n, d).index_select(0, rows).view(b, q, -1, d)      # [B, Q, k + CANDIDATES, D]
    exact = near.sub_(query.unsqueeze(2)).square_().sum(-1)
    return candidates.gather(-1, exact.topk(k, dim=-1, largest=False).indices)


def gather_neighbors(x: Tensor, index: Tensor) -> Tensor:
    """``x [B, ..., N]`` gathered at ``index [B, N', k]`` → ``[B, ..., N', k]`` (no transposes)."""
    b, n_query, k = index.shape
    flat = x.reshape(b, -1, x.shape[-1])
    gathered = flat.gather(-1, index.reshape(b, 1, n_query * k).expand(-1, flat.shape[1], -1))
    return gathered.view(*x.shape[:-1], n_query, k)


def edge_features(x: Tensor, index: Tensor, cross: bool = False) -> Tensor:
    """EdgeConv features ``[x_j − x_i, x_i]`` (and ``x_j × x_i`` with ``cross``) for VN features.

    ``x [B, C, 3, N]``, ``index [B, N, k]`` → ``[B, 2C or 3C, 3, N, k]``. Materialises the whole edge
    tensor; :class:`VNEdgeConv` avoids that.
    """
    check_features(x, None, "edge_features")
    neighbors = gather_neighbors(x, index)
    center = x.unsqueeze(-1).expand_as(neighbors)
    parts = [neighbors - center, center]
    if cross:
        parts.append(torch.linalg.cross(neighbors, center, dim=2))
    return torch.cat(parts, dim=1)


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module):
    """Batch norms in ``module`` normalise with batch statistics but leave their running statistics alone."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class VNEdgeConv(nn.Module):
    """VN EdgeConv: edge features, VN linear + batch norm + VN-LeakyReLU, then pooling over neighbours.

    ``x [B, C, 3, N]``, ``index [B, N, k]`` → ``[B, O, 3, N]``. Mathematically the same as
    ``pool_k(VNLinearLeakyReLU(2C, O)(edge_features(x, index)))``, but the linear maps (feature and
    direction) run on the points before the neighbours are gathered:
    ``W [x_j − x_i, x_i] = W₁ x_j + (W₂ − W₁) x_i``, so the ``[B, 2C, 3, N, k]`` edge tensor is never built.
    With ``cross`` the edge feature gains ``x_j × x_i`` (VN-PointNet's and VN-DGCNN's first layer).
    ``pool`` is None (the mean over neighbours, fused with the activation) or a module mapping
    ``[B, O, 3, N, k]`` → ``[B, O, 3, N]``. With ``recompute``, training keeps only the per-point maps
    (or ``x``) and ``index`` for the backward pass and recomputes the ``[B, O, 3, N, k]`` intermediates
    there, with the same batch statistics and without updating the running statistics twice (same
    values and gradients, less memory, more time); parameter names do not depend on it. The mean-pooled
    EdgeConv without ``cross`` then runs as one kernel (:func:`priors3d.vn.fused.vn_edgeconv_mean`) whose
    edge-sized temporaries stay allocated between calls (:mod:`priors3d.vn.workspace`).
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2,
                 cross: bool = False, pool: nn.Module | None = None, recompute: bool = False):
        super().__init__()
        self.recompute = recompute
        self.in_channels, self.out_channels = in_channels, out_channels
        self.negative_slope, self.cross = negative_slope, cross
        n_parts = 3 if cross else 2
        # rows: [feature map; direction map], columns: [x_j − x_i | x_i | x_j × x_i] blocks of C
        self.weight = nn.Parameter(torch.empty(2 * out_channels, n_parts * in_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.norm = VNBatchNorm(out_channels)
        self.pool = pool

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        check_features(x, self.in_channels, self)
        if self.recompute and self.pool is None and not self.cross:
            per_neighbor, per_center = self._per_point_maps(x)
            return vn_edgeconv_mean(per_neighbor, per_center, index, self.out_channels, self.norm.bn,
                                    self.negative_slope, self.norm.exact_eps)
        if not (self.recompute and self.training and torch.is_grad_enabled()):
            return self._edges_to_points(x, index)
        calls = []

        def run(*inputs: Tensor) -> Tensor:
            calls.append(None)
            if len(calls) == 1:
                return self._edges_to_points(*inputs)
            with frozen_running_stats(self):
                return self._edges_to_points(*inputs)

        return checkpoint(run, x, index, use_reentrant=False)

    def _per_point_maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``W₁ x`` (gathered at ``j``) and ``(W₂ − W₁) x`` (at ``i``), each ``[B, 2O, 3, N]``."""
        c = self.in_channels
        w_diff, w_center = self.weight[:, :c], self.weight[:, c:2 * c]
        return vn_linear(x, w_diff), vn_linear(x, w_center - w_diff)

    def _edges_to_points(self, x: Tensor, index: Tensor) -> Tensor:
        c = self.in_channels
        per_neighbor, per_center = self._per_point_maps(x)
        edges = gather_neighbors(per_neighbor, index).add_(per_center.unsqueeze(-1))
        if self.cross:
            neighbors = gather_neighbors(x, index)
            crossed = torch.linalg.cross(neighbors, x.unsqueeze(-1).expand_as(neighbors), dim=2)
            edges = edges + vn_linear(crossed, self.weight[:, 2 * c:])
        if self.pool is None:
            return bn_leaky_relu(edges, self.out_channels, self.norm, self.negative_slope, mean_last=True)
        return self.pool(bn_leaky_relu(edges, self.out_channels, self.norm, self.negative_slope))
