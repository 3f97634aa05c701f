"""Pictures of a segmented scene: predicted instances next to the truth, and the reconstructed meshes in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from priors3d.runs import save_figure
from priors3d.viz import palette

from .prior import Code, ShapePrior
from .scenes import TabletopScene
from .train import prior_mesh

GREY = np.array([0.75, 0.75, 0.75])


def _axes(fig, position: int, points: np.ndarray, title: str):
    """3D axes framing the objects (the points above the floor, z > 0.03) with a margin, and the mask ``[N]`` of
    the points inside that frame."""
    ax = fig.add_subplot(1, 2, position, projection="3d")
    objects = points[points[:, 2] > 0.03] if (points[:, 2] > 0.03).sum() > 1 else points
    low, high = objects.min(0), objects.max(0)
    middle, half = (low + high) / 2, 0.55 * (high - low).max()
    ax.set(xlim=(middle[0] - half, middle[0] + half), ylim=(middle[1] - half, middle[1] + half),
           zlim=(0, 2 * half), title=title)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=35, azim=-60)
    ax.set_axis_off()
    inside = (np.abs(points[:, :2] - middle[:2]) <= half).all(1) & (points[:, 2] <= 2 * half)
    return ax, inside


def _colours(labels: Tensor) -> np.ndarray:
    """``[N]`` instance labels (−1 = none, grey) → ``[N, 3]`` colours in [0, 1]."""
    table = palette(int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 1).numpy() / 255
    return np.where(labels.numpy()[:, None] >= 0, table[labels.clamp_min(0).numpy()], GREY)


def masks_to_labels(masks: Tensor) -> Tensor:
    """``[K, N]`` masks → ``[N]`` labels (the first mask holding each point; −1 for none)."""
    if not len(masks):
        return torch.full((masks.shape[1],), -1, dtype=torch.long)
    return torch.where(masks.any(0), masks.float().argmax(0), torch.tensor(-1))


def segmentation_picture(path: Path, scene: TabletopScene, masks: Tensor, title: str = "prediction") -> Path:
    """PNG: the scene coloured by ground-truth instance (left) and by predicted instance ``masks [K, N]`` (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = scene.points.numpy()
    fig = plt.figure(figsize=(11, 5.5))
    for position, labels, name in ((1, scene.truth(), "truth"), (2, masks_to_labels(masks), title)):
        ax, inside = _axes(fig, position, points, name)
        ax.scatter(*points[inside].T, s=1.0, c=_colours(labels)[inside], depthshade=False)
    return save_figure(path, fig)


def mesh_picture(path: Path, scene: TabletopScene, prior: ShapePrior, code: Code, resolution: int = 32) -> Path:
    """PNG: the scene points (grey) and the meshes of the accepted hypotheses ``code`` placed in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    points = scene.points.numpy()
    fig = plt.figure(figsize=(11, 5.5))
    ax, inside = _axes(fig, 1, points, "scene")
    ax.scatter(*points[inside].T, s=1.0, c=_colours(scene.truth())[inside], depthshade=False)
    ax, inside = _axes(fig, 2, points, "reconstructed instances")
    ax.scatter(*points[inside].T, s=0.5, c=[GREY], alpha=0.5, depthshade=False)
    colours = palette(max(len(code.t), 1)).numpy() / 255
    for i in range(len(code.t)):
        vertices, faces = prior_mesh(prior, type(code)(*(c[i:i + 1] for c in code)), resolution)
        if len(faces):
            ax.add_collection3d(Poly3DCollection(vertices[faces], facecolors=[(*colours[i], 0.6)], linewidths=0))
    return save_figure(path, fig)
