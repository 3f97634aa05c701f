"""InfoGaussian: a shaped decoder of per-Gaussian deltas, its Jacobians, and edits through them.

The decoder ``Φ(f_i; θ)`` maps per-Gaussian inputs ``f_i`` (a positional encoding of the mean, plus an
optional learned feature) through a small MLP to deltas ``(Δμ [3], Δc [3], Δo [1])`` added to the
Gaussian's mean, colour and opacity logit. Its last layer starts at zero, so the decoded field is the
fitted one at initialisation, while the Jacobians of the outputs with respect to that layer's weight
``θ_D`` are not zero: for output ``k`` and hidden features ``h_i`` they are ``e_k ⊗ h_i``. So
``cos(J_i, J_j) = cos(h_i, h_j)``, and shaping these cosines with InfoNCE (same mask -> resonate) makes
Gaussians of one object share a direction of ``θ_D``: an edit of one clicked Gaussian's deltas (a
minimum-norm step of ``θ_D``) carries the whole object with it.

The last hidden layer is linear, so the features ``h_i`` are signed and Gaussians of different objects
can be made orthogonal (``|cos| = 0``: an edit of one leaves the other in place) without driving
activations to zero. InfoNCE on ``|cos|`` could in principle also pair anti-parallel Jacobians, which
would move in opposite directions; the features start positively correlated and pairs of one object
are pulled up from there, so this does not happen in practice (the tests check the direction).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from priors3d.fields.gaussians import GaussianField
from priors3d.fields.splat import render_gaussians
from priors3d.fields.nerf import positional_encoding
from priors3d.shaping.jacobian import flatten, parameter_subset, unflatten
from priors3d.shaping.losses import info_nce, jacobian_cosines, norm_penalty
from priors3d.shaping.pairs import mask_pairs

OUTPUTS = {"motion": slice(0, 3), "color": slice(3, 6), "opacity": slice(6, 7)}
"""Columns of the decoder's output ``[N, 7]``: translation, colour and opacity-logit deltas."""


class GaussianDecoder(nn.Module):
    """``Φ(f_i; θ)``: per-Gaussian inputs -> deltas ``[N, 7]`` (see ``OUTPUTS``), zero at initialisation.

    Args:
        means: ``[G, 3]`` the fitted Gaussians' means (encoded once, as a buffer).
        aabb: ``[2, 3]`` box that the encoding normalises to ``[-1, 1]³``.
        n_freqs: frequencies of the positional encoding.
        feature_dim: size of a learned per-Gaussian feature appended to the encoding (0 = none).
        hidden, layers: width and number of hidden layers (softplus between them, the last one linear).
    """

    def __init__(self, means: Tensor, aabb: Tensor, n_freqs: int = 4, feature_dim: int = 8, hidden: int = 64,
                 layers: int = 2, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if means.ndim != 2 or means.shape[-1] != 3 or aabb.shape != (2, 3):
            raise ValueError(f"means must be [G, 3] and aabb [2, 3], got {list(means.shape)} and {list(aabb.shape)}")
        if layers < 1 or hidden < 1 or feature_dim < 0 or n_freqs < 0:
            raise ValueError(f"need layers, hidden >= 1 and feature_dim, n_freqs >= 0, got {layers}, {hidden}, "
                             f"{feature_dim}, {n_freqs}")
        low, high = aabb.float()  # the box becomes [-1, 1]³
        self.register_buffer("encoding", positional_encoding(2.0 * (means.float() - low) / (high - low) - 1.0, n_freqs))
        self.features = nn.Parameter(0.1 * torch.randn(means.shape[0], feature_dim, generator=generator))
        widths = [self.encoding.shape[1] + feature_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            linear = nn.Linear(a, b)
            for param in (linear.weight, linear.bias):
                nn.init.uniform_(param, -1.0 / math.sqrt(a), 1.0 / math.sqrt(a), generator=generator)
            body += [linear, nn.Softplus()]
        self.body = nn.Sequential(*body[:-1])  # the last hidden layer stays linear: signed features
        self.head = nn.Linear(hidden, 7)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def __len__(self) -> int:
        return self.encoding.shape[0]

    @staticmethod
    def head_names() -> tuple[str, ...]:
        """The default ``θ_D``: the weight of the last layer."""
        return ("head.weight",)

    def inputs(self, index: Tensor | None = None) -> Tensor:
        """``f_i`` ``[N, D]`` of the Gaussians at ``index [N]`` (all when None): encoding and feature."""
        index = slice(None) if index is None else index
        return torch.cat([self.encoding[index], self.features[index]], dim=-1)

    def forward(self, inputs: Tensor) -> Tensor:
        """``[N, D] -> [N, 7]`` deltas (``OUTPUTS``)."""
        return self.head(self.body(inputs))


def decoded_attributes(field: GaussianField, deltas: Tensor) -> dict[str, Tensor]:
    """Means ``[G, 3]``, colours ``[G, 3]`` and opacity logits ``[G]`` of ``field`` plus ``deltas [G, 7]``."""
    if deltas.shape != (len(field), 7):
        raise ValueError(f"deltas must be [G, 7] = [{len(field)}, 7], got {list(deltas.shape)}")
    return {"means": field.means + deltas[:, OUTPUTS["motion"]],
            "colors": field.colors + deltas[:, OUTPUTS["color"]],
            "opacity_logits": field.opacity_logits + deltas[:, 6]}


def decoder_deltas(decoder: GaussianDecoder, params: dict[str, Tensor] | None = None) -> Tensor:
    """``[G, 7]`` deltas of every Gaussian, with ``params`` (e.g. an edited ``θ_D``) swapped in."""
    inputs = decoder.inputs()
    return decoder(inputs) if params is None else functional_call(decoder, params, (inputs,))


def render_decoded(field: GaussianField, deltas: Tensor, c2w: Tensor, intrinsics: Tensor, height: int, width: int,
                   **options) -> dict[str, Tensor]:
    """Render ``field`` with ``deltas [G, 7]`` applied; ``options`` and result as ``render_gaussians``."""
    decoded = decoded_attributes(field, deltas)
    return render_gaussians(decoded["means"], field.covariances(), torch.sigmoid(decoded["opacity_logits"]),
                            decoded["colors"], c2w, intrinsics, height, width, **options)


def gaussian_jacobians(decoder: GaussianDecoder, inputs: Tensor, output: str = "motion",
                       names: tuple[str, ...] | None = None, theta: dict[str, Tensor] | None = None) -> Tensor:
    """Jacobians ``∂Φ_k(f_i)/∂θ_D`` of one output group, flattened: ``[N, K * P]`` (``K`` = 3, 3 or 1).

    ``torch.func.vmap`` of ``jacrev`` over the Gaussians; differentiable with respect to every other
    parameter of the decoder (and ``inputs``), so a loss on the result trains them.

    Args:
        inputs: ``[N, D]`` per-Gaussian inputs (``decoder.inputs(index)``).
        output: ``motion``, ``color`` or ``opacity`` (see ``OUTPUTS``).
        names: ``θ_D``, parameters of the MLP (default ``decoder.head_names()``); the learned features
            enter through ``inputs``, not here.
        theta: values of ``θ_D`` to evaluate at (default: the decoder's own parameters).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got {output!r}")
    if inputs.ndim != 2:
        raise ValueError(f"inputs must be [N, D], got {list(inputs.shape)}")
    theta = parameter_subset(decoder, names or decoder.head_names()) if theta is None else theta

    def value(params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(decoder, params, (x[None],))[0, OUTPUTS[output]]

    jac = vmap(jacrev(value), in_dims=(None, 0))(theta, inputs)  # {name: [N, K, *shape]}
    return flatten(jac, batch_dims=2).flatten(1)


def nearest_neighbours(points: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """``[G, k]`` indices of each point's ``k`` nearest other points among ``points [G, 3]``."""
    if not 1 <= k < points.shape[0]:
        raise ValueError(f"k must be in 1..{points.shape[0] - 1} for {points.shape[0]} points, got {k}")
    out = []
    for rows in torch.arange(points.shape[0]).split(chunk):
        dist = torch.cdist(points[rows], points)
        dist[torch.arange(rows.numel()), rows] = float("inf")
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def shaping_terms(decoder: GaussianDecoder, sample: Tensor, ids: Tensor, neighbours: Tensor,
                  temperature: float = 0.1) -> dict[str, Tensor]:
    """The InfoGaussian losses on the Gaussians ``sample [S]``, from their motion Jacobians:

    - ``mi``: InfoNCE on the absolute cosines of the labelled ones' Jacobians, positives = same mask id
      (``ids [G]``, -1 = no label: left out);
    - ``smooth``: ``mean(1 - |cos(J_i, J_j)|)`` over each one's 3D neighbours ``j`` (``neighbours [G, k]``);
    - ``norm``: ``mean((||J|| - 1)²)``, which keeps Jacobian lengths alike (an edit moves a Gaussian by
      ``h_i · h_c / |h_c|²``, so equal directions move equally only at equal lengths).
    """
    near = neighbours[sample]  # [S, k]
    index = torch.cat([sample, near.flatten()])
    jac = gaussian_jacobians(decoder, decoder.inputs(index))
    own, others = jac[:sample.numel()], jac[sample.numel():].reshape(*near.shape, -1)
    labelled = ids[sample] >= 0  # unlabelled Gaussians are no negatives either: they may belong to any object
    mi = info_nce(jacobian_cosines(own[labelled]), mask_pairs(ids[sample][labelled]), temperature)
    cos = (F.normalize(own, dim=-1)[:, None, :] * F.normalize(others, dim=-1)).sum(dim=-1)
    smooth = (1.0 - cos.abs()).mean()
    return {"mi": mi, "smooth": smooth, "norm": norm_penalty(own)}


def solve_edit(decoder: GaussianDecoder, index: int, output: str, target: Tensor, steps: int = 2,
               damping: float = 1e-6, names: tuple[str, ...] | None = None) -> dict[str, Tensor]:
    """An edited ``θ_D`` under which Gaussian ``index``'s ``output`` delta changes by ``target [K]``.

    Each step is the minimum-norm (damped) Gauss-Newton step ``Δθ = Jᵀ (J Jᵀ + damping I)⁻¹ r`` with the
    Gaussian's ``K x P`` Jacobian ``J`` and the remaining residual ``r``; with ``θ_D`` the last layer the
    decoder is linear in it and the first step is already exact (later steps only refine the damping).

    Returns:
        ``{name: tensor}`` for ``θ_D`` (pass to ``decoder_deltas`` as ``params``).
    """
    columns = OUTPUTS[output]
    if target.shape != (columns.stop - columns.start,):
        raise ValueError(f"target must be [{columns.stop - columns.start}] for output {output!r}, "
                         f"got {list(target.shape)}")
    if not 0 <= index < len(decoder):
        raise ValueError(f"index must be a Gaussian in 0..{len(decoder) - 1}, got {index}")
    theta = {n: t.detach().clone() for n, t in parameter_subset(decoder, names or decoder.head_names()).items()}
    inputs = decoder.inputs(torch.tensor([index])).detach()
    with torch.no_grad():
        start = decoder(inputs)[0, columns]
    for _ in range(steps):
        with torch.no_grad():
            residual = target - (functional_call(decoder, theta, (inputs,))[0, columns] - start)
        jac = gaussian_jacobians(decoder, inputs, output, theta=theta).detach().reshape(residual.numel(), -1)
        gram = jac @ jac.T + damping * torch.eye(residual.numel(), dtype=jac.dtype)
        step = jac.T @ torch.linalg.solve(gram, residual.to(jac.dtype))
        theta = unflatten(flatten(theta) + step, theta)
    return theta


def recall_leakage(displacement: Tensor, members: Tensor, offset: float) -> dict:
    """How an edit spread: ``displacement [G, 3]`` of every Gaussian after a requested move of length ``offset``.

    ``recall``: fraction of the object's Gaussians (``members [G]`` bool) that moved more than ``offset / 2``;
    ``leakage``: the same fraction among all the other Gaussians; ``drift``: their mean displacement as a
    fraction of ``offset`` (what leakage's threshold does not see).
    """
    if displacement.shape != (members.shape[0], 3) or members.dtype != torch.bool:
        raise ValueError(f"displacement must be [G, 3] and members [G] bool, got {list(displacement.shape)} "
                         f"and {list(members.shape)} {members.dtype}")
    length = displacement.norm(dim=-1)
    moved = length > 0.5 * offset
    others = ~members
    return {"recall": float(moved[members].float().mean()) if bool(members.any()) else float("nan"),
            "leakage": float(moved[others].float().mean()) if bool(others.any()) else 0.0,
            "drift": float(length[others].mean() / offset) if bool(others.any()) else 0.0}
