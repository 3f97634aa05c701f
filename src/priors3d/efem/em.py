"""EFEM's expectation-maximisation: find every instance of the prior's category in a scene point cloud.

Each of ``P`` proposals (a batch, processed together) starts from a ball crop around a random point. The
M-step draws ``n_points`` points with probability proportional to the proposal's weights and encodes them
into a shape hypothesis ``(t, s, z)``; the E-step decodes the SDF and its gradient at every scene point and sets
the weights to ``exp(−k·|sdf|/s − k_n·(1 − |cos|))`` inside the hypothesis' reach ``|x − t| < reach·s``, where
``cos`` is the cosine between the SDF's gradient and the point's normal (PCA over its nearest scene points), with
``k`` annealed geometrically.
The isolated phase lets each proposal fit alone; the survivors (pruned, merged) then compete for points in the
joint phase, where weights become responsibilities against each other and a background slot of residual
``background``. Duplicates are merged on their supports (all inliers ``|sdf|/s < inlier``, overlapping: two
proposals on one object share them even where a split would divide the points); accepted instances then
keep the inliers they fit best, have at least ``min_inliers`` of them and a plausible scale, and leave few
points inside the shape (a hypothesis whose solid swallows observed points is not a visible surface).
Confidence = coverage (the share of the points within reach that are inliers) × (1 − that violation) × the
inliers' mean ``|cos|`` (a shape whose surface turns where the scan's does not, a box's faces under a rounded
hypothesis, is a poor explanation even where its points lie close to it) × completeness (the share of the
decoded surface with a scene point near it: a hypothesis that explains a box's points with a mug drawn around
them leaves most of that mug unseen). A proposal never takes points beyond
``anchor`` seed radii from its seed. Points at or below ``floor_height`` (z up) are not considered.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from scipy.spatial import cKDTree
from torch import Tensor

from priors3d.pointcloud.mesh import grid_points

from .prior import Code, ShapePrior, sdf_and_gradient


@dataclasses.dataclass(kw_only=True)
class EMConfig:
    """Parameters of :func:`segment` (residuals relative to the hypothesis scale ``s``)."""

    proposals: int = 48
    seed_radius: tuple[float, float] = (0.4, 1.2)
    """Range of the radii of the initial ball crops (scene units)."""
    n_points: int = 256
    """Points drawn per proposal and M-step."""
    isolated_iterations: int = 6
    joint_iterations: int = 4
    k: tuple[float, float] = (10.0, 60.0)
    """First and last sharpness of the weights ``exp(−k |sdf|/s − k_n (1 − |cos|))``."""
    normal_weight: float = 5.0
    """``k_n``: how much the angle between the SDF's gradient and a point's normal lowers its weight."""
    normal_neighbours: int = 16
    """Scene points whose covariance gives a point's normal (its least principal axis)."""
    reach: float = 0.8
    """Points farther than ``reach·s`` from ``t`` get no weight."""
    anchor: float = 2.5
    """Points farther than ``anchor`` seed radii from the seed get no weight: a proposal stays near its seed
    instead of growing over its neighbours."""
    background: float = 0.1
    """Residual of the background slot in the joint phase."""
    inlier: float = 0.08
    min_inliers: int = 40
    scale_range: tuple[float, float] = (0.4, 2.6)
    """Accepted hypothesis scales (scenes place objects at 0.5-2x their canonical size)."""
    max_violation: float = 0.3
    """Largest accepted fraction of observed points inside the shape (deeper than 2·inlier)."""
    merge_iou: float = 0.3
    surface_grid: int = 28
    """Grid points per axis over a hypothesis' reach at which its decoded surface is sampled (completeness)."""
    floor_height: float | None = 0.03
    chunk: int = 16
    """Proposals decoded at once."""


class Segmentation(NamedTuple):
    """Accepted instances: ``masks [K, N]`` bool over the scene points, ``confidence [K]``, their :class:`Code`."""

    masks: Tensor
    confidence: Tensor
    code: Code


def point_normals(points: Tensor, neighbours: int) -> Tensor:
    """Unsigned unit normals ``[N, 3]`` of ``points [N, 3]``: the least principal axis of each point's
    ``neighbours`` nearest points (itself included)."""
    cloud = points.detach().cpu().numpy()
    _, index = cKDTree(cloud).query(cloud, k=min(neighbours, len(points)))
    near = points[torch.from_numpy(index).reshape(len(points), -1).to(points.device)]
    near = near - near.mean(1, keepdim=True)
    return torch.linalg.eigh(near.transpose(1, 2) @ near)[1][..., 0]


def _residuals(prior: ShapePrior, code: Code, points: Tensor, normals: Tensor,
               config: EMConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Signed relative residuals ``sdf/s [P, n]``, the reach mask ``[P, n]`` and ``|cos| [P, n]`` between the
    SDF's gradient and the ``normals [n, 3]`` of ``points [1, n, 3]``."""
    sdf, gradient = [], []
    for i in range(0, len(code.t), config.chunk):
        chunk = Code(*(c[i:i + config.chunk] for c in code))
        values, slope = sdf_and_gradient(prior, chunk, points.expand(len(chunk.t), -1, -1))
        sdf.append(values)
        gradient.append(slope)
    sdf, gradient = torch.cat(sdf), torch.cat(gradient)
    agreement = (gradient * normals).sum(-1).abs() / gradient.norm(dim=-1).clamp_min(1e-12)
    reach = (points - code.t).norm(dim=-1) < config.reach * code.s[..., 0]
    return sdf / code.s[..., 0], reach, agreement


def _accept(relative: Tensor, reach: Tensor, agreement: Tensor, code: Code,
            config: EMConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Support ``[P, n]`` (each proposal's inliers, overlapping), confidence ``[P]`` and acceptance ``[P]``."""
    support = (relative.abs() < config.inlier) & reach
    count = support.sum(1)
    inside = ((relative < -2 * config.inlier) & reach).sum(1)
    violation = inside / (inside + count).clamp_min(1)
    coverage = count / reach.sum(1).clamp_min(1)
    alignment = (agreement * support).sum(1) / count.clamp_min(1)
    scale = code.s.view(-1)
    ok = ((count >= config.min_inliers) & (violation <= config.max_violation)
          & (scale >= config.scale_range[0]) & (scale <= config.scale_range[1]))
    return support, coverage * (1 - violation) * alignment, ok


def _completeness(prior: ShapePrior, code: Code, tree: cKDTree, config: EMConfig) -> Tensor:
    """Share ``[P]`` of each hypothesis' decoded surface that the scan saw: of the grid points within its reach whose
    ``|sdf|`` is below half a grid cell, those with a scene point (``tree``) within ``inlier·s``."""
    grid = grid_points(config.surface_grid, config.reach).to(code.t)
    grid = grid[grid.norm(dim=-1) < config.reach]
    half_cell = config.reach / (config.surface_grid - 1)
    share = torch.zeros(len(code.t), dtype=code.t.dtype, device=code.t.device)
    for i in range(len(code.t)):
        hypothesis = Code(*(c[i:i + 1] for c in code))
        scale = float(hypothesis.s)
        samples = grid * scale + hypothesis.t[0]
        surface = samples[prior.sdf(hypothesis, samples[None])[0].abs() < half_cell * scale]
        if len(surface):
            distance = tree.query(surface.cpu().numpy())[0]
            share[i] = float((distance < config.inlier * scale).mean())
    return share


def _assign(relative: Tensor, support: Tensor) -> Tensor:
    """Exclusive masks ``[P, n]``: each supported point goes to the proposal with its smallest residual."""
    if not len(support):  # no proposal left: no mask
        return support
    residual = relative.abs().masked_fill(~support, float("inf"))
    return support & (residual.argmin(0) == torch.arange(len(residual))[:, None])


def merge_duplicates(masks: Tensor, confidence: Tensor, iou: float) -> Tensor:
    """Indices of the masks ``[P, n]`` kept by greedy suppression: by decreasing confidence, drop a mask whose
    IoU with a kept one exceeds ``iou``."""
    order = confidence.argsort(descending=True)
    m = masks[order].float()
    inter = m @ m.T
    union = m.sum(1)[:, None] + m.sum(1)[None] - inter
    overlap = inter / union.clamp_min(1)
    kept: list[int] = []
    for i in range(len(order)):
        if all(overlap[i, j] <= iou for j in kept):
            kept.append(i)
    return order[torch.tensor(kept, dtype=torch.long)]


@torch.no_grad()
def segment(prior: ShapePrior, points: Tensor, config: EMConfig | None = None,
            generator: torch.Generator | None = None) -> Segmentation:
    """Instances of the prior's category in ``points [N, 3]`` (z up): see the module docstring."""
    config = config or EMConfig()
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"expected scene points [N, 3], got {list(points.shape)}")
    if config.normal_neighbours < 3:
        raise ValueError(f"normal_neighbours must be at least 3 (a plane through them), "
                         f"got {config.normal_neighbours}")
    if config.surface_grid < 2:
        raise ValueError(f"surface_grid must be at least 2 (grid points per axis), got {config.surface_grid}")
    prior.eval()
    dtype = next(prior.parameters()).dtype
    points = points.to(dtype)
    keep = (points[:, 2] > config.floor_height if config.floor_height is not None
            else torch.ones(len(points), dtype=torch.bool))
    x = points[keep]
    n, p = len(x), config.proposals
    empty = Segmentation(torch.zeros(0, len(points), dtype=torch.bool), torch.zeros(0, dtype=dtype),
                         Code(*(torch.zeros((0,) + shape, dtype=dtype) for shape in ((1, 3), (1, 1), (0, 3), (0,)))))
    if n < config.min_inliers:
        return empty
    normals = point_normals(x, config.normal_neighbours)
    centres = x[torch.randint(n, (p,), generator=generator)]
    low, high = config.seed_radius
    radius = low + (high - low) * torch.rand(p, 1, generator=generator, dtype=dtype)
    distance = (x[None] - centres[:, None]).norm(dim=-1)
    weights = (distance < radius).to(dtype)
    anchored = distance < config.anchor * radius
    iterations = config.isolated_iterations + config.joint_iterations
    for it in range(iterations):
        k = config.k[0] * (config.k[1] / config.k[0]) ** (it / max(iterations - 1, 1))
        index = torch.multinomial(weights + 1e-12, config.n_points, replacement=True, generator=generator)
        code = prior.encode(x[index])
        relative, reach, agreement = _residuals(prior, code, x[None], normals, config)
        evidence = torch.exp(-k * relative.abs() - config.normal_weight * (1 - agreement)) * reach * anchored
        if it + 1 == config.isolated_iterations:                     # end of the isolated phase: prune, merge
            support, confidence, ok = _accept(relative, reach, agreement, code, config)
            survivors = ok.nonzero()[:, 0]
            if not len(survivors):
                return empty
            survivors = survivors[merge_duplicates(support[survivors], confidence[survivors], config.merge_iou)]
            evidence, anchored = evidence[survivors], anchored[survivors]
        if it + 1 >= config.isolated_iterations:
            evidence = evidence / (evidence.sum(0) + torch.exp(torch.tensor(-k * config.background, dtype=dtype)))
        weights = evidence
    support, confidence, ok = _accept(relative, reach, agreement, code, config)
    chosen = ok.nonzero()[:, 0]
    confidence[chosen] *= _completeness(prior, Code(*(c[chosen] for c in code)), cKDTree(x.cpu().numpy()), config)
    if len(chosen):
        chosen = chosen[merge_duplicates(support[chosen], confidence[chosen], config.merge_iou)]
    masks = _assign(relative[chosen], support[chosen])
    chosen, masks = chosen[masks.sum(1) >= config.min_inliers], masks[masks.sum(1) >= config.min_inliers]
    full = torch.zeros(len(chosen), len(points), dtype=torch.bool)
    full[:, keep] = masks
    return Segmentation(full, confidence[chosen], Code(*(c[chosen] for c in code)))
