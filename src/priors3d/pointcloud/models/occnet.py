"""Occupancy networks: VN-OccNet (Deng et al., ICCV 2021) and the plain OccNet (Mescheder et al., CVPR 2019).

An occupancy network encodes a sparse point cloud into a latent code and decodes, for any query point
``p``, the logit of "``p`` is inside the shape".

- **VN-OccNet.** A VN ResNet-PointNet encodes the cloud into ``c_dim`` latent *vectors* ``C [B, c, 3]``
  that rotate with the input (``enc(X R) = enc(X) R``). The decoder only sees rotation-invariant
  scalars of the query and the code, ``[‖p‖², ⟨p, c_i⟩, ⟨c_i, (W C)_i⟩]`` (the reference's features), and
  maps them with a residual MLP to the logit. Rotating cloud and queries together therefore leaves
  every logit unchanged.
- **OccNet (baseline).** A ResNet-PointNet on raw coordinates gives a latent *vector of scalars*
  ``[B, c]``; the decoder is the conditional-batch-norm residual MLP on ``p``. Nothing ties it to rotations.

Both are translation-invariant through :class:`OccupancyNetwork`, which centres the cloud on its
centroid and moves the queries by the same amount (a VN encoder alone only commutes with rotations
about the origin). ReLU-style non-linearities (slope 0) and zero-initialised residual branches, as in
the reference code. The first VN layer is a cross-product EdgeConv (:class:`priors3d.vn.VNEdgeConv`,
which adds a VN batch norm that the reference's first layer does not have).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priors3d.vn import VNEdgeConv, VNLeakyReLU, VNLinear, knn, to_vn
from priors3d.vn.sim3 import centroid

from .heads import check_points

KINDS = ("vn", "plain")


# --- VN-OccNet ------------------------------------------------------------------------------------

class VNResnetBlock(nn.Module):
    """``S x + W₁ σ(W₀ σ(x))`` with VN linear maps and VN-ReLUs: ``[B, in, 3, ...]`` → ``[B, out, 3, ...]``.

    ``S`` is the identity when ``in == out``, a VN linear map otherwise; ``W₁`` starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int | None = None, negative_slope: float = 0.0):
        super().__init__()
        hidden = hidden or min(in_channels, out_channels)
        self.act_0 = VNLeakyReLU(in_channels, negative_slope)
        self.fc_0 = VNLinear(in_channels, hidden)
        self.act_1 = VNLeakyReLU(hidden, negative_slope)
        self.fc_1 = VNLinear(hidden, out_channels)
        nn.init.zeros_(self.fc_1.weight)
        self.shortcut = VNLinear(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.fc_1(self.act_1(self.fc_0(self.act_0(x))))


class VNResnetPointnet(nn.Module):
    """Points ``[B, N, 3]`` (centred) → latent vectors ``[B, c_dim, 3]``, rotation-equivariant.

    Cross-product EdgeConv over ``k`` neighbours (``1 → hidden``, mean over neighbours), ``VNLinear(hidden
    → 2·hidden)``, then ``n_blocks`` VN residual blocks ``2·hidden → hidden``, each but the last followed
    by concatenation with the mean over points; a final mean over points, VN-ReLU and ``VNLinear(hidden → c_dim)``.
    """

    def __init__(self, c_dim: int = 32, hidden: int = 32, k: int = 20, n_blocks: int = 5,
                 negative_slope: float = 0.0):
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        self.k = k
        self.conv_pos = VNEdgeConv(1, hidden, negative_slope, cross=True)
        self.fc_pos = VNLinear(hidden, 2 * hidden)
        self.blocks = nn.ModuleList(VNResnetBlock(2 * hidden, hidden, negative_slope=negative_slope)
                                    for _ in range(n_blocks))
        self.act_c = VNLeakyReLU(hidden, negative_slope)
        self.fc_c = VNLinear(hidden, c_dim)

    def forward(self, points: Tensor) -> Tensor:
        check_points(points, type(self).__name__)
        x = to_vn(points)                                                   # [B, 1, 3, N]
        net = self.fc_pos(self.conv_pos(x, knn(x, min(self.k, points.shape[1]))))
        for i, block in enumerate(self.blocks):
            net = block(net)
            if i < len(self.blocks) - 1:
                net = torch.cat([net, net.mean(-1, keepdim=True).expand_as(net)], dim=1)
        return self.fc_c(self.act_c(net.mean(-1)))                         # [B, c_dim, 3]


class ResnetBlockFC(nn.Module):
    """``S x + W₁ relu(W₀ relu(x))`` on scalars ``[..., in]`` → ``[..., out]``; ``W₁`` starts at zero."""

    def __init__(self, in_features: int, out_features: int | None = None, hidden: int | None = None):
        super().__init__()
        out_features = out_features or in_features
        hidden = hidden or min(in_features, out_features)
        self.fc_0 = nn.Linear(in_features, hidden)
        self.fc_1 = nn.Linear(hidden, out_features)
        nn.init.zeros_(self.fc_1.weight)
        self.shortcut = nn.Linear(in_features, out_features, bias=False) if in_features != out_features else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.fc_1(torch.relu(self.fc_0(torch.relu(x))))


def invariant_features(queries: Tensor, latent: Tensor, latent_dir: Tensor) -> Tensor:
    """``[‖p‖², ⟨p, c_i⟩, ⟨c_i, d_i⟩]`` for queries ``[B, T, 3]``, latent ``C`` and ``D = W C`` ``[B, c, 3]``.

    Returns ``[B, T, 1 + 2c]``; unchanged when queries and latent rotate together.
    """
    t = queries.shape[1]
    norm2 = (queries * queries).sum(-1, keepdim=True)                      # [B, T, 1]
    dots = queries @ latent.transpose(1, 2)                                 # [B, T, c]
    self_dots = (latent * latent_dir).sum(-1).unsqueeze(1).expand(-1, t, -1)  # [B, T, c]
    return torch.cat([norm2, dots, self_dots], dim=-1)


class InvariantDecoder(nn.Module):
    """Queries ``[B, T, 3]`` and latent vectors ``[B, c_dim, 3]`` → occupancy logits ``[B, T]``, invariant.

    :func:`invariant_features` (with ``D = W C``, ``W`` a learned VN linear map), ``Linear(1 + 2c →
    hidden)``, ``n_blocks`` residual blocks, ReLU, ``Linear(hidden → 1)``.
    """

    def __init__(self, c_dim: int = 32, hidden: int = 64, n_blocks: int = 5):
        super().__init__()
        self.c_dim = c_dim
        self.c_in = VNLinear(c_dim, c_dim)
        self.fc_in = nn.Linear(1 + 2 * c_dim, hidden)
        self.blocks = nn.Sequential(*(ResnetBlockFC(hidden) for _ in range(n_blocks)))
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, queries: Tensor, latent: Tensor) -> Tensor:
        check_points(queries, type(self).__name__)
        if latent.ndim != 3 or latent.shape[1:] != (self.c_dim, 3) or latent.shape[0] != queries.shape[0]:
            raise ValueError(f"{type(self).__name__} expects latent vectors [B={queries.shape[0]}, {self.c_dim}, 3], "
                             f"got {list(latent.shape)}")
        features = invariant_features(queries, latent, self.c_in(latent))
        net = self.blocks(self.fc_in(features))
        return self.fc_out(torch.relu(net)).squeeze(-1)


# --- plain OccNet -----------------------------------------------------------------------------------

class ResnetPointnet(nn.Module):
    """OccNet's encoder: points ``[B, N, 3]`` → latent ``[B, c_dim]`` (not rotation-invariant).

    ``Linear(3 → 2·hidden)``, ``n_blocks`` residual blocks ``2·hidden → hidden`` each but the last
    followed by concatenation with the max over points, a final max over points, ReLU, ``Linear(hidden → c_dim)``.
    """

    def __init__(self, c_dim: int = 96, hidden: int = 96, n_blocks: int = 5):
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden, hidden) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden, c_dim)

    def forward(self, points: Tensor) -> Tensor:
        check_points(points, type(self).__name__)
        net = self.fc_pos(points)                                           # [B, N, 2h]
        for i, block in enumerate(self.blocks):
            net = block(net)
            if i < len(self.blocks) - 1:
                net = torch.cat([net, net.amax(1, keepdim=True).expand_as(net)], dim=-1)
        return self.fc_c(torch.relu(net.amax(1)))


class ConditionalBatchNorm(nn.Module):
    """Batch norm of ``x [B, T, F]`` over ``B·T`` whose scale and shift are linear in ``c [B, c_dim]``.

    Starts as plain normalisation (scale 1, shift 0).
    """

    def __init__(self, c_dim: int, features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(features, affine=False)
        self.gamma = nn.Linear(c_dim, features)
        self.beta = nn.Linear(c_dim, features)
        nn.init.zeros_(self.gamma.weight), nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight), nn.init.zeros_(self.beta.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        normed = self.bn(x.flatten(0, 1)).view_as(x)
        return self.gamma(c).unsqueeze(1) * normed + self.beta(c).unsqueeze(1)


class ConditionalResnetBlock(nn.Module):
    """``x + W₁ relu(CBN₁(W₀ relu(CBN₀(x, c)), c))`` on ``[B, T, F]``; ``W₁`` starts at zero."""

    def __init__(self, c_dim: int, features: int):
        super().__init__()
        self.bn_0, self.bn_1 = ConditionalBatchNorm(c_dim, features), ConditionalBatchNorm(c_dim, features)
        self.fc_0, self.fc_1 = nn.Linear(features, features), nn.Linear(features, features)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        net = self.fc_0(torch.relu(self.bn_0(x, c)))
        return x + self.fc_1(torch.relu(self.bn_1(net, c)))


class ConditionalDecoder(nn.Module):
    """OccNet's decoder: queries ``[B, T, 3]`` and latent ``[B, c_dim]`` → logits ``[B, T]``.

    ``Linear(3 → hidden)`` on ``p``, ``n_blocks`` conditional-batch-norm residual blocks, CBN, ReLU,
    ``Linear(hidden → 1)``.
    """

    def __init__(self, c_dim: int = 96, hidden: int = 64, n_blocks: int = 5):
        super().__init__()
        self.c_dim = c_dim
        self.fc_p = nn.Linear(3, hidden)
        self.blocks = nn.ModuleList(ConditionalResnetBlock(c_dim, hidden) for _ in range(n_blocks))
        self.bn = ConditionalBatchNorm(c_dim, hidden)
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, queries: Tensor, latent: Tensor) -> Tensor:
        check_points(queries, type(self).__name__)
        if latent.shape != (queries.shape[0], self.c_dim):
            raise ValueError(f"{type(self).__name__} expects a latent [B={queries.shape[0]}, {self.c_dim}], "
                             f"got {list(latent.shape)}")
        net = self.fc_p(queries)
        for block in self.blocks:
            net = block(net, latent)
        return self.fc_out(torch.relu(self.bn(net, latent))).squeeze(-1)


# --- the network -----------------------------------------------------------------------------------

class OccupancyNetwork(nn.Module):
    """Encoder + decoder, translation-invariant by centring: ``(inputs [B, N, 3], queries [B, T, 3])`` → ``[B, T]``.

    The cloud's centroid ``m`` is subtracted from both the cloud and the queries. ``encode`` returns
    ``(latent, m)`` so that many query batches can share one encoding (mesh extraction).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def encode(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        check_points(inputs, type(self).__name__)
        m = centroid(inputs)
        return self.encoder(inputs - m), m

    def decode(self, queries: Tensor, code: tuple[Tensor, Tensor]) -> Tensor:
        latent, m = code
        return self.decoder(queries - m, latent)

    def forward(self, inputs: Tensor, queries: Tensor) -> Tensor:
        return self.decode(queries, self.encode(inputs))


def build_occnet(kind: str = "vn", c_dim: int | None = None, hidden: int | None = None, decoder_hidden: int = 64,
                 n_blocks: int = 5, k: int = 20) -> OccupancyNetwork:
    """VN-OccNet (``kind="vn"``) or the plain OccNet (``"plain"``).

    Defaults are CPU-sized and give both the same latent size in scalars: VN ``c_dim = hidden = 32``
    vectors, plain ``c_dim = hidden = 96`` scalars (the reference uses 171 vectors / 513 scalars for
    the latent). ``k`` is the VN encoder's neighbourhood; ``n_blocks`` counts residual blocks in both
    the encoder and the decoder.
    """
    if kind == "vn":
        c_dim, hidden = c_dim or 32, hidden or 32
        return OccupancyNetwork(VNResnetPointnet(c_dim, hidden, k, n_blocks),
                                InvariantDecoder(c_dim, decoder_hidden, n_blocks))
    if kind == "plain":
        c_dim, hidden = c_dim or 96, hidden or 96
        return OccupancyNetwork(ResnetPointnet(c_dim, hidden, n_blocks),
                                ConditionalDecoder(c_dim, decoder_hidden, n_blocks))
    raise ValueError(f"occupancy network kind must be one of {KINDS}, got {kind!r}")
