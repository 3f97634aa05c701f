"""Meshes from occupancy networks: marching cubes, .ply/.obj files, Chamfer distance, PNG renders.

A mesh here is a pair ``(vertices [V, 3] float, faces [F, 3] int)``. Marching cubes (scikit-image)
runs on the logits sampled on a regular grid over the box ``[-bound, bound]³``, at the level of the
decision threshold, with one padding cell of "outside" all around so that every mesh is closed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from priors3d.runs import atomic_write, save_figure

MESH_FORMATS = (".ply", ".obj")


def grid_points(resolution: int, bound: float = 1.05) -> Tensor:
    """``[R³, 3]`` float32 centres of a ``R × R × R`` grid spanning ``[-bound, bound]³`` (x slowest)."""
    if resolution < 2:
        raise ValueError(f"grid resolution must be >= 2, got {resolution}")
    return torch.cartesian_prod(*[torch.linspace(-bound, bound, resolution)] * 3)


def marching_cubes(values: np.ndarray, level: float, bound: float = 1.05) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface ``values = level`` of a grid ``[R, R, R]`` laid out as :func:`grid_points`.

    Larger values are inside. Returns ``vertices [V, 3]`` (in the box's coordinates) and ``faces
    [F, 3]`` with normals pointing outwards; both are empty when the level is never crossed.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or len(set(values.shape)) != 1:
        raise ValueError(f"marching_cubes expects a cubic grid [R, R, R], got shape {values.shape}")
    from skimage.measure import marching_cubes as skimage_marching_cubes

    padded = np.pad(values, 1, constant_values=min(values.min(), level) - 1.0)
    if not (padded.max() > level > padded.min()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    step = 2 * bound / (values.shape[0] - 1)
    vertices, faces, _, _ = skimage_marching_cubes(padded, level, spacing=(step,) * 3)
    # skimage orients faces towards increasing values (inside here): flip them to face outwards.
    return vertices - bound - step, faces[:, ::-1].astype(np.int64)


@torch.no_grad()
def reconstruct(decode: Callable[[Tensor], Tensor], resolution: int = 40, bound: float = 1.05,
                threshold: float = 0.2, chunk: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of ``{p : sigmoid(decode(p)) >= threshold}`` on a ``resolution³`` grid.

    ``decode`` maps query points ``[T, 3]`` to logits ``[T]`` (one shape's code bound in); it is called
    in chunks of ``chunk`` points.
    """
    points = grid_points(resolution, bound)
    logits = torch.cat([decode(points[i:i + chunk]).float().cpu() for i in range(0, len(points), chunk)])
    level = math.log(threshold / (1 - threshold))
    return marching_cubes(logits.view(resolution, resolution, resolution).numpy(), level, bound)


def save_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a mesh as ``.ply`` or ``.obj`` (by the suffix of ``path``), atomically."""
    import trimesh

    path = Path(path)
    if path.suffix not in MESH_FORMATS:
        raise ValueError(f"mesh file must end with one of {MESH_FORMATS}, got {path.name!r}")
    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
    return atomic_write(path, lambda tmp: mesh.export(str(tmp), file_type=path.suffix[1:]))


def load_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices [V, 3], faces [F, 3])`` of a ``.ply``/``.obj`` file."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing mesh file {path} (expected .ply or .obj)")
    mesh = trimesh.load(path, force="mesh", process=False)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` points uniform on the surface of a mesh (triangles chosen by area)."""
    if len(faces) == 0:
        raise ValueError("cannot sample an empty mesh (no faces)")
    triangles = np.asarray(vertices)[np.asarray(faces)]                      # [F, 3, 3]
    areas = np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    chosen = rng.choice(len(faces), n, p=areas / areas.sum())
    u, v = rng.random((2, n, 1))
    flip = u + v > 1                                                         # fold the square onto the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = triangles[chosen]
    return t[:, 0] + u * (t[:, 1] - t[:, 0]) + v * (t[:, 2] - t[:, 0])


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer-L1 of point sets ``a [N, 3]``, ``b [M, 3]``: the mean of the two mean nearest-neighbour
    (Euclidean) distances, as OccNet reports it."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 3 or b.shape[1] != 3 or not len(a) or not len(b):
        raise ValueError(f"chamfer_l1 expects two non-empty point sets [N, 3], got {a.shape} and {b.shape}")
    to_b = cKDTree(b).query(a)[0].mean()
    to_a = cKDTree(a).query(b)[0].mean()
    return float((to_b + to_a) / 2)


def render_meshes(path: str | os.PathLike, panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
                  columns: int = 5) -> Path:
    """PNG grid of meshes, one panel per ``(title, vertices, faces, points or None)``.

    Faces are shaded by the angle of their normal to a fixed light and half transparent, so that
    ``points`` (e.g. the input cloud, small dots) show through. Views look from the front-left, slightly above, with z up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    rows = math.ceil(len(panels) / columns)
    fig = plt.figure(figsize=(2.6 * min(columns, len(panels)), 2.6 * rows))
    light = np.array([0.4, -0.5, 0.75]) / np.linalg.norm([0.4, -0.5, 0.75])
    for i, (title, vertices, faces, points) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        if len(faces):
            triangles = np.asarray(vertices)[np.asarray(faces)]
            normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
            normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
            shade = 0.35 + 0.65 * np.clip(normals @ light, 0, 1)
            colors = np.stack([0.55 * shade, 0.7 * shade, 0.9 * shade, np.full_like(shade, 0.5)], axis=1)
            ax.add_collection3d(Poly3DCollection(triangles, facecolors=colors, linewidths=0))
        if points is not None:
            ax.scatter(*np.asarray(points).T, s=0.8, c="k", alpha=0.7, depthshade=False)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), title=title)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
    return save_figure(path, fig)
