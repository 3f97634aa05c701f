"""Label-free pair sources: computed from the training images and depth only (the views' own depth maps, e.g. an
RGB-D sensor's, or the fitted field's rendered depth).

- ``segments``: per-view graph-based segmentation (Felzenszwalb & Huttenlocher 2004) of colour and depth,
  a stand-in for SAM masks: ids mean nothing across views.
- ``consistent``: those segments lifted to 3D with that depth, voted into a voxel grid and
  associated across views when their voxel sets overlap (IoU above a threshold, union-find), a stand-in
  for view-consistent DINO features: one id names the same surface region in every view.
- ``segment_lookup``: the baseline without Jacobians: a pixel gets the class of the click whose
  consistent segment it shares (test views look their segment up in the voxel grid).

Nothing here reads label maps. Ids are ``[V, H, W]`` int64, ``-1`` where the depth is unknown (a rendered
opacity below 0.5). Everything is deterministic (no random draws).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from skimage.segmentation import felzenszwalb as skimage_felzenszwalb
from torch import Tensor, nn

from priors3d.fields.rays import views_rays
from priors3d.fields.render import FieldSetup, render_nerf_views
from priors3d.fields.views import Views
from priors3d.shaping.clicks import Click, click_labels


@dataclass
class SegmentConfig:
    """Options of the label-free sources (``ShapeConfig.segments``)."""

    scale: float = 4.0
    """Felzenszwalb's ``k``: larger gives larger segments (the merge threshold is ``k / |segment|``)."""
    depth_weight: float = 0.0
    """Weight of the relative depth step ``|d_p - d_q| / min(d_p, d_q)`` next to the RGB distance in an edge."""
    min_size: int = 10
    """Segments smaller than this (pixels) join their most similar neighbour."""
    voxels: int = 64
    """Voxel grid cells along the longest side of the scene box (``consistent``)."""
    iou: float = 0.2
    """Two segments of different views get one id when their voxel sets overlap by this IoU (``consistent``)."""
    measured_depth: bool = True
    """Lift with the views' own depth maps when the scene has them (an RGB-D sensor; the procedural room renders
    them), else with the field's rendered depth. Off: always the rendered depth."""


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def felzenszwalb(image: np.ndarray, scale: float, min_size: int, depth: np.ndarray | None = None,
                 depth_weight: float = 0.0, valid: np.ndarray | None = None) -> np.ndarray:
    """Graph-based segmentation (scikit-image's ``felzenszwalb``, no smoothing) of ``image [H, W, C]`` in [0, 1];
    returns ``[H, W]`` ids ``0..S-1``, ``-1`` outside ``valid [H, W]``.

    An edge weighs the RGB distance of its pixels, plus ``depth_weight`` times their log-depth step (about the
    relative depth step) when ``depth [H, W]`` (> 0) is given. Segments merge while an edge is no heavier than
    both segments' largest internal edge plus ``scale / size``; segments under ``min_size`` pixels then join a
    neighbour (scikit-image's ``scale`` counts in 8-bit units, hence the factor 255). Invalid pixels are kept
    apart by an extra channel that makes every edge to them heavier than any merge threshold.
    """
    valid = np.ones(image.shape[:2], bool) if valid is None else valid
    channels = [image, 1e3 * (~valid[..., None])]  # a wall of weight 1000 between valid and invalid pixels
    if depth is not None and depth_weight > 0:
        channels.append(depth_weight * np.log(np.where(depth > 0, depth, 1.0))[..., None])
    with warnings.catch_warnings():  # more than 3 channels are meant
        warnings.filterwarnings("ignore", "Got image with third dimension", RuntimeWarning)
        ids = skimage_felzenszwalb(np.concatenate(channels, -1), scale=255.0 * scale, sigma=0.0, min_size=min_size,
                                   channel_axis=-1)
    _, compact = np.unique(np.where(valid, ids, -1), return_inverse=True)
    return np.where(valid, compact.reshape(ids.shape) - (0 if valid.all() else 1), -1)


@torch.no_grad()
def rendered_geometry(model: nn.Module, setup: FieldSetup, views: Views) -> tuple[Tensor, Tensor, Tensor]:
    """The field's surface in ``views``: distance along each ray ``[V, H, W]``, world points ``[V, H, W, 3]`` and
    where it is opaque (rendered opacity > 0.5) ``[V, H, W]`` bool."""
    renders = render_nerf_views(model, views, setup)
    depth = torch.stack([r["depth"] for r in renders])
    origins, directions = views_rays(views)
    valid = torch.stack([r["acc"] for r in renders]) > 0.5
    return depth, origins + depth[..., None] * directions, valid


def depth_geometry(views: Views, z_depth: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``rendered_geometry`` from z-depth maps ``[V, H, W]`` of ``views`` (0 = unknown): the views' own (an RGB-D
    sensor's) or rendered ones (Gaussians)."""
    origins, directions = views_rays(views)
    forward = -views.c2w[:, None, None, :3, 2]  # OpenGL cameras look down -z
    depth = z_depth / (directions * forward).sum(-1).clamp_min(1e-6)
    return depth, origins + depth[..., None] * directions, z_depth > 0


def surface(model: nn.Module, setup: FieldSetup, views: Views, measured: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``depth_geometry`` of the views' depth maps when ``measured`` and they have them, else ``rendered_geometry``."""
    if measured and views.depth is not None:
        return depth_geometry(views, views.depth)
    return rendered_geometry(model, setup, views)


def view_segments(images: Tensor, depth: Tensor, valid: Tensor, cfg: SegmentConfig) -> Tensor:
    """``segments``: per-view ids ``[V, H, W]`` from ``images [V, H, W, 3]`` and ray depth ``[V, H, W]``
    (``-1`` outside ``valid [V, H, W]``)."""
    return torch.from_numpy(np.stack([
        felzenszwalb(images[v].double().numpy(), cfg.scale, cfg.min_size, depth[v].double().numpy(),
                     cfg.depth_weight, valid[v].numpy()) for v in range(len(images))])).long()


def voxel_index(points: Tensor, aabb: tuple[float, ...], voxels: int) -> Tensor:
    """``[...]`` int64 flat voxel of ``points [..., 3]`` in a grid of ``voxels`` cells along the box's longest side."""
    box = torch.tensor(aabb, dtype=torch.float64).reshape(2, 3)
    cell = float((box[1] - box[0]).max()) / voxels
    dims = ((box[1] - box[0]) / cell).ceil().long().clamp_min(1)
    ijk = ((points.double() - box[0]) / cell).floor().long()
    ijk = torch.minimum(ijk.clamp_min(0), dims - 1)
    return (ijk[..., 0] * dims[1] + ijk[..., 1]) * dims[2] + ijk[..., 2]


def associate(segments: Tensor, voxel: Tensor, iou: float) -> tuple[Tensor, Tensor]:
    """Ids shared across views: segments of different views whose voxel sets overlap by ``iou`` join (union-find).

    The IoU of segments ``A`` (view ``v``) and ``B`` (view ``w``) counts only voxels both views see,
    ``|A ∩ B| / (|A ∩ seen(w)| + |B ∩ seen(v)| - |A ∩ B|)``, so a wall seen whole from far away and in part
    from close by still matches. Pairs join in decreasing IoU, and only while the two groups hold no segment
    of the same view, so one under-segmented view cannot chain two objects together.

    Args:
        segments: ``[V, H, W]`` per-view ids (-1 void); voxel: ``[V, H, W]`` flat voxel of each pixel.

    Returns:
        ``[V, H, W]`` global ids ``0..K-1`` (-1 void) and ``vote [n_voxels_seen, 2]``: each voxel that a pixel
        lands in and the global id most of its pixels have (for looking up new views).
    """
    valid = segments >= 0
    offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long),
                                      segments.flatten(1).amax(1).clamp_min(-1) + 1]), 0)
    seg = (segments + offsets[:-1, None, None])[valid].numpy()  # unique id per (view, segment)
    vox = voxel[valid].numpy()
    n_seg = int(offsets[-1])
    _, vox = np.unique(vox, return_inverse=True)
    incidence = sparse.csr_matrix((np.ones(len(seg)), (seg, vox)), shape=(n_seg, int(vox.max(initial=-1)) + 1))
    incidence.data[:] = 1.0  # csr summed the duplicate (segment, voxel) pairs: back to 0/1 (voxel sets)
    view_of = np.searchsorted(offsets.numpy(), np.arange(n_seg), side="right") - 1
    seen = sparse.csr_matrix((np.ones(n_seg), (view_of, np.arange(n_seg))), shape=(len(segments), n_seg)) @ incidence
    seen.data[:] = 1.0  # [V, voxels]: the voxels each view sees
    covisible = (incidence @ seen.T).toarray()  # [segments, V]: voxels of each segment that each view sees
    overlap = (incidence @ incidence.T).tocoo()
    a, b, inter = overlap.row, overlap.col, overlap.data
    union = covisible[a, view_of[b]] + covisible[b, view_of[a]] - inter  # within the voxels both views see
    score = inter / np.maximum(union, 1)
    keep = (a < b) & (view_of[a] != view_of[b]) & (score >= iou)
    order = np.argsort(-score[keep], kind="stable")
    parent, views = list(range(n_seg)), [1 << int(v) for v in view_of]  # views: bit mask of a group's views
    for i, j in zip(a[keep][order].tolist(), b[keep][order].tolist()):
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj and not views[ri] & views[rj]:  # at most one segment per view in a group: no chains
            ri, rj = min(ri, rj), max(ri, rj)
            parent[rj], views[ri] = ri, views[ri] | views[rj]
    roots = np.array([_find(parent, i) for i in range(n_seg)])
    _, global_ids = np.unique(roots, return_inverse=True)
    out = torch.full_like(segments, -1)
    out[valid] = torch.from_numpy(global_ids[seg]).long()
    return out, voxel_votes(voxel[valid], out[valid])


def voxel_votes(voxel: Tensor, ids: Tensor) -> Tensor:
    """``[n, 2]`` rows ``(voxel, id)``: for each voxel of ``voxel [N]``, the most frequent of ``ids [N]`` there."""
    if voxel.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    pairs, counts = torch.unique(torch.stack([voxel, ids], 1), dim=0, return_counts=True)
    order = np.lexsort((-counts.numpy(), pairs[:, 0].numpy()))  # by voxel, most votes first
    pairs = pairs[torch.from_numpy(order)]
    first = torch.ones(len(pairs), dtype=torch.bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    return pairs[first]


def lookup(votes: Tensor, voxel: Tensor, valid: Tensor) -> Tensor:
    """Ids ``[...]`` of pixels whose voxels are ``voxel [...]`` (``-1`` where not ``valid`` or never voted)."""
    if len(votes) == 0:
        return torch.full_like(voxel, -1)
    position = torch.searchsorted(votes[:, 0].contiguous(), voxel.flatten().contiguous()).clamp(max=len(votes) - 1)
    found = (votes[position, 0] == voxel.flatten()) & valid.flatten()
    return torch.where(found, votes[position, 1], -1).reshape(voxel.shape)


@dataclass
class LabelFree:
    """A label-free source computed for the training views: ``segments`` and ``consistent`` ids ``[V, H, W]`` and
    the voxel votes of the consistent ids (``associate``) in a grid of ``voxels`` cells over ``aabb``."""

    segments: Tensor
    consistent: Tensor
    votes: Tensor
    aabb: tuple[float, ...]
    voxels: int


def label_free_source(views: Views, geometry: tuple[Tensor, Tensor, Tensor], aabb: tuple[float, ...],
                      cfg: SegmentConfig) -> LabelFree:
    """Both label-free sources of ``views`` from their images and ``geometry`` (``surface`` or
    ``rendered_geometry``: ray depth, points, valid); no label maps."""
    depth, points, valid = geometry
    segments = view_segments(views.images, depth, valid, cfg)
    consistent, votes = associate(segments, voxel_index(points, aabb, cfg.voxels), cfg.iou)
    return LabelFree(segments, consistent, votes, aabb, cfg.voxels)


def segment_lookup(source: LabelFree, geometry: tuple[Tensor, Tensor, Tensor], clicks: list[Click]) -> Tensor:
    """The baseline without Jacobians: labels ``[V, H, W]`` of target views with ``geometry`` (their surface, as
    in ``label_free_source``): each pixel looks its consistent id up in the voxel grid and takes the class of the
    click (in the training views) with that id; ``-1`` where no click's segment reaches."""
    _, points, valid = geometry
    ids = lookup(source.votes, voxel_index(points, source.aabb, source.voxels), valid)
    labels = click_labels(clicks)
    clicked = torch.stack([source.consistent[c.view, c.y, c.x] for c in clicks])
    table = torch.full((int(max(int(ids.max()), int(clicked.max()))) + 2,), -1, dtype=torch.long)
    table[clicked[clicked >= 0]] = labels[clicked >= 0]  # a segment clicked twice keeps its last click's class
    return table[ids]
