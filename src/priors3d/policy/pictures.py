"""A strip of 3D views of one episode: the observed cloud coloured by part, the end-effector and its path."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COLOURS = ("tab:blue", "tab:green", "tab:purple")


def episode_strip(frames: list[dict], labels: tuple[str, ...], title: str = "") -> Figure:
    """One panel per frame (``{points [N, 3], labels [N], ee [3], gripper, step}`` from a rollout), same axes."""
    if not frames:
        raise ValueError("episode_strip needs at least one frame (rollout(..., keep=5))")
    every = np.concatenate([f["points"] for f in frames] + [np.stack([f["ee"] for f in frames])])
    low, high = every.min(0), every.max(0)
    centre, half = (low + high) / 2, (high - low).max() / 2 + 1e-3
    fig = plt.figure(figsize=(3.0 * len(frames), 3.2))
    path = np.stack([f["ee"] for f in frames])
    for i, frame in enumerate(frames):
        ax = fig.add_subplot(1, len(frames), i + 1, projection="3d")
        for k, name in enumerate(labels):
            p = frame["points"][frame["labels"] == k]
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=3, c=COLOURS[k % len(COLOURS)], label=name, depthshade=False)
        ax.plot(path[:i + 1, 0], path[:i + 1, 1], path[:i + 1, 2], c="tab:red", lw=1)
        ee = frame["ee"]
        ax.scatter([ee[0]], [ee[1]], [ee[2]], s=40, c="tab:red", marker="v" if float(frame["gripper"]) else "o",
                   label="gripper (v: closed)")
        for set_lim, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            set_lim(c - half, c + half)
        ax.view_init(elev=35, azim=-60)
        ax.set_title(f"step {frame['step']}", fontsize=9)
        ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
