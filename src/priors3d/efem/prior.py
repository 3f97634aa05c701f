"""The SIM(3)-equivariant shape prior: an encoder of partial scans and an implicit SDF decoder (EFEM).

The encoder centres the scan on its centroid ``c`` and divides by its RMS radius ``σ`` (both move with the
input), so the network proper sees a translation- and scale-free cloud and only has to be rotation-
equivariant. It returns a :class:`Code`: a translation ``t = c + σ·o`` (``o`` an equivariant vector), a scale
``s = σ·exp(a)`` (``a`` invariant), an equivariant code ``z_so3 [C, 3]`` and an invariant code ``z_inv [D]``.
The decoder reads the signed distance at ``x`` from invariants of ``q = (x − t)/s``: ``⟨q, z_so3⟩``, ``|q|``,
their squares, Fourier features of the projections and ``z_inv``, times ``s``. For ``x ↦ λ·x R + τ``:
``t ↦ λ t R + τ``, ``s ↦ λ s``, ``z_so3 ↦ z_so3 R``, ``z_inv`` and
``q``'s invariants stay, and the SDF scales by ``λ``.

``PointNetEncoder`` is the non-equivariant baseline with the same centring and scaling: only rotations
differ.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from priors3d.vn import VNEdgeConv, VNLinear, VNLinearLeakyReLU, knn, to_vn
from priors3d.vn.sim3 import canonicalize

ENCODERS = ("vn", "pointnet")


class Code(NamedTuple):
    """One shape hypothesis per batch item: ``t [B, 1, 3]``, ``s [B, 1, 1]``, ``z_so3 [B, C, 3]``, ``z_inv [B, D]``."""

    t: Tensor
    s: Tensor
    z_so3: Tensor
    z_inv: Tensor


def normalise(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``points [B, M, 3]`` → ``((points − c)/σ, c [B, 1, 3], σ [B, 1, 1])`` with the centroid and RMS radius."""
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] < 2:
        raise ValueError(f"expected points [B, M, 3] with M >= 2, got {list(points.shape)}")
    return canonicalize(points)


class VNEncoder(nn.Module):
    """VN-DGCNN-style encoder: cross-product EdgeConv, two VN layers with the global mean, mean pooling.

    Vector features are also multiplied by the scan's second-moment matrix ``C = xᵀx / M`` (``v ↦ v C`` and
    ``v C²``, equivariant since ``C ↦ Rᵀ C R``): VN layers are linear in their vectors, and these products hand
    them the principal axes (a mug's or chair's up axis) that they would otherwise need many layers to build.
    """

    def __init__(self, channels: int = 32, latent: int = 16, invariant: int = 32, k: int = 10, pairs: int = 8):
        super().__init__()
        self.k = k
        self.edge = VNEdgeConv(1, channels, cross=True)
        self.layer1 = VNLinearLeakyReLU(3 * channels, 2 * channels)
        self.layer2 = VNLinearLeakyReLU(2 * channels, 2 * channels)
        self.to_code = VNLinear(6 * channels, latent)
        self.to_offset = VNLinear(6 * channels, 1)
        self.to_pairs = VNLinear(6 * channels, pairs)
        self.invariant = nn.Sequential(nn.Linear(pairs * latent, 2 * invariant), nn.ReLU(),
                                       nn.Linear(2 * invariant, invariant + 1))

    def forward(self, points: Tensor) -> Code:
        x, c, sigma = normalise(points)
        f = to_vn(x)                                                         # [B, 1, 3, M]
        cov = x.transpose(1, 2) @ x / x.shape[1]                             # [B, 3, 3]: C ↦ Rᵀ C R
        h = self.edge(f, knn(f, min(self.k, x.shape[1])))
        h = torch.cat([h, (h.transpose(2, 3) @ cov[:, None]).transpose(2, 3), h.mean(-1, keepdim=True).expand_as(h)], 1)
        g = self.layer2(self.layer1(h)).mean(-1)                              # [B, 2C, 3]
        g = torch.cat([g, g @ cov, g @ cov @ cov], 1)                          # v C is equivariant: v R Rᵀ C R
        z = self.to_code(g)
        gram = (self.to_pairs(g) @ z.transpose(1, 2)).flatten(1)             # invariant ⟨a_i, z_j⟩
        out = self.invariant(gram)
        return Code(c + sigma * self.to_offset(g), sigma * out[:, :1, None].exp(), z, out[:, 1:])


class PointNetEncoder(nn.Module):
    """Plain PointNet (shared MLP, max pooling) with the same centring and scaling: not rotation-equivariant."""

    def __init__(self, channels: int = 32, latent: int = 16, invariant: int = 32):
        super().__init__()
        self.latent = latent
        width = 4 * channels
        self.mlp = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 2 * width))
        self.head = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.ReLU(),
                                  nn.Linear(2 * width, 3 + 3 * latent + invariant + 1))

    def forward(self, points: Tensor) -> Code:
        x, c, sigma = normalise(points)
        out = self.head(self.mlp(x).amax(1))
        offset, z, rest = out.split([3, 3 * self.latent, out.shape[1] - 3 - 3 * self.latent], 1)
        return Code(c + sigma * offset[:, None], sigma * rest[:, :1, None].exp(), z.view(-1, self.latent, 3),
                    rest[:, 1:])


class SDFDecoder(nn.Module):
    """``s · MLP(⟨q, z_so3⟩, ⟨q, z_so3⟩², sin/cos(2ᵏπ⟨q, z_so3⟩), |q|, |q|², z_inv)`` at ``q = (x − t)/s``:
    points ``[B, Q, 3]`` → signed distances ``[B, Q]``. All inputs are rotation-invariant. The squares make the
    distance to an axis (``|q|² − ⟨q, a⟩²``: cylinders, tori) linear in the inputs, and the Fourier features
    (``k < frequencies``) let the MLP fit thin walls in a few hundred steps instead of thousands."""

    def __init__(self, latent: int = 16, invariant: int = 32, hidden: int = 128, layers: int = 4,
                 frequencies: int = 4):
        super().__init__()
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(frequencies), persistent=False)
        widths = [(2 + 2 * frequencies) * latent + 2 + invariant] + [hidden] * (layers - 1)
        blocks = [m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.Softplus(beta=20))]
        self.mlp = nn.Sequential(*blocks, nn.Linear(hidden, 1))

    def forward(self, code: Code, points: Tensor) -> Tensor:
        q = (points - code.t) / code.s
        projections = q @ code.z_so3.transpose(1, 2)
        squared = (q * q).sum(-1, keepdim=True)
        angles = (projections[..., None] * self.frequencies.to(q.dtype)).flatten(-2)
        features = torch.cat([projections, projections.square(), angles.sin(), angles.cos(), squared.sqrt(), squared,
                              code.z_inv[:, None].expand(-1, q.shape[1], -1)], -1)
        return code.s[..., 0] * self.mlp(features)[..., 0]


class ShapePrior(nn.Module):
    """Encoder (``"vn"``: SIM(3)-equivariant, ``"pointnet"``: baseline) and SDF decoder of one category."""

    def __init__(self, encoder: Literal["vn", "pointnet"] = "vn", channels: int = 32, latent: int = 16,
                 invariant: int = 32, hidden: int = 128, k: int = 10, frequencies: int = 4):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.encoder = (VNEncoder(channels, latent, invariant, k) if encoder == "vn"
                        else PointNetEncoder(channels, latent, invariant))
        self.decoder = SDFDecoder(latent, invariant, hidden, frequencies=frequencies)

    def encode(self, points: Tensor) -> Code:
        """Scans ``[B, M, 3]`` → :class:`Code`."""
        return self.encoder(points)

    def sdf(self, code: Code, points: Tensor) -> Tensor:
        """Signed distances ``[B, Q]`` of ``points [B, Q, 3]`` to the shapes of ``code``."""
        return self.decoder(code, points)

    def forward(self, scans: Tensor, queries: Tensor) -> Tensor:
        return self.sdf(self.encode(scans), queries)


def sdf_and_gradient(prior: ShapePrior, code: Code, points: Tensor) -> tuple[Tensor, Tensor]:
    """Signed distances ``[B, Q]`` of ``points [B, Q, 3]`` to the shapes of ``code`` and their gradients
    ``[B, Q, 3]`` with respect to the points, both detached (also under ``torch.no_grad``)."""
    with torch.enable_grad():
        query = points.detach().clone().requires_grad_(True)
        values = prior.sdf(code, query)
        (gradient,) = torch.autograd.grad(values.sum(), query)
    return values.detach(), gradient
