"""Heads shared by the VN and the plain models, so that every comparison differs only in the encoder.

A head sees rotation-invariant features only (scalars from a plain encoder, or VN features projected
on a learned frame), so it may use any ordinary layer. Also the layer helpers all the models share: channel
widths (:func:`width`), per-point layers (:func:`pointwise`) and DGCNN's dynamic graph.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priors3d.vn import knn


def dynamic_graph(x: Tensor, convs: nn.ModuleList, k: int) -> Tensor:
    """DGCNN's stack of EdgeConvs, each on the k-NN graph of its input (xyz first, then feature space).

    ``x`` is ``[B, C, N]`` (plain) or ``[B, C, 3, N]`` (VN); returns every conv's output concatenated
    along the channels, ``[B, ΣC_out, (3,) N]``.
    """
    features = []
    for conv in convs:
        x = conv(x, knn(x, k))
        features.append(x)
    return torch.cat(features, dim=1)


def max_mean_pool(x: Tensor) -> Tensor:
    """Max and mean over points: ``[B, C, N]`` → ``[B, 2C]`` (DGCNN's global feature)."""
    return torch.cat([x.amax(-1), x.mean(-1)], dim=1)


def classifier(in_features: int, num_classes: int, hidden: tuple[int, ...] = (512, 256),
               dropout: float = 0.5, negative_slope: float = 0.2, reference: bool = False) -> nn.Sequential:
    """MLP ``in → hidden… → classes`` with batch norm, LeakyReLU and dropout: ``[B, in]`` → ``[B, classes]``.

    The input is batch-normalised first: a VN model's invariants are products of two vector norms whose
    scales differ by orders of magnitude between channels; unnormalised, they slow training down
    (docs/pointcloud.md). ``reference``: the VN-DGCNN reference code's head, no input batch norm (an
    identity keeps the layer indices) and hidden layers with biases.
    """
    layers: list[nn.Module] = [nn.Identity() if reference else nn.BatchNorm1d(in_features)]
    for out in hidden:
        layers += [nn.Linear(in_features, out, bias=reference), nn.BatchNorm1d(out),
                   nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
        in_features = out
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def width(channels: int, divisor: int, minimum: int = 4) -> int:
    """``channels // divisor``, at least ``minimum`` (VN models take 2: one vector channel cannot learn a direction
    of its own)."""
    if divisor < 1:
        raise ValueError(f"width_divisor must be >= 1, got {divisor}")
    return max(channels // divisor, minimum)


def pointwise(in_channels: int, out_channels: int, negative_slope: float = 0.2,
              activation: bool = True) -> nn.Sequential:
    """Shared per-point linear layer with batch norm (and LeakyReLU): ``[B, in, N]`` → ``[B, out, N]``."""
    layers: list[nn.Module] = [nn.Conv1d(in_channels, out_channels, 1, bias=False), nn.BatchNorm1d(out_channels)]
    if activation:
        layers.append(nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers)


class SegmentationHead(nn.Module):
    """Per-point part logits from per-point features, a global feature and the object category.

    ``local [B, C, N]``, ``global_feature [B, G]``, ``category [B, K]`` (one-hot) → ``[B, N, parts]``.
    ``local`` and ``global_feature`` are batch-normalised first, each on its own: the invariants of a VN
    model are products of two vector norms, and unnormalised, the per-shape global part outweighs the
    per-point part by two orders of magnitude at initialisation, so that training first learns the
    category prior (docs/pointcloud.md). The category is embedded by a linear layer (64 channels),
    global feature and embedding are copied to every point and concatenated with ``local``; a shared MLP
    ``256 → 256 → 128 → parts`` (batch norm, LeakyReLU, dropout after the first two layers) gives the
    logits, as in DGCNN's part model. ``reference``: the VN-DGCNN reference code's head, without the
    batch norms of ``local`` and ``global_feature`` and without the last layer's bias.
    """

    def __init__(self, local_channels: int, global_channels: int, num_classes: int, num_parts: int,
                 hidden: tuple[int, ...] = (256, 256, 128), dropout: float = 0.5,
                 negative_slope: float = 0.2, category_channels: int = 64, reference: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.norm_local, self.norm_global = ((nn.Identity(), nn.Identity()) if reference else
                                             (nn.BatchNorm1d(local_channels), nn.BatchNorm1d(global_channels)))
        self.embed = nn.Sequential(nn.Linear(num_classes, category_channels, bias=False),
                                   nn.BatchNorm1d(category_channels), nn.LeakyReLU(negative_slope))
        layers: list[nn.Module] = []
        channels = local_channels + global_channels + category_channels
        for i, out in enumerate(hidden):
            layers += pointwise(channels, out, negative_slope)
            if i < 2 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            channels = out
        layers.append(nn.Conv1d(channels, num_parts, 1, bias=not reference))
        self.mlp = nn.Sequential(*layers)

    def forward(self, local: Tensor, global_feature: Tensor, category: Tensor) -> Tensor:
        if category.ndim != 2 or category.shape != (local.shape[0], self.num_classes):
            raise ValueError(f"category must be one-hot [B={local.shape[0]}, {self.num_classes}], "
                             f"got {list(category.shape)}")
        context = torch.cat([self.norm_global(global_feature), self.embed(category.to(local.dtype))], dim=1)
        x = torch.cat([context.unsqueeze(-1).expand(-1, -1, local.shape[-1]), self.norm_local(local)], dim=1)
        return self.mlp(x).transpose(1, 2)


def check_points(points: Tensor, model: str) -> None:
    """Raise a ValueError unless ``points`` is ``[B, N, 3]``."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"{model} expects points [B, N, 3], got {list(points.shape)}")
