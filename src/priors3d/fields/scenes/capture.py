"""A procedural phone capture in the nerfstudio layout, with what real ones carry: a courtyard (the room's
furniture on an open ground plane, buildings 15-40 m away, a sky at infinity), portrait JPEG frames through a
lens with OpenCV radial-tangential distortion, and poses in an arbitrary frame (offset, turned and scaled as
COLMAP leaves them). Deterministic in ``CaptureConfig.seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from priors3d.fields.cameras import DISTORTION_KEYS, undistort
from priors3d.fields.rays import pixel_centres, pixel_rays
from priors3d.fields.scenes.primitives import BOX, CHECKER, NOISE, Primitives, ScenePart
from priors3d.fields.scenes.raycast import World, shade_rays
from priors3d.fields.scenes.room import RoomConfig, build_parts, look_at
from priors3d.runs import atomic_write, save_json

SKY_TOP, SKY_HORIZON = (0.35, 0.55, 0.85), (0.85, 0.88, 0.92)


@dataclass
class CaptureConfig:
    """The courtyard, the walk around it and the phone.

    Attributes:
        seed: layout, colours and camera jitter.
        width, height: frame size (portrait: height > width).
        n_frames: frames along the walk.
        vfov_deg: vertical field of view.
        distortion: ``(k1, k2, k3, p1, p2)`` of the lens.
        scale, offset, turn_deg: the similarity from the world to the poses written (COLMAP's arbitrary frame).
        quality: JPEG quality.
        supersample: rays per pixel side.
    """

    seed: int = 0
    width: int = 60
    height: int = 80
    n_frames: int = 64
    vfov_deg: float = 70.0
    distortion: tuple[float, float, float, float, float] = (-0.08, 0.012, 0.0, 0.0006, -0.0004)
    scale: float = 3.7
    offset: tuple[float, float, float] = (12.0, -7.0, 3.0)
    turn_deg: float = 35.0
    quality: int = 92
    supersample: int = 2


def courtyard(cfg: CaptureConfig) -> World:
    """The room's furniture (no walls or ceiling) on a 200 m ground plane, with buildings around it."""
    parts, _ = build_parts(RoomConfig(seed=cfg.seed))
    parts = [p for p in parts if p.instance >= 6]  # drop floor, ceiling and walls
    rng = np.random.default_rng(cfg.seed + 7)
    parts.append(ScenePart(BOX, (0.0, 0.0, -0.1), (100.0, 100.0, 0.1), 0, 0, (0.45, 0.42, 0.38), (0.36, 0.40, 0.30),
                           CHECKER, 1.5))
    for k, angle in enumerate(np.linspace(0, 2 * math.pi, 9)[:-1] + rng.uniform(0, 0.5)):
        distance, half = rng.uniform(15, 40), rng.uniform(2, 5, 3) * (1, 1, 2)
        color = tuple(rng.uniform(0.3, 0.8, 3))
        parts.append(ScenePart(BOX, (distance * math.cos(angle), distance * math.sin(angle), half[2]), tuple(half),
                               1, 100 + k, color, tuple(0.7 * c for c in color), NOISE, yaw=float(angle)))
    prims = Primitives.stack(parts)
    noise = torch.rand(24, 24, 24, generator=torch.Generator().manual_seed(cfg.seed))
    return World(prims, light_center=torch.tensor([30.0, -20.0, 60.0]), light_size=4.0, light_samples=1,
                 ambient=0.45, noise=noise, noise_box=torch.tensor([[-45.0, -45.0, 0.0], [45.0, 45.0, 25.0]]))


def sky(directions: Tensor) -> Tensor:
    """Colour ``[R, 3]`` of the sky at infinity in unit ``directions [R, 3]``: horizon haze to blue, soft bands."""
    up = directions[:, 2].clamp(0, 1)
    bands = 0.04 * torch.sin(9 * torch.atan2(directions[:, 1], directions[:, 0]) + 14 * up)
    mix = (up.sqrt() + bands).clamp(0, 1)[:, None]
    return torch.tensor(SKY_HORIZON) * (1 - mix) + torch.tensor(SKY_TOP) * mix


def walk(cfg: CaptureConfig) -> Tensor:
    """World ``c2w [V, 4, 4]`` (OpenGL axes): a loop at 2-2.6 m around the furniture at eye height, aimed near its
    middle with a hand's jitter."""
    rng = np.random.default_rng(cfg.seed + 3)
    theta = np.linspace(0, 2 * math.pi, cfg.n_frames, endpoint=False)
    radius = 2.3 + 0.3 * np.sin(2 * theta)
    position = np.stack([radius * np.cos(theta), radius * np.sin(theta), 1.5 + 0.1 * np.sin(3 * theta)], -1)
    target = rng.normal(0, 0.3, (cfg.n_frames, 3)) * (1, 1, 0.5) + (0, 0, 0.7)
    return look_at(torch.tensor(position), torch.tensor(target))


def intrinsics(cfg: CaptureConfig) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of the phone (square pixels, principal point a little off centre)."""
    f = 0.5 * cfg.height / math.tan(math.radians(cfg.vfov_deg) / 2)
    return f, f, cfg.width / 2 + 0.7, cfg.height / 2 - 0.4


def render_capture(cfg: CaptureConfig, c2w: Tensor, progress: bool = False) -> Tensor:
    """Frames ``[V, H, W, 3]`` in [0, 1] through the distorting lens, ``cfg.supersample`` rays per pixel side."""
    from tqdm import tqdm

    world, s = courtyard(cfg), cfg.supersample
    fx, fy, cx, cy = intrinsics(cfg)
    uv = pixel_centres(cfg.height * s, cfg.width * s, torch.float64) / s  # s x s points in every pixel
    ideal = undistort((uv - torch.tensor([cx, cy], dtype=torch.float64)) / torch.tensor([fx, fy], dtype=torch.float64),
                      torch.tensor(cfg.distortion, dtype=torch.float64))  # [R, 2] where a pinhole sees them
    unit = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)  # those are pixels of a unit pinhole
    frames = []
    for camera in tqdm(c2w.double(), desc="capture", disable=not progress):
        origins, dirs = (x.float() for x in pixel_rays(camera, unit, ideal))
        shaded = shade_rays(world, origins, dirs)
        rgb = torch.where((shaded["semantic"] >= 0)[:, None], shaded["rgb"], sky(dirs))
        frames.append(rgb.reshape(cfg.height, s, cfg.width, s, 3).mean((1, 3)))
    return torch.stack(frames)


def capture_transform(cfg: CaptureConfig) -> Tensor:
    """``[4, 4]`` similarity (float64) from the world to the frame the poses are written in."""
    angle = math.radians(cfg.turn_deg)
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0],
                             [0.0, 0.0, 1.0]], dtype=torch.float64)
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = cfg.scale * rotation
    transform[:3, 3] = torch.tensor(cfg.offset, dtype=torch.float64)
    return transform


def write_capture(folder: str | Path, cfg: CaptureConfig | None = None, progress: bool = False) -> Path:
    """Render the walk into ``folder`` as ``ns-process-data`` leaves a phone video: ``images/frame_<i>.jpg``
    (1-based, 5 digits) and ``transforms.json`` (``camera_model: OPENCV``, shared ``fl_x fl_y cx cy w h k1 k2 p1
    p2``, per frame ``file_path`` and an OpenGL ``transform_matrix`` in the arbitrary frame, ``applied_transform``).
    No depth, no labels, no split. Returns the path of ``transforms.json``."""
    cfg = cfg or CaptureConfig()
    root = Path(folder)
    c2w = walk(cfg)
    frames = render_capture(cfg, c2w, progress)
    transform = capture_transform(cfg)
    posed = c2w.clone()
    posed[:, :3, :3] = transform[:3, :3] @ c2w[:, :3, :3] / cfg.scale
    posed[:, :3, 3] = c2w[:, :3, 3] @ transform[:3, :3].T + transform[:3, 3]
    records = []
    for i, frame in enumerate(frames):
        name = f"images/frame_{i + 1:05d}.jpg"
        array = (frame.clamp(0, 1) * 255).round().byte().numpy()
        atomic_write(root / name, lambda p, a=array: Image.fromarray(a).save(p, format="JPEG", quality=cfg.quality))
        records.append({"file_path": name, "transform_matrix": posed[i].tolist(), "colmap_im_id": i + 1})
    fx, fy, cx, cy = intrinsics(cfg)
    meta = {"w": cfg.width, "h": cfg.height, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
            **{key: value for key, value in zip(DISTORTION_KEYS, cfg.distortion) if key != "k3" or value},
            "camera_model": "OPENCV", "frames": records,
            "applied_transform": [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-0.0, -1.0, -0.0, -0.0]]}
    return save_json(root / "transforms.json", meta)
