"""Pictures: training curves, confusion matrices and coloured point clouds (matplotlib figures, headless;
save them with :func:`priors3d.runs.save_figure`, atomic), PNG images written atomically, depth and
label colouring, and label-propagation sheets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["colorize", "confusion_figure", "depth_image", "label_pictures", "palette", "point_clouds", "save_png",
           "training_curves"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def training_curves(records: Sequence[dict[str, Any]], keys: Sequence[str], x_key: str = "step",
                    title: str = "") -> Figure:
    """One panel per group of ``keys`` found in ``records`` (a list of metric dicts), against ``x_key``.

    Keys sharing a suffix after the first ``/`` (``train/loss``, ``test/loss``) share a panel.
    """
    panels: dict[str, list[str]] = {}
    for key in keys:
        if any(key in r for r in records):
            panels.setdefault(key.split("/", 1)[-1], []).append(key)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 3.2), squeeze=False)
    for ax, (name, group) in zip(axes[0], panels.items()):
        for key in group:
            points = [(r[x_key], r[key]) for r in records if key in r and x_key in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set(xlabel=x_key, title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: Any, class_names: Sequence[str], normalize: bool = True, title: str = "") -> Figure:
    """Heat map of a ``[C, C]`` confusion matrix (rows truth, columns prediction), rows normalised."""
    m = _numpy(matrix).astype(float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(class_names):
        raise ValueError(f"expected a [C, C] matrix with C = {len(class_names)} names, got shape {m.shape}")
    if normalize:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if len(class_names) <= 20:
        for i, j in np.ndindex(m.shape):
            if m[i, j] > 0:
                ax.text(j, i, f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}", ha="center", va="center",
                        fontsize=6, color="white" if m[i, j] > 0.5 * m.max() else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def point_clouds(clouds: Sequence[Any], labels: Sequence[Any], titles: Sequence[str] | None = None,
                 columns: int = 4, cmap: str = "tab20", num_labels: int | None = None, size: float = 3.0) -> Figure:
    """3D scatter plots of ``clouds`` (each ``[N, 3]``) coloured by integer ``labels`` (each ``[N]``).

    Colours are fixed per label value across panels (``num_labels`` sets the range; ``-1`` is grey).
    """
    if len(clouds) != len(labels):
        raise ValueError(f"need one label array per cloud, got {len(clouds)} clouds and {len(labels)} label arrays")
    clouds, labels = [_numpy(c) for c in clouds], [_numpy(l) for l in labels]
    top = num_labels or max([int(l.max()) + 1 for l in labels if l.size] + [1])
    colours = plt.get_cmap(cmap)
    rows = max(1, -(-len(clouds) // columns))
    cols = min(columns, max(len(clouds), 1))
    fig = plt.figure(figsize=(size * cols, size * rows))
    for i, (cloud, label) in enumerate(zip(clouds, labels)):
        if cloud.ndim != 2 or cloud.shape[1] != 3 or label.shape != cloud.shape[:1]:
            raise ValueError(f"cloud {i}: expected points [N, 3] and labels [N], got {cloud.shape} and {label.shape}")
        rgba = colours(label % colours.N) if colours.N < 256 else colours(label / max(top - 1, 1))
        rgba[label < 0] = (0.7, 0.7, 0.7, 1.0)
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        ax.scatter(cloud[:, 0], cloud[:, 1], cloud[:, 2], c=rgba, s=2, depthshade=False)
        ax.set_box_aspect(np.ptp(cloud, axis=0) + 1e-6)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def depth_image(depth: Tensor) -> np.ndarray:
    """``[H, W]`` depth -> ``[H, W, 3]`` uint8 colour picture (turbo, 2nd-98th percentile range)."""
    d = depth.numpy()
    lo, hi = np.percentile(d, [2, 98])
    scaled = np.clip((d - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (matplotlib.colormaps["turbo"](scaled)[..., :3] * 255).astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write an ``[H, W]`` or ``[H, W, C]`` image as PNG, atomically: a float image in [0, 1] as 8 bits, an integer
    one (uint8, or uint16 such as depth in millimetres) as it is."""
    from PIL import Image

    from priors3d.runs import atomic_write

    if image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return atomic_write(path, lambda p: Image.fromarray(image).save(p, format="PNG"))


def label_pictures(path: Path, scene: Any, labels: Tensor, target_labels: Tensor, n_views: int = 3) -> Path:
    """PNG of ``labels`` and ``target_labels [V, H, W]`` of ``scene.test`` (a ``fields.views.Scene``): one row per
    view (``n_views`` evenly spaced), ``RGB | ground truth | propagated``, void and no-response black. Colours:
    the scene's class colours when they cover every label (semantic maps), else ``palette`` (instance maps)."""
    n = int(max(target_labels.max(), labels.max())) + 1
    colors = scene.class_colors if scene.class_colors is not None and len(scene.class_colors) >= n else palette(n)
    views = np.linspace(0, len(scene.test) - 1, min(n_views, len(scene.test))).round().astype(int).tolist()
    rgb = (scene.test.images[views].numpy() * 255 + 0.5).astype(np.uint8)
    rows = np.concatenate([rgb, colorize(target_labels[views], colors), colorize(labels[views], colors)], axis=2)
    return save_png(path, np.kron(np.concatenate(rows, axis=0), np.ones((2, 2, 1), dtype=np.uint8)))


def palette(n: int) -> Tensor:
    """``[n, 3]`` uint8 distinct colours (golden-angle hues)."""
    import colorsys

    rgb = [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.95) for i in range(n)]
    return (torch.tensor(rgb, dtype=torch.float32).reshape(n, 3) * 255).round().to(torch.uint8)


def colorize(labels: Tensor, colors: Tensor) -> np.ndarray:
    """``[H, W]`` int64 labels (-1 = void, black) -> ``[H, W, 3]`` uint8 using ``colors`` ``[C, 3]`` uint8."""
    table = torch.cat([colors.to(torch.uint8), torch.zeros(1, 3, dtype=torch.uint8)])
    return table[torch.where(labels < 0, len(colors), labels)].numpy()
