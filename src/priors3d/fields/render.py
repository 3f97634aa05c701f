"""Volume rendering as small pure functions, plus ``render_rays`` that puts them together.

Samples along a ray are intervals ``[t_start, t_end)``; a field gives each interval a density
``sigma`` and a colour, and the quadrature of Max (1995) / NeRF turns them into weights::

    alpha_i = 1 - exp(-sigma_i * delta_i)        T_i = exp(-sum_{j<i} sigma_j * delta_j)
    w_i     = T_i * alpha_i                      C   = sum_i w_i c_i

Every function takes any number of leading batch dimensions ``...`` (rays, or none at all under
``torch.func.vmap`` over single rays), writes nothing in place, and has a deterministic path
(``generator=None``) with a fixed number of samples, so ``render_rays`` works under
``torch.func.functional_call``, ``vmap`` and ``grad`` (including double backward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from priors3d.fields.rays import pixel_centres, pixel_rays, ray_aabb, ray_bounds
from priors3d.fields.views import Views


class Field(Protocol):
    """What ``render_rays`` needs from a radiance field (``priors3d.fields.nerf.NeRF`` is one).

    ``field(positions [..., S, 3], directions [..., 1, 3]) -> (sigma [..., S], rgb [..., S, 3])``
    (one direction per ray, broadcast over its samples); with ``directions=None`` only the density
    is computed and ``rgb`` is None.
    """

    def __call__(self, positions: Tensor, directions: Tensor | None) -> tuple[Tensor, Tensor | None]: ...


def stratified_edges(near: Tensor, far: Tensor, n_samples: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """Interval edges ``[..., n_samples + 1]`` splitting ``[near, far]`` into ``n_samples`` bins.

    Without a generator the bins are equal; with one, every edge is jittered uniformly between the
    centres of its two neighbouring bins, so edges stay sorted and inside ``[near, far]``.

    Args:
        near, far: ``[...]`` ray bounds.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    s = torch.linspace(0.0, 1.0, n_samples + 1, dtype=near.dtype, device=near.device)
    if generator is not None:
        centres = 0.5 * (s[1:] + s[:-1])
        lower = torch.cat([s[:1], centres])
        upper = torch.cat([centres, s[-1:]])
        u = torch.rand((*near.shape, n_samples + 1), generator=generator, dtype=near.dtype, device=near.device)
        s = lower + (upper - lower) * u
    return near[..., None] + (far - near)[..., None] * s


def unbounded_edges(near: Tensor, split: Tensor, far: Tensor, n_samples: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """Interval edges ``[..., n_samples + 1]`` for unbounded scenes (mip-NeRF 360's spacing): the first half of the
    bins linear from ``near`` to ``split`` (where the ray leaves the inner box), the second half evenly in
    disparity ``1/t`` from ``split`` to ``far``. Stratified like ``stratified_edges``.

    Args:
        near, split, far: ``[...]`` with ``near <= split <= far`` and ``split > 0``.
    """
    s = stratified_edges(torch.zeros_like(near), torch.ones_like(near), n_samples, generator)
    inner = near[..., None] + (split - near)[..., None] * (2 * s).clamp_max(1.0)
    outer = 1.0 / (1.0 / split[..., None] + (1.0 / far - 1.0 / split)[..., None] * (2 * s - 1).clamp_min(0.0))
    return torch.where(s <= 0.5, inner, outer)


def ray_fraction(t: Tensor, near: Tensor, far: Tensor, split: Tensor | None = None) -> Tensor:
    """Where distances ``t [..., K]`` lie on their rays in the units the samples are spaced in, ``[..., K]`` in
    ``[0, 1]``: ``(t - near) / (far - near)``, or with ``split`` (``[...]``, an unbounded scene) the inverse of
    ``unbounded_edges``' mapping (linear to ``split`` on ``[0, 1/2]``, disparity beyond). ``near, far``: ``[...]``."""
    near, far = near[..., None], far[..., None]
    if split is None:
        return ((t - near) / (far - near).clamp_min(1e-12)).clamp(0.0, 1.0)
    split = split[..., None]
    inner = 0.5 * (t - near) / (split - near).clamp_min(1e-12)
    outer = 0.5 + 0.5 * (1.0 / t.clamp_min(1e-12) - 1.0 / split) / (1.0 / far - 1.0 / split).clamp_max(-1e-12)
    return torch.where(t <= split, inner, outer).clamp(0.0, 1.0)


def distortion_loss(weights: Tensor, s_edges: Tensor) -> Tensor:
    """mip-NeRF 360's distortion loss of each ray, ``[...]``: small when its weight sits in one short stretch,
    large when the weight is split between a floater and the surface behind it::

        sum_ij w_i w_j |m_i - m_j|  +  1/3 sum_i w_i^2 (s_i+1 - s_i),      m_i = (s_i + s_i+1) / 2

    (the first sum in O(S) with prefix sums, from the sorted midpoints).

    Args:
        weights: ``[..., S]`` quadrature weights.
        s_edges: ``[..., S + 1]`` sorted interval edges in normalised ray units (``ray_fraction``).
    """
    if s_edges.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(f"s_edges must be [..., S + 1] for weights [..., S]; got {list(s_edges.shape)} "
                         f"and {list(weights.shape)}")
    mids, widths = 0.5 * (s_edges[..., 1:] + s_edges[..., :-1]), s_edges[..., 1:] - s_edges[..., :-1]
    weight_before = torch.cumsum(weights, dim=-1) - weights
    moment_before = torch.cumsum(weights * mids, dim=-1) - weights * mids
    across = 2.0 * (weights * (mids * weight_before - moment_before)).sum(dim=-1)
    return across + (weights.square() * widths).sum(dim=-1) / 3.0


def render_weight_from_density(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Quadrature weights of intervals along rays.

    Args:
        t_starts, t_ends: ``[..., S]`` interval bounds, sorted along the last dimension.
        sigmas: ``[..., S]`` non-negative densities.

    Returns:
        ``weights [..., S]`` (sum <= 1 per ray), ``transmittance [..., S]`` (the light reaching each
        interval's start) and ``alphas [..., S]`` (the opacity of each interval).
    """
    optical = sigmas * (t_ends - t_starts)
    alphas = 1.0 - torch.exp(-optical)
    before = torch.cumsum(optical, dim=-1) - optical  # exclusive cumulative sum
    transmittance = torch.exp(-before)
    return transmittance * alphas, transmittance, alphas


def accumulate_along_rays(weights: Tensor, values: Tensor | None = None) -> Tensor:
    """Weighted sum along each ray.

    Args:
        weights: ``[..., S]``.
        values: ``[..., S, C]``, or None to accumulate the weights themselves (opacity).

    Returns:
        ``[..., C]``, or ``[...]`` when ``values`` is None.
    """
    if values is None:
        return weights.sum(dim=-1)
    if values.shape[:-1] != weights.shape:
        raise ValueError(f"values must be [..., S, C] matching weights {list(weights.shape)}, "
                         f"got {list(values.shape)}")
    return (weights[..., None] * values).sum(dim=-2)


def importance_edges(edges: Tensor, weights: Tensor, n_intervals: int,
                     generator: torch.Generator | None = None, padding: float = 1e-3) -> Tensor:
    """Split rays into intervals whose density follows piecewise-constant weights (inverse CDF).

    Edge ``k`` of ``n`` sits at CDF quantile ``u_k``: ``0`` and ``1`` for the ends (so the intervals
    cover the same range as ``edges``), ``k / n`` in between, or with a generator ``(k - 0.5 + r) / n``,
    ``r ~ U[0, 1)`` (stratified). Many short intervals land where the weights are large.

    Args:
        edges: ``[..., S + 1]`` sorted edges of the weighted intervals.
        weights: ``[..., S]`` non-negative weights (treated as constants).
        n_intervals: how many intervals ``N`` to return.
        padding: added to the normalised weights so that no interval has zero probability.

    Returns:
        ``[..., N + 1]`` sorted edges from ``edges[..., 0]`` to ``edges[..., -1]``.
    """
    if edges.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(f"edges must be [..., S + 1] for weights [..., S]; got {list(edges.shape)} "
                         f"and {list(weights.shape)}")
    if n_intervals < 1:
        raise ValueError(f"n_intervals must be >= 1, got {n_intervals}")
    edges, weights = edges.detach(), weights.detach()
    pdf = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12) + padding
    pdf = pdf / pdf.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1).clamp_max(1.0)], dim=-1)
    k = torch.arange(n_intervals + 1, dtype=cdf.dtype, device=cdf.device)
    u = k + torch.zeros_like(cdf[..., :1])  # [..., N + 1], batched like cdf (also under vmap)
    if generator is not None:
        jitter = torch.rand(u.shape, generator=generator, dtype=cdf.dtype, device=cdf.device) - 0.5
        u = u + jitter
    u = (u / n_intervals).clamp(0.0, 1.0)
    u = torch.cat([torch.zeros_like(u[..., :1]), u[..., 1:-1], torch.ones_like(u[..., :1])], dim=-1)
    upper = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True).clamp(1, cdf.shape[-1] - 1)
    lower = upper - 1
    cdf_lo, cdf_hi = cdf.gather(-1, lower), cdf.gather(-1, upper)
    edge_lo, edge_hi = edges.gather(-1, lower), edges.gather(-1, upper)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    return edge_lo + frac * (edge_hi - edge_lo)


def dilate_weights(weights: Tensor) -> Tensor:
    """``[..., S] -> [..., S]``: each weight becomes the mean of its two neighbouring pair-maxima.

    A surface inside one interval can give its weight to the next one when densities are read at
    interval centres; spreading weights over neighbours (mip-NeRF's max-blur) keeps it covered.
    """
    padded = torch.cat([weights[..., :1], weights, weights[..., -1:]], dim=-1)
    pair_max = torch.maximum(padded[..., :-1], padded[..., 1:])  # [..., S + 1]
    return 0.5 * (pair_max[..., :-1] + pair_max[..., 1:])


def _query(field, params: dict[str, Tensor] | None, positions: Tensor,
           directions: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if params is None:
        return field(positions, directions)
    return torch.func.functional_call(field, params, (positions, directions))


def _query_occupied(field, params: dict[str, Tensor] | None, positions: Tensor, directions: Tensor,
                    occupied: Tensor) -> tuple[Tensor, Tensor]:
    """``sigma [..., S]``, ``rgb [..., S, 3]`` at ``positions [..., S, 3]`` seen along ``directions [..., 3]``; zero
    where not ``occupied [..., S]``. Only occupied samples go through the field, except with ``params`` (the
    ``torch.func`` path, where shapes must not depend on the data)."""
    if params is not None:
        sigma, rgb = _query(field, params, positions, directions[..., None, :])
        return sigma * occupied, rgb * occupied[..., None]
    index = occupied.nonzero(as_tuple=True)
    sigma_in, rgb_in = field(positions[index], directions[..., None, :].expand(positions.shape)[index])
    return (sigma_in.new_zeros(occupied.shape).index_put(index, sigma_in),
            rgb_in.new_zeros(positions.shape).index_put(index, rgb_in))


def render_rays(field: Field, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, n_samples: int = 32,
                n_proposal: int = 0, proposal=None, generator: torch.Generator | None = None,
                background: Tensor | float | None = None, params: dict[str, Tensor] | None = None,
                inner: Tensor | None = None, skip: float = 0.0) -> dict[str, Tensor]:
    """Render rays through a radiance field on ``n_samples`` intervals per ray.

    Without a proposal pass (``n_proposal == 0``) the intervals are stratified over ``[near, far]``.
    With one, densities at ``n_proposal`` stratified intervals (from ``proposal(positions [..., 3])
    -> sigma [...]``, or from the field itself when ``proposal`` is None; no gradient) give weights
    that are dilated (``dilate_weights``) and inverted (``importance_edges``) into the rendered
    intervals, which then crowd around surfaces. Sample counts never depend on the data.

    Args:
        field: a ``Field`` (an ``nn.Module`` when ``params`` is given).
        rays_o, rays_d: ``[..., 3]`` origins and unit directions.
        near, far: ``[...]`` bounds (``near == far`` gives an empty ray).
        generator: random (stratified) samples when given, deterministic ones otherwise.
        background: colour ``[3]`` (or a grey level) behind the field, or None for black.
        params: optional parameters for ``torch.func.functional_call(field, params, ...)``;
            a subset of the field's parameters is allowed.
        inner: ``[2, 3]`` inner box of an unbounded scene: intervals are spaced by ``unbounded_edges``
            (linear to where the ray leaves it, then in disparity to ``far``) instead of evenly.
        skip: empty-space skipping (Instant-NGP's occupancy grid): intervals whose optical thickness under the
            ``proposal`` density, ``sigma * (t_end - t_start)``, is below ``skip`` count as empty (density 0). The
            field is evaluated on the other samples only, unless ``params`` is given (then on all, masked after,
            so that ``vmap`` works): the result is the same.

    Returns:
        dict with ``rgb [..., 3]``, ``depth [...]`` (expected distance along the ray, normalised by
        the opacity), ``acc [...]`` (opacity), ``weights``, ``sigmas``, ``t_starts``, ``t_ends``
        ``[..., n_samples]`` and ``s_edges [..., n_samples + 1]``, the edges in the normalised units they were
        spaced in (``ray_fraction``).
    """
    if rays_o.shape != rays_d.shape or rays_o.shape[-1] != 3:
        raise ValueError(f"rays_o and rays_d must both be [..., 3], got {list(rays_o.shape)} and {list(rays_d.shape)}")
    if near.shape != rays_o.shape[:-1] or far.shape != rays_o.shape[:-1]:
        raise ValueError(f"near and far must be [...] = {list(rays_o.shape[:-1])}, "
                         f"got {list(near.shape)} and {list(far.shape)}")
    split = None if inner is None else ray_aabb(rays_o, rays_d, inner)[1].clamp(min=near, max=far).clamp_min(1e-6)
    if split is None:
        spaced = lambda n: stratified_edges(near, far, n, generator)  # noqa: E731
    else:
        spaced = lambda n: unbounded_edges(near, split, far, n, generator)  # noqa: E731
    if n_proposal > 0:
        with torch.no_grad():
            coarse = spaced(n_proposal)
            mids = 0.5 * (coarse[..., 1:] + coarse[..., :-1])
            points = rays_o[..., None, :] + mids[..., None] * rays_d[..., None, :]
            sigma = proposal(points) if proposal is not None else _query(field, params, points, None)[0]
            weights, _, _ = render_weight_from_density(coarse[..., :-1], coarse[..., 1:], sigma)
            edges = importance_edges(coarse, dilate_weights(weights), n_samples, generator)
    else:
        edges = spaced(n_samples)
    t_starts, t_ends = edges[..., :-1], edges[..., 1:]
    t_mid = 0.5 * (t_starts + t_ends)
    positions = rays_o[..., None, :] + t_mid[..., None] * rays_d[..., None, :]
    if skip > 0.0:
        if proposal is None:
            raise ValueError("skip > 0 needs a proposal density (the field's cached density grid)")
        with torch.no_grad():
            occupied = proposal(positions) * (t_ends - t_starts) >= skip  # [..., S]
        sigma, rgb = _query_occupied(field, params, positions, rays_d, occupied)
    else:
        sigma, rgb = _query(field, params, positions, rays_d[..., None, :])
    weights, _, _ = render_weight_from_density(t_starts, t_ends, sigma)
    acc = accumulate_along_rays(weights)
    colour = accumulate_along_rays(weights, rgb)
    depth = accumulate_along_rays(weights, t_mid[..., None])[..., 0] / acc.clamp_min(1e-6)
    if background is not None:
        colour = colour + (1.0 - acc)[..., None] * torch.as_tensor(background, dtype=colour.dtype, device=colour.device)
    return {"rgb": colour, "depth": depth, "acc": acc, "weights": weights, "sigmas": sigma, "t_starts": t_starts,
            "t_ends": t_ends, "s_edges": ray_fraction(edges, near, far, split)}


@dataclass
class FieldSetup:
    """How a fitted field is rendered: which scene, its box and ray bounds, and the sampling."""

    scene: str
    aabb: tuple[float, float, float, float, float, float]
    near: float
    far: float
    n_samples: int
    n_proposal: int
    background: tuple[float, float, float] | None = None
    downscale: int = 1
    unbounded: bool = False
    """``aabb`` is the inner box of a contracted field; rays run from ``near`` to ``far`` whatever the box."""
    supersample: int = 1
    """Rays per pixel side in renders (their colours averaged), for frames rendered or taken anti-aliased."""
    skip: float = 0.0
    """Samples whose optical thickness under the cached density grid is below this are empty (``render_rays``)."""

    def sampling(self, model: nn.Module) -> dict:
        """Keyword arguments of ``render_rays`` that render ``model`` as it was fitted: the sample counts and
        ``skip``, the cached density grid as proposal (only when ``n_proposal > 0`` or ``skip > 0``), the background
        as a tensor and, when unbounded, the inner box."""
        return {"n_samples": self.n_samples, "n_proposal": self.n_proposal, "skip": self.skip,
                "proposal": model.grid_density if self.n_proposal > 0 or self.skip > 0 else None,
                "background": None if self.background is None else torch.tensor(self.background),
                "inner": torch.tensor(self.aabb).reshape(2, 3) if self.unbounded else None}

    def bounds(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """``near [...]``, ``far [...]`` of rays ``[..., 3]``: clipped to the box (``ray_bounds``), or for an
        unbounded field the whole ``[near, far]``."""
        if self.unbounded:
            return (torch.full(origins.shape[:-1], self.near, dtype=origins.dtype),
                    torch.full(origins.shape[:-1], self.far, dtype=origins.dtype))
        return ray_bounds(origins, directions, torch.tensor(self.aabb).reshape(2, 3), self.near, self.far)


@torch.no_grad()
def render_nerf_views(model: nn.Module, views: Views, setup: FieldSetup, chunk: int = 8192,
                      progress: bool = False, params: dict[str, Tensor] | None = None) -> list[dict[str, Tensor]]:
    """Render every view of ``views`` (with ``params`` swapped in, see ``render_rays``): one dict per view
    with ``rgb [H, W, 3]``, ``depth [H, W]``, ``acc [H, W]``; each the mean over ``setup.supersample`` squared
    rays spread evenly inside the pixel."""
    k, sampling, (h, w) = setup.supersample, setup.sampling(model), views.hw
    offsets = [((i + 0.5) / k - 0.5, (j + 0.5) / k - 0.5) for j in range(k) for i in range(k)]
    centres = pixel_centres(h, w, views.c2w.dtype)  # [H * W, 2]
    out = []
    for v in tqdm(range(len(views)), desc="render", disable=not progress, leave=False):
        sums = {}
        for offset in offsets:
            o, d = pixel_rays(views.c2w[v], views.intrinsics[v], centres + torch.tensor(offset, dtype=centres.dtype))
            near, far = setup.bounds(o, d)
            parts = [render_rays(model, o[i:i + chunk], d[i:i + chunk], near[i:i + chunk], far[i:i + chunk],
                                 params=params, **sampling) for i in range(0, o.shape[0], chunk)]
            for key in ("rgb", "depth", "acc"):
                value = torch.cat([p[key] for p in parts]).reshape(h, w, *parts[0][key].shape[1:]) / len(offsets)
                sums[key] = sums[key] + value if key in sums else value
        out.append(sums)
    return out
