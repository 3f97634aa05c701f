"""Pictures of generated scenes: label maps in colour and the contact sheet of ``priors3d field generate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from priors3d.fields.views import Scene
from priors3d.runs import save_figure
from priors3d.viz import colorize, palette


def contact_sheet(scene: Scene, path: Path, n_views: int = 4) -> Path:
    """PNG grid, one row per test view (evenly spaced): RGB | semantic class | instance | depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    views = scene.test
    rows = np.unique(np.linspace(0, len(views) - 1, min(n_views, len(views))).round().astype(int)).tolist()
    n_instances = int(max(scene.train.instance.max(), views.instance.max())) + 1
    instance_colors = palette(n_instances)
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.1 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        panels = [views.images[i].numpy(), colorize(views.semantic[i], scene.class_colors),
                  colorize(views.instance[i], instance_colors), views.depth[i].numpy()]
        for c, (ax, panel) in enumerate(zip(axes[r], panels)):
            ax.imshow(panel, cmap="viridis" if c == 3 else None, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(views.names[i], fontsize=7)
    for ax, title in zip(axes[0], ("RGB", "semantic class", "instance", "depth (m)")):
        ax.set_title(title, fontsize=9)
    present = torch.cat([scene.train.semantic.unique(), views.semantic.unique()]).unique().tolist()
    handles = [Patch(color=(scene.class_colors[c] / 255).tolist(), label=scene.class_names[c])
               for c in present if c >= 0]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.5 / fig.get_figheight(), wspace=0.03, hspace=0.08)
    return save_figure(path, fig)
