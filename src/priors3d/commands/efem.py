"""``priors3d efem train|segment|eval``: EFEM shape priors and their E-M instance segmentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
import tyro

from priors3d.efem import (EFEMTrainConfig, EMConfig, dbscan_instances, em_method, evaluate_layouts, instance_ap,
                           load_prior, make_scene, mesh_picture, segment, segmentation_picture, train_prior)
from priors3d.engine import CommandConfig
from priors3d.runs import save_json


def train(config: EFEMTrainConfig) -> dict:
    """Train the shape prior of one category on canonical partial scans (no rotation augmentation needed)."""
    results = train_prior(config)[1]
    print(f"{config.category} {config.encoder} prior: SDF L1 {results['sdf_l1_near']:.4f} near the surface upright, "
          f"{results['sdf_l1_near_so3']:.4f} rotated ({results['train_time_s'] / 60:.1f} min)")
    return results


@dataclasses.dataclass(kw_only=True)
class SegmentConfig(CommandConfig):
    """Options of ``priors3d efem segment``."""

    prior: tyro.conf.Positional[Path] = Path("runs/efem-prior")
    """A run directory written by ``priors3d efem train`` (its category is segmented)."""
    layout: Literal["z", "so3", "piles"] = "z"
    scene_seed: int = 0
    out: Path = Path("runs/efem-segment")
    """Folder of segmentation.json and the pictures (segmentation.png, meshes.png)."""
    em: EMConfig = dataclasses.field(default_factory=EMConfig)


def segment_scene(config: SegmentConfig) -> dict:
    """Segment one generated scene with a trained prior; scores it and draws it."""
    prior_config, prior = load_prior(config.prior)
    scene = make_scene(prior_config.category, config.layout, config.scene_seed)
    found = segment(prior, scene.points, config.em, torch.Generator().manual_seed(config.scene_seed))
    scores = instance_ap([(found.masks, found.confidence)], [scene.truth()])
    segmentation_picture(config.out / "segmentation.png", scene, found.masks, "EFEM")
    mesh_picture(config.out / "meshes.png", scene, prior, found.code)
    result = {**scores, "instances": int(scene.truth().max()) + 1, "found": len(found.masks),
              "confidence": found.confidence.tolist()}
    save_json(config.out / "segmentation.json", result)
    print(f"{prior_config.category} {config.layout} scene {config.scene_seed}: {result['found']} found for "
          f"{result['instances']} instances, AP50 {scores['AP50']:.3f} (pictures in {config.out})")
    return result


@dataclasses.dataclass(kw_only=True)
class EvalConfig(CommandConfig):
    """Options of ``priors3d efem eval``."""

    prior: tyro.conf.Positional[Path] = Path("runs/efem-prior")
    layouts: tuple[Literal["z", "so3", "piles"], ...] = ("z", "so3", "piles")
    scenes: int = 4
    """Scenes per layout."""
    seed: int = 0
    dbscan: bool = True
    """Score the DBSCAN baseline on the same scenes too."""
    em: EMConfig = dataclasses.field(default_factory=EMConfig)


def evaluate(config: EvalConfig) -> dict:
    """Instance AP (0.50:0.95, AP50, AP25) and time per scene of a prior's E-M per layout (``<prior>/eval.json``)."""
    prior_config, prior = load_prior(config.prior)
    methods = {"efem": em_method(prior, config.em, config.seed)}
    if config.dbscan:
        methods["dbscan"] = lambda scene: dbscan_instances(scene.points)
    results = evaluate_layouts(methods, prior_config.category, config.layouts, config.scenes, config.seed)
    save_json(config.prior / "eval.json", results)
    for name, layouts in results.items():
        print(f"{name}: " + ", ".join(f"{layout} AP50 {r['AP50']:.3f} AP {r['AP']:.3f}"
                                      for layout, r in layouts.items()))
    return results
