"""Score a segmentation method on generated scenes, per layout: instance AP and seconds per scene."""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor

from .em import EMConfig, segment
from .evaluation import instance_ap
from .prior import ShapePrior
from .scenes import TabletopScene, SceneConfig, make_scene

Method = Callable[[TabletopScene], tuple[Tensor, Tensor]]
"""A scene → ``(masks [K, N] bool, confidence [K])``."""


def em_method(prior: ShapePrior, config: EMConfig, seed: int) -> Method:
    """The prior's E-M as a :data:`Method`. Each scene's E-M draws from a generator seeded with ``seed``, so its
    result does not depend on the scenes evaluated before it; the last :class:`~priors3d.efem.em.Segmentation`
    stays in ``method.last`` (pictures)."""
    def method(scene: TabletopScene) -> tuple[Tensor, Tensor]:
        method.last = segment(prior, scene.points, config, torch.Generator().manual_seed(seed))
        return method.last.masks, method.last.confidence
    return method


def scene_seed(seed: int, layout: str, index: int) -> int:
    """Seed of scene ``index`` of ``layout``: the same scenes for every method evaluated with ``seed``."""
    return seed * 1000 + {"z": 0, "so3": 1, "piles": 2}[layout] * 100 + index


def evaluate_layouts(methods: dict[str, Method], category: str, layouts: tuple[str, ...], scenes: int, seed: int,
                     config: SceneConfig | None = None, on_scene: Callable[[str, str, int, TabletopScene, Tensor], None]
                     | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {layout: {AP, AP50, AP25, seconds_per_scene, scenes, instances}}}`` over ``scenes`` scenes per
    layout (each generated once and shared by the methods). ``on_scene(method, layout, index, scene, masks)``
    sees every prediction (pictures)."""
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in methods}
    for layout in layouts:
        generated = [make_scene(category, layout, scene_seed(seed, layout, i), config) for i in range(scenes)]
        truths = [scene.truth() for scene in generated]
        for name, method in methods.items():
            predictions, seconds = [], 0.0
            for i, scene in enumerate(generated):
                start = time.perf_counter()
                masks, confidence = method(scene)
                seconds += time.perf_counter() - start
                predictions.append((masks, confidence))
                if on_scene is not None:
                    on_scene(name, layout, i, scene, masks)
            results[name][layout] = {**instance_ap(predictions, truths), "seconds_per_scene": seconds / scenes,
                                     "scenes": scenes, "instances": int(sum(int(t.max()) + 1 for t in truths))}
    return results

