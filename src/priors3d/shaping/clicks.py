"""Clicks: labelled (or unlabelled) pixels of training views, typed or sampled from label maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from priors3d.fields.views import Views


@dataclass(frozen=True)
class Click:
    """Column ``x`` and row ``y`` of view ``view``; class (or object id) ``label``, None when unlabelled."""

    view: int
    x: int
    y: int
    label: int | None = None

    def __post_init__(self) -> None:
        if self.label is not None and self.label < 0:
            raise ValueError(f"a click's class must be 0 or more (-1 marks void pixels), got {self.label} in "
                             f"click {self.view}/{self.x}/{self.y}/{self.label}")

    @classmethod
    def parse(cls, text: str, labelled: bool = True) -> Click:
        """``"view/x/y/class"`` (``labelled``) or ``"view/x/y"`` -> Click."""
        form, count = ("view/x/y/class", "four") if labelled else ("view/x/y", "three")
        parts = text.split("/")
        if len(parts) != len(form.split("/")) or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"a click must be '{form}' ({count} integers separated by '/'), got {text!r}")
        return cls(*(int(p) for p in parts))

    def check(self, views: Views) -> None:
        """Raise a ValueError unless the click is a pixel of ``views``."""
        height, width = views.hw
        if not (0 <= self.view < len(views) and 0 <= self.x < width and 0 <= self.y < height):
            raise ValueError(f"click view/x/y = {self.view}/{self.x}/{self.y} is outside the {len(views)} views "
                             f"of {width}x{height} pixels (view 0..{len(views) - 1}, x 0..{width - 1}, "
                             f"y 0..{height - 1})")


def object_clicks(labels: Tensor, views: list[int] | None = None) -> list[Click]:
    """One click per id of ``labels [V, H, W]`` (-1 void): the pixel deepest inside its region (farthest
    from its outline and the image border), in the view where that depth is largest among ``views``
    (all when None; the first on ties). Label = the id; clicks sorted by id."""
    if labels.ndim != 3:
        raise ValueError(f"labels must be [V, H, W], got {list(labels.shape)}")
    best: dict[int, tuple[float, Click]] = {}
    for v in range(labels.shape[0]) if views is None else views:
        image = labels[v].numpy()
        for k in sorted(set(np.unique(image).tolist()) - {-1}):
            depth = ndimage.distance_transform_edt(np.pad(image == k, 1))[1:-1, 1:-1]
            y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
            if k not in best or depth[y, x] > best[k][0]:
                best[k] = (float(depth[y, x]), Click(v, int(x), int(y), int(k)))
    return [best[k][1] for k in sorted(best)]


def auto_clicks(labels: Tensor, view: int | None = None) -> list[Click]:
    """One click per class of ``labels [V, H, W]`` in one view, at the pixel deepest inside each class region.

    ``view`` None picks the view showing the most classes (the first on ties).
    """
    if view is None:
        view = int(np.argmax([len(set(labels[v].unique().tolist()) - {-1}) for v in range(labels.shape[0])]))
    return object_clicks(labels, [view])


def dense_clicks(labels: Tensor, view: int) -> list[Click]:
    """Every non-void pixel of one fully labelled view ``labels [V, H, W]`` as a click."""
    ys, xs = torch.nonzero(labels[view] >= 0, as_tuple=True)
    return [Click(view, int(x), int(y), int(labels[view, y, x])) for y, x in zip(ys.tolist(), xs.tolist())]


def click_labels(clicks: list[Click]) -> Tensor:
    """``[M]`` int64 classes of ``clicks``; every click must have one."""
    if any(c.label is None for c in clicks):
        raise ValueError(f"every click needs a class ('view/x/y/class'), got {[c for c in clicks if c.label is None]}")
    return torch.tensor([c.label for c in clicks], dtype=torch.long)
