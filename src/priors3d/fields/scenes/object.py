"""A procedural object captured as the NeRF-synthetic (Blender) data sets are: a textured multi-part object inside
``[-1.5, 1.5]^3`` (z up), RGBA frames with anti-aliased edges over a transparent background, training cameras
spread over the upper hemisphere at radius 4, test cameras on a circle at 30 degrees elevation, and the folder
layout of those data sets (``transforms_{train,val,test}.json``, ``camera_angle_x``, ``file_path`` without an
extension, ``r_<i>_depth_0000.png`` beside the test frames). Deterministic in ``ObjectConfig.seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from priors3d.fields.scenes.primitives import BOX, CHECKER, CYLINDER, NOISE, PLAIN, SPHERE, STRIPES, Primitives, ScenePart
from priors3d.fields.scenes.raycast import World, render_views
from priors3d.fields.scenes.room import look_at
from priors3d.fields.views import Scene, Views
from priors3d.runs import save_json
from priors3d.viz import palette, save_png

PART_NAMES = ("base", "column", "body", "head", "arm", "ball", "antenna")
COLORS = ((0.80, 0.25, 0.20), (0.20, 0.40, 0.75), (0.90, 0.75, 0.25), (0.25, 0.60, 0.30), (0.55, 0.35, 0.20),
          (0.85, 0.85, 0.82), (0.45, 0.20, 0.55), (0.15, 0.55, 0.60))
BLENDER_ROTATION = 0.012566370614359171  # the per-frame "rotation" Blender's exporter writes (unused by loaders)


@dataclass
class ObjectConfig:
    """The object, its cameras and how its frames are rendered.

    Attributes:
        seed: colours, textures and training cameras.
        width, height: frame size in pixels (the public data sets: 800 x 800).
        n_train, n_val, n_test: cameras per split (the public data sets: 100 / 100 / 200).
        radius: camera distance from the object's centre.
        camera_angle_x: horizontal field of view in radians (the public data sets' value).
        supersample: rays per pixel side; edges are anti-aliased and alpha is fractional there.
        light_samples: area-light samples per side (soft shadows); ambient: light everywhere.
    """

    seed: int = 0
    width: int = 100
    height: int = 100
    n_train: int = 100
    n_val: int = 10
    n_test: int = 200
    radius: float = 4.0
    camera_angle_x: float = 0.6911112070083618
    supersample: int = 2
    light_samples: int = 2
    ambient: float = 0.3


def object_parts(seed: int) -> list[ScenePart]:
    """The object's primitives (semantic id = index in :data:`PART_NAMES`, one instance per primitive)."""
    rng = np.random.default_rng(seed)
    color = [COLORS[i] for i in rng.permutation(len(COLORS))]
    turn = float(rng.uniform(0, math.pi / 2))
    c, s = math.cos(turn), math.sin(turn)
    parts = [
        ScenePart(BOX, (0.0, 0.0, -0.95), (0.95, 0.75, 0.15), 0, 0, color[0], color[1], CHECKER, 0.35),
        ScenePart(CYLINDER, (0.0, 0.0, -0.35), (0.25, 0.25, 0.45), 1, 1, color[2], color[3], STRIPES, 0.18, axis=2),
        ScenePart(BOX, (0.0, 0.0, 0.35), (0.55, 0.4, 0.3), 2, 2, color[4], color[5], NOISE, yaw=turn),
        ScenePart(SPHERE, (0.0, 0.0, 1.0), (0.35, 0.35, 0.35), 3, 3, color[6], color[7], STRIPES, 0.15),
        ScenePart(BOX, (0.78 * c, 0.78 * s, 0.45), (0.23, 0.12, 0.12), 4, 4, color[1], None, PLAIN, yaw=turn),
        ScenePart(BOX, (-0.78 * c, -0.78 * s, 0.45), (0.23, 0.12, 0.12), 4, 5, color[1], None, PLAIN, yaw=turn),
        ScenePart(SPHERE, (0.6, -0.45, -0.6), (0.2, 0.2, 0.2), 5, 6, color[3], color[0], CHECKER, 0.12),
        ScenePart(CYLINDER, (0.0, 0.0, 1.45), (0.04, 0.04, 0.12), 6, 7, color[5], None, PLAIN),
    ]
    return parts


def object_world(cfg: ObjectConfig) -> World:
    prims = Primitives.stack(object_parts(cfg.seed))
    noise = torch.rand(12, 12, 12, generator=torch.Generator().manual_seed(cfg.seed))
    return World(prims, light_center=torch.tensor([1.0, -1.5, 4.0]), light_size=1.5, light_samples=cfg.light_samples,
                 ambient=cfg.ambient, noise=noise, noise_box=torch.tensor([[-1.5] * 3, [1.5] * 3]))


def object_cameras(cfg: ObjectConfig) -> dict[str, Tensor]:
    """``c2w [V, 4, 4]`` (OpenGL axes) per split: train and val uniform on the upper hemisphere, test on a circle
    at 30 degrees elevation, all looking at the origin."""
    rng = np.random.default_rng(cfg.seed + 1)

    def hemisphere(n: int) -> Tensor:
        azimuth, height = rng.uniform(0, 2 * math.pi, n), rng.uniform(0.05, 1.0, n)
        ring = np.sqrt(1 - height**2)
        return torch.tensor(np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), height], -1))

    azimuth = torch.arange(cfg.n_test, dtype=torch.float64) * (2 * math.pi / max(cfg.n_test, 1))
    elevation = math.radians(30)
    circle = torch.stack([math.cos(elevation) * azimuth.cos(), math.cos(elevation) * azimuth.sin(),
                          torch.full_like(azimuth, math.sin(elevation))], -1)
    directions = {"train": hemisphere(cfg.n_train), "val": hemisphere(cfg.n_val), "test": circle}
    return {split: look_at(d * cfg.radius, torch.zeros_like(d)).float() for split, d in directions.items()}


def render_object(cfg: ObjectConfig, c2w: Tensor, progress: bool = False) -> dict[str, Tensor]:
    """Render cameras ``c2w [V, 4, 4]``: straight (not premultiplied) ``rgb [V, H, W, 3]``, ``alpha [V, H, W]``
    (pixel coverage), z-``depth``, ``semantic`` and ``instance`` ``[V, H, W]`` (at the pixel centre)."""
    s = cfg.supersample
    focal = 0.5 * cfg.width / math.tan(0.5 * cfg.camera_angle_x)
    intrinsics = torch.tensor([[focal * s, focal * s, cfg.width * s / 2, cfg.height * s / 2]]).expand(len(c2w), 4)
    out = render_views(object_world(cfg), c2w, intrinsics.contiguous(), cfg.height * s, cfg.width * s,
                       progress=progress)
    v, h, w = len(c2w), cfg.height, cfg.width
    coverage = (out["semantic"] >= 0).float().reshape(v, h, s, w, s).mean((2, 4))
    summed = out["images"].reshape(v, h, s, w, s, 3).sum((2, 4)) / (s * s)
    rgb = torch.where(coverage[..., None] > 0, summed / coverage.clamp_min(1e-6)[..., None], 0.0)
    centre = (slice(None), slice(s // 2, None, s), slice(s // 2, None, s))
    return {"rgb": rgb.clamp(0, 1), "alpha": coverage, "depth": out["depth"][centre],
            "semantic": out["semantic"][centre], "instance": out["instance"][centre], "focal": focal}


def generate_object(cfg: ObjectConfig | None = None, progress: bool = False) -> Scene:
    """The object's train and test views composited over white (as the Blender loader composites), with labels."""
    cfg = cfg or ObjectConfig()
    cameras = object_cameras(cfg)
    splits = {}
    for split in ("train", "test"):
        r = render_object(cfg, cameras[split], progress)
        images = r["rgb"] * r["alpha"][..., None] + (1 - r["alpha"][..., None])
        intrinsics = torch.tensor([[r["focal"], r["focal"], cfg.width / 2, cfg.height / 2]]).repeat(len(images), 1)
        splits[split] = Views(images=images, c2w=cameras[split], intrinsics=intrinsics,
                              names=[f"r_{i}" for i in range(len(images))], depth=r["depth"],
                              semantic=r["semantic"], instance=r["instance"])
    return Scene(train=splits["train"], test=splits["test"], class_names=list(PART_NAMES),
                 class_colors=palette(len(PART_NAMES)), aabb=torch.tensor([[-1.5] * 3, [1.5] * 3]), near=2.0, far=6.0)


def write_blender(folder: str | Path, cfg: ObjectConfig | None = None, progress: bool = False) -> Path:
    """Render the object into ``folder`` in the NeRF-synthetic layout; returns ``transforms_train.json``'s path.

    ``<split>/r_<i>.png`` are 8-bit RGBA; test frames also get ``r_<i>_depth_0000.png`` (8-bit, nearer is brighter,
    as those data sets ship them; no loader reads them). The JSON files hold ``camera_angle_x`` and per frame
    ``file_path`` (``./<split>/r_<i>``, no extension), ``rotation`` and ``transform_matrix`` (camera-to-world).
    """
    cfg = cfg or ObjectConfig()
    root = Path(folder)
    for split, c2w in object_cameras(cfg).items():
        r = render_object(cfg, c2w, progress)
        rgba = torch.cat([r["rgb"], r["alpha"][..., None]], -1)
        frames = []
        for i in range(len(c2w)):
            save_png(root / split / f"r_{i}.png", (rgba[i] * 255).round().byte().numpy())
            if split == "test":
                near = torch.where(r["depth"][i] > 0, 1 - (r["depth"][i] - 2) / 4, 0).clamp(0, 1)
                save_png(root / split / f"r_{i}_depth_0000.png", (near * 255).round().byte().numpy())
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": BLENDER_ROTATION,
                           "transform_matrix": c2w[i].tolist()})
        save_json(root / f"transforms_{split}.json", {"camera_angle_x": cfg.camera_angle_x, "frames": frames})
    return root / "transforms_train.json"
