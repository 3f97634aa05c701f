"""Label-free pair sources: computed from the training images and depth only (the views' own depth maps, e.g. an
RGB-D sensor's, or the fitted field's rendered depth).

- ``segments``: per-view graph-based segmentation (Felzenszwalb & Huttenlocher 2004) of colour and depth,
  a stand-in for SAM masks: ids mean nothing across views.
- ``consistent``: the views' surface fused into a voxel grid (with that depth) and cut by the same graph-based
  segmentation on the voxels' normals and colours, as ScanNet segments its meshes: one id names the same
  surface region in every view.
- ``descriptors``: what kind of thing each of those 3D segments is (heights, facing, extent, size, colour), a
  stand-in for the semantic similarity of DINO features: pixels pair by the cosine of their segments'.
- ``segment_lookup`` and ``descriptor_lookup``: the baselines without Jacobians: a pixel gets the class of the
  click whose 3D segment it shares, or whose segment's descriptor is nearest (test views look their segment up
  in the voxel grid).

Nothing here reads label maps. Ids are ``[V, H, W]`` int64, ``-1`` where the depth is unknown (a rendered
opacity below 0.5). Everything is deterministic (no random draws).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
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
    surface_scale: float = 5.0
    """Felzenszwalb's ``k`` on the voxel graph (``consistent``): larger gives larger 3D segments."""
    colour_weight: float = 1.0
    """Weight of two touching voxels' RGB distance next to their normals' ``1 - cos`` (``consistent``)."""
    surface_min_size: int = 20
    """3D segments smaller than this (voxels) join a neighbour (``consistent``)."""
    descriptor_weights: tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 0.5)
    """Weights of the standardised descriptor columns (``descriptors``): facing, heights, horizontal extent, size,
    colour (colour counts half: objects of one kind come in several colours)."""
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


def voxel_grid(aabb: tuple[float, ...], voxels: int) -> tuple[Tensor, float, Tensor]:
    """The grid of ``voxels`` cells along the longest side of ``aabb``: its corner ``[3]``, cell size and cells
    per axis ``[3]`` (int64)."""
    box = torch.tensor(aabb, dtype=torch.float64).reshape(2, 3)
    cell = float((box[1] - box[0]).max()) / voxels
    return box[0], cell, ((box[1] - box[0]) / cell).ceil().long().clamp_min(1)


def voxel_index(points: Tensor, aabb: tuple[float, ...], voxels: int) -> Tensor:
    """``[...]`` int64 flat voxel of ``points [..., 3]`` in ``voxel_grid(aabb, voxels)``."""
    corner, cell, dims = voxel_grid(aabb, voxels)
    ijk = torch.minimum(((points.double() - corner) / cell).floor().long().clamp_min(0), dims - 1)
    return (ijk[..., 0] * dims[1] + ijk[..., 1]) * dims[2] + ijk[..., 2]


def voxel_neighbours(occupied: Tensor, dims: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(a [E], b [E])`` between the sorted flat voxels ``occupied [N]`` that touch (26-neighbourhood),
    as positions in ``occupied``; each edge once."""
    if len(occupied) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    i, j, k = occupied // (dims[1] * dims[2]), (occupied // dims[2]) % dims[1], occupied % dims[2]
    flat = occupied.numpy()
    a, b = [], []
    for di, dj, dk in ((di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1)
                       if (di, dj, dk) > (0, 0, 0)):  # half of the 26 offsets: each edge once
        ni, nj, nk = i + di, j + dj, k + dk
        inside = ((ni >= 0) & (ni < dims[0]) & (nj >= 0) & (nj < dims[1]) & (nk >= 0) & (nk < dims[2])).numpy()
        target = ((ni * dims[1] + nj) * dims[2] + nk).numpy()
        at = np.searchsorted(flat, target).clip(max=len(flat) - 1)
        hit = inside & (flat[at] == target)
        a.append(np.nonzero(hit)[0])
        b.append(at[hit])
    return np.concatenate(a), np.concatenate(b)


def graph_segments(n: int, a: np.ndarray, b: np.ndarray, weight: np.ndarray, scale: float,
                   min_size: int) -> np.ndarray:
    """Felzenszwalb & Huttenlocher's segmentation of a graph of ``n`` nodes with edges ``(a, b)`` of ``weight``
    (all ``[E]``): ids ``[n]`` ``0..S-1``.

    Edges are visited lightest first; two components merge when the edge is no heavier than both components'
    largest internal (spanning-tree) edge plus ``scale / size``; components under ``min_size`` nodes then join
    a neighbour along the lightest edges. (scikit-image has this for image grids only.)
    """
    order = np.argsort(weight, kind="stable")
    a, b, weight = a[order].tolist(), b[order].tolist(), weight[order].tolist()
    parent, size, internal = list(range(n)), [1] * n, [0.0] * n
    for i, j, w in zip(a, b, weight):
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj and w <= min(internal[ri] + scale / size[ri], internal[rj] + scale / size[rj]):
            parent[rj], size[ri], internal[ri] = ri, size[ri] + size[rj], w
    for i, j in zip(a, b):
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj and min(size[ri], size[rj]) < min_size:
            parent[rj], size[ri] = ri, size[ri] + size[rj]
    return np.unique([_find(parent, i) for i in range(n)], return_inverse=True)[1]


def surface_normals(points: Tensor, origins: Tensor) -> Tensor:
    """Unit normals ``[V, H, W, 3]`` of the surface ``points [V, H, W, 3]`` seen from ``origins [V, 3]``, facing
    the camera: the cross product of the steps to the image neighbours, taking along each image axis the
    shorter of the two one-sided steps, so that a pixel on an occluding edge uses the surface it lies on."""
    p = points.double()

    def step(axis: int) -> Tensor:
        ahead, behind = p.roll(-1, axis) - p, p - p.roll(1, axis)
        return torch.where((ahead.norm(dim=-1) < behind.norm(dim=-1))[..., None], ahead, behind)

    normals = F.normalize(torch.cross(step(2), step(1), dim=-1), dim=-1)
    away = ((p - origins[:, None, None].double()) * normals).sum(-1) > 0
    return torch.where(away[..., None], -normals, normals)


@dataclass
class FusedSurface:
    """Views' surface fused into a voxel grid of ``dims [3]`` cells: the sorted flat voxels that pixels land in,
    ``occupied [N]``, and each one's mean ``position``, unit ``normal`` and ``colour`` (``[N, 3]`` float64);
    ``voxel [V, H, W]`` is each pixel's flat voxel and ``inverse`` each valid pixel's row in ``occupied``."""

    dims: Tensor
    voxel: Tensor
    valid: Tensor
    occupied: Tensor
    inverse: Tensor
    position: np.ndarray
    normal: np.ndarray
    colour: np.ndarray


def fuse_surface(views: Views, geometry: tuple[Tensor, Tensor, Tensor], aabb: tuple[float, ...],
                 voxels: int) -> FusedSurface:
    """Fuse the pixels of ``views`` at ``geometry`` (ray depth, points, valid) into ``voxel_grid(aabb, voxels)``."""
    _, points, valid = geometry
    voxel = voxel_index(points, aabb, voxels)
    occupied, inverse = torch.unique(voxel[valid], return_inverse=True)
    counts = np.bincount(inverse.numpy(), minlength=len(occupied))[:, None]

    def mean(values: Tensor) -> np.ndarray:  # [valid pixels, 3] -> [N, 3]
        total = torch.zeros(len(occupied), 3, dtype=torch.float64).index_add_(0, inverse, values.double())
        return total.numpy() / counts

    normal = mean(surface_normals(points, views.c2w[:, :3, 3])[valid])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(min=1e-12)
    return FusedSurface(voxel_grid(aabb, voxels)[2], voxel, valid, occupied, inverse, mean(points[valid]), normal,
                        mean(views.images[valid]))


def surface_segments(surface: FusedSurface, cfg: SegmentConfig) -> np.ndarray:
    """``consistent``: the segment ``[N]`` of each voxel of ``surface``, as ScanNet
    segments its meshes, so that one id names the same surface region in every view.

    Touching voxels are joined by edges weighing ``1 - cos`` of their normals (squared where the surface bends
    outwards, so that convex objects hold together while concave creases, where one thing rests on or against
    another, part them) plus ``cfg.colour_weight`` times their RGB distance; ``graph_segments`` cuts that graph.
    """
    a, b = voxel_neighbours(surface.occupied, surface.dims)
    position, normal = surface.position, surface.normal
    bend = 1.0 - (normal[a] * normal[b]).sum(1)
    convex = ((position[b] - position[a]) * (normal[b] - normal[a])).sum(1) > 0
    weight = (np.where(convex, bend ** 2, bend)
              + cfg.colour_weight * np.linalg.norm(surface.colour[a] - surface.colour[b], axis=1))
    return graph_segments(len(surface.occupied), a, b, weight, cfg.surface_scale, cfg.surface_min_size)


DESCRIPTOR_NAMES = ("facing up", "facing down", "facing sideways", "bottom height", "top height",
                    "horizontal extent", "log size", "red", "green", "blue")
DESCRIPTOR_GROUPS = (3, 2, 1, 1, 3)
"""Columns of ``DESCRIPTOR_NAMES`` per weight of ``SegmentConfig.descriptor_weights``."""


def segment_descriptors(surface: FusedSurface, segment: np.ndarray, aabb: tuple[float, ...],
                        weights: tuple[float, float, float, float, float]) -> Tensor:
    """``descriptors``: what kind of thing each segment ``0..S-1`` of ``segment [N]`` is, ``[S, 10]`` float32, a
    stand-in for the semantic similarity of DINO features (like things get like rows).

    Per segment, from its voxels (``DESCRIPTOR_NAMES``), with +z as up (as in the room and oriented captures):
    the fractions facing up, down (``|n_z| > 0.7``) and sideways; its bottom and top heights above the box floor
    (5th and 95th percentiles); its horizontal extent (standard deviation along its main horizontal axis); the log
    of its voxel count; its mean RGB. Each column is standardised over the segments, then scaled by its group's
    weight in ``weights`` (facing, heights, extent, size, colour).
    """
    floor = aabb[2]
    rows = []
    for s in range(int(segment.max(initial=-1)) + 1):
        mine = segment == s
        position, up = surface.position[mine], surface.normal[mine, 2]
        spread = np.linalg.eigvalsh(np.cov(position[:, :2].T) if mine.sum() > 1 else np.zeros((2, 2)))[-1]
        rows.append([(up > 0.7).mean(), (up < -0.7).mean(), (np.abs(up) <= 0.7).mean(),
                     *(np.percentile(position[:, 2], [5, 95]) - floor), np.sqrt(max(spread, 0.0)),
                     np.log(mine.sum()), *surface.colour[mine].mean(0)])
    table = np.array(rows, dtype=np.float64).reshape(-1, len(DESCRIPTOR_NAMES))
    if len(table):
        table = (table - table.mean(0)) / table.std(0).clip(min=1e-6)
    return torch.from_numpy(table * np.repeat(weights, DESCRIPTOR_GROUPS)).float()


def lookup(votes: Tensor, voxel: Tensor, valid: Tensor) -> Tensor:
    """Ids ``[...]`` of pixels whose voxels are ``voxel [...]`` (``-1`` where not ``valid`` or never voted)."""
    if len(votes) == 0:
        return torch.full_like(voxel, -1)
    position = torch.searchsorted(votes[:, 0].contiguous(), voxel.flatten().contiguous()).clamp(max=len(votes) - 1)
    found = (votes[position, 0] == voxel.flatten()) & valid.flatten()
    return torch.where(found, votes[position, 1], -1).reshape(voxel.shape)


@dataclass
class LabelFree:
    """A label-free source computed for the training views: ``segments`` and ``consistent`` ids ``[V, H, W]``,
    the voxel votes ``[N, 2]`` (voxel, consistent id) in a grid of ``voxels`` cells over ``aabb``, and the
    consistent segments' ``descriptors [S, D]``."""

    segments: Tensor
    consistent: Tensor
    votes: Tensor
    descriptors: Tensor
    aabb: tuple[float, ...]
    voxels: int

    def features(self, ids: Tensor | None = None) -> Tensor:
        """``descriptors``: per-pixel features ``[..., D]`` of consistent ids ``[...]`` (the training views' when
        None), the descriptor of the pixel's segment; 0 (pairs with nothing) where the id is -1 or names no segment
        (a part split off by ``corrupt_masks``)."""
        ids = self.consistent if ids is None else ids
        known = (ids >= 0) & (ids < len(self.descriptors))
        return torch.where(known[..., None], self.descriptors[torch.where(known, ids, 0)], 0.0)

    def ids_of(self, geometry: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Consistent ids ``[V, H, W]`` of other views at ``geometry``, looked up in the voxel grid (-1: none)."""
        _, points, valid = geometry
        return lookup(self.votes, voxel_index(points, self.aabb, self.voxels), valid)


def label_free_source(views: Views, geometry: tuple[Tensor, Tensor, Tensor], aabb: tuple[float, ...],
                      cfg: SegmentConfig) -> LabelFree:
    """The label-free sources of ``views`` from their images and ``geometry`` (``surface`` or
    ``rendered_geometry``: ray depth, points, valid); no label maps."""
    depth, _, valid = geometry
    fused = fuse_surface(views, geometry, aabb, cfg.voxels)
    segment = surface_segments(fused, cfg)
    consistent = torch.full_like(fused.voxel, -1)
    consistent[fused.valid] = torch.from_numpy(segment)[fused.inverse]
    return LabelFree(view_segments(views.images, depth, valid, cfg), consistent,
                     torch.stack([fused.occupied, torch.from_numpy(segment)], 1),
                     segment_descriptors(fused, segment, aabb, cfg.descriptor_weights), aabb, cfg.voxels)


def segment_lookup(source: LabelFree, geometry: tuple[Tensor, Tensor, Tensor], clicks: list[Click]) -> Tensor:
    """The baseline without Jacobians for ``consistent``: labels ``[V, H, W]`` of target views with ``geometry``
    (their surface, as in ``label_free_source``): each pixel takes the class of the click (in the training views)
    whose consistent id it shares; ``-1`` where no click's segment reaches."""
    ids = source.ids_of(geometry)
    labels = click_labels(clicks)
    clicked = torch.stack([source.consistent[c.view, c.y, c.x] for c in clicks])
    table = torch.full((int(max(int(ids.max()), int(clicked.max()))) + 2,), -1, dtype=torch.long)
    table[clicked[clicked >= 0]] = labels[clicked >= 0]  # a segment clicked twice keeps its last click's class
    return table[ids]


def descriptor_lookup(source: LabelFree, geometry: tuple[Tensor, Tensor, Tensor], clicks: list[Click]) -> Tensor:
    """The baseline without Jacobians for ``descriptors``: each pixel of the target views takes the class of the
    click whose segment's descriptor is nearest by cosine (``-1`` where the pixel has no segment)."""
    ids = source.ids_of(geometry)
    clicked = torch.stack([source.consistent[c.view, c.y, c.x] for c in clicks])
    cosine = (F.normalize(source.features(ids), dim=-1)
              @ F.normalize(source.features(clicked), dim=-1).T)
    return torch.where(ids >= 0, click_labels(clicks)[cosine.argmax(-1)], -1)
