"""Posed views with labels: the one data structure every neural-field module consumes.

Conventions (see shared DESIGN notes): cameras are camera-to-world 4x4 matrices in OpenGL axes
(x right, y up, looking down -z), intrinsics are pixels, rays go through pixel centres, labels are
integer maps with -1 = void. Loaders convert to these conventions; nothing downstream converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor


@dataclass
class Views:
    """A set of posed images of one scene, all of the same size ``H x W``.

    Attributes:
        images: ``[V, H, W, 3]`` float32 RGB in [0, 1].
        c2w: ``[V, 4, 4]`` float32 camera-to-world, OpenGL axes.
        intrinsics: ``[V, 4]`` float32 ``(fx, fy, cx, cy)`` in pixels; pixel ``(u, v)`` has its centre at
            ``(u + 0.5, v + 0.5)``.
        names: one name per view (the frame's file stem).
        depth: ``[V, H, W]`` float32 z-depth along the camera's viewing axis (metres); 0 = unknown.
        semantic: ``[V, H, W]`` int64 class ids ``0..C-1``; -1 = void.
        instance: ``[V, H, W]`` int64 instance ids ``0..I-1``; -1 = void.
        features: ``[V, H, W, D]`` float32 per-pixel descriptors (e.g. DINO) resized to the image.
        alpha: ``[V, H, W]`` float32 coverage of RGBA frames (``images`` are composited over the scene's
            background with it); None for opaque frames.
    """

    images: Tensor
    c2w: Tensor
    intrinsics: Tensor
    names: list[str]
    depth: Tensor | None = None
    semantic: Tensor | None = None
    instance: Tensor | None = None
    features: Tensor | None = None
    alpha: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be [V, H, W, 3], got {tuple(self.images.shape)}")
        v, h, w, _ = self.images.shape
        expect = {"c2w": (v, 4, 4), "intrinsics": (v, 4), "depth": (v, h, w),
                  "semantic": (v, h, w), "instance": (v, h, w), "alpha": (v, h, w)}
        for name, shape in expect.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} must be {list(shape)} to match images, got {list(value.shape)}")
        if self.features is not None and tuple(self.features.shape[:3]) != (v, h, w):
            raise ValueError(f"features must be [V, H, W, D] = [{v}, {h}, {w}, D], got {list(self.features.shape)}")
        if len(self.names) != v:
            raise ValueError(f"names must have one entry per view ({v}), got {len(self.names)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def hw(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]

    def subset(self, index: list[int] | Tensor) -> "Views":
        """The views at ``index`` (a list of view indices), every field sliced alike."""
        index = torch.as_tensor(index, dtype=torch.long)
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return replace(self, names=[self.names[i] for i in index.tolist()],
                       **{name: value[index] for name, value in tensors.items()})


@dataclass
class Scene:
    """A scene: train and test views plus what is known about its labels and extent.

    Attributes:
        train, test: the two splits.
        class_names: names of the semantic classes ``0..C-1``.
        class_colors: ``[C, 3]`` uint8 colours for pictures.
        aabb: ``[2, 3]`` world-space box (min, max) that contains everything to reconstruct.
        near, far: ray bounds in metres.
        background: the colour the loader composited transparent pixels over (a field must render it behind
            itself); None when the frames are opaque.
        transform: ``[4, 4]`` float64 similarity from the files' coordinates to these (a capture's poses are
            re-centred and scaled on loading); its inverse takes fitted geometry back. None: the same.
        unbounded: the scene goes on outside ``aabb`` (a photo capture with a background): fields contract the
            outside into their grid and rays run to ``far``.
    """

    train: Views
    test: Views
    class_names: list[str] = field(default_factory=list)
    class_colors: Tensor | None = None
    aabb: Tensor | None = None
    near: float = 0.05
    far: float = 10.0
    background: tuple[float, float, float] | None = None
    transform: Tensor | None = None
    unbounded: bool = False
