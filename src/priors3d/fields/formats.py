"""Scene folders on disk: our writer and loaders for public layouts, all returning :class:`Scene`.

Every loader converts to the library's conventions here and nowhere else: camera-to-world in
OpenGL axes, intrinsics ``(fx, fy, cx, cy)`` with pixel ``(u, v)`` centred at ``(u + 0.5, v + 0.5)``,
z-depth in metres (0 = unknown), labels in memory ``0..C-1`` with ``-1`` = void.

On disk, label PNGs store void as 0 and class (or instance) ``c`` as ``c + 1``; depth PNGs are
16-bit millimetres.

Layouts:
    * nerfstudio / Blender: ``transforms.json`` (or ``transforms_train.json`` + ``transforms_test.json``).
    * Replica as rendered for Semantic-NeRF: ``traj_w_c.txt`` + ``rgb/``, ``depth/``, ``semantic_class/``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from priors3d.fields.cameras import DISTORTION_KEYS, undistort_image, undistorted_intrinsics
from priors3d.fields.gaussians import backproject_depth
from priors3d.fields.rays import inward_box
from priors3d.fields.views import Scene, Views
from priors3d.runs import atomic_write, save_json
from priors3d.viz import palette, save_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG")
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])  # right-multiply a c2w: flips the camera's y and z axes


def split_indices(n: int, test_every: int) -> tuple[list[int], list[int]]:
    """Train and test frame indices: every ``test_every``-th frame from ``test_every // 2`` on is a test frame,
    so test frames lie between train frames."""
    if test_every < 2:
        raise ValueError(f"test_every must be >= 2, got {test_every}")
    test = [i for i in range(n) if i % test_every == test_every // 2]
    return [i for i in range(n) if i % test_every != test_every // 2], test


# ----------------------------------------------------------------------------------------------- writing


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to the temporary name
        np.save(f, array)


def _labels_to_disk(labels: Tensor) -> np.ndarray:
    on_disk = (labels + 1).clamp_min(0).numpy()
    return on_disk.astype(np.uint8 if on_disk.max(initial=0) < 256 else np.uint16)


def write_nerfstudio(scene: Scene, folder: str | Path) -> Path:
    """Write ``scene`` as a nerfstudio folder; returns the path of ``transforms.json``.

    Files: ``images/<name>.png``, ``depth/<name>.png`` (uint16 mm), ``semantic_class/<name>.png`` and
    ``semantic_instance/<name>.png`` (0 = void, ``c + 1`` = id ``c``), ``features/<name>.npy``,
    ``transforms.json`` (intrinsics ``fl_x, fl_y, cx, cy, w, h``, OpenGL ``transform_matrix`` per frame,
    ``train_filenames`` / ``test_filenames``) and ``scene.json`` (class names and colours, aabb, near, far).
    """
    root = Path(folder)
    splits = {"train": scene.train, "test": scene.test}
    names = scene.train.names + scene.test.names
    if len(set(names)) != len(names):
        raise ValueError("view names must be unique across train and test to share one folder")
    h, w = scene.train.hw
    frames = []
    for split, views in splits.items():
        if views.hw != (h, w):
            raise ValueError(f"all views must be {h}x{w}, the {split} views are {views.hw[0]}x{views.hw[1]}")
        for i, name in enumerate(views.names):
            frame = {"file_path": f"images/{name}.png", "transform_matrix": views.c2w[i].tolist()}
            frame.update(zip(("fl_x", "fl_y", "cx", "cy"), views.intrinsics[i].tolist()))
            save_png(root / frame["file_path"], (views.images[i].clamp(0, 1) * 255).round().byte().numpy())
            if views.depth is not None:
                frame["depth_file_path"] = f"depth/{name}.png"
                mm = (views.depth[i] * 1000).round().clamp(0, 65535).numpy().astype(np.uint16)
                save_png(root / frame["depth_file_path"], mm)
            for key, labels in (("semantic_class", views.semantic), ("semantic_instance", views.instance)):
                if labels is not None:
                    frame[f"{key}_path"] = f"{key}/{name}.png"
                    save_png(root / frame[f"{key}_path"], _labels_to_disk(labels[i]))
            if views.features is not None:
                array = views.features[i].numpy().astype(np.float32)
                atomic_write(root / "features" / f"{name}.npy", lambda p, a=array: _save_npy(p, a))
            frames.append(frame)
    # Shared intrinsics go to the top level, as nerfstudio writes them.
    meta = {"camera_model": "PINHOLE", "w": w, "h": h, "depth_unit_scale_factor": 1e-3}
    for key in ("fl_x", "fl_y", "cx", "cy"):
        if len({f[key] for f in frames}) == 1:
            meta[key] = [f.pop(key) for f in frames][0]
    meta.update(frames=frames, **{f"{split}_filenames": [f"images/{name}.png" for name in views.names]
                                  for split, views in splits.items()})
    save_json(root / "scene.json", {
        "class_names": scene.class_names,
        "class_colors": None if scene.class_colors is None else scene.class_colors.tolist(),
        "aabb": None if scene.aabb is None else scene.aabb.tolist(), "near": scene.near, "far": scene.far,
        "labels": "label PNGs: 0 = void, value c + 1 = id c; depth PNGs: uint16 millimetres",
    })
    return save_json(root / "transforms.json", meta)


# ----------------------------------------------------------------------------------------------- reading


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    with Image.open(path) as image:
        return np.asarray(image)


def _find_image(root: Path, file_path: str, source: Path) -> Path:
    """The image a frame names; Blender names them without extension (``./train/r_0``)."""
    base = root / file_path
    candidates = [base] + [base.with_name(base.name + s) for s in IMAGE_SUFFIXES]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{source}: image {file_path!r} not found; looked for "
                            + ", ".join(str(p) for p in candidates))


def _rgb(path: Path, background: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray | None]:
    """The image at ``path`` as ``[H, W, 3]`` float32 in [0, 1] (RGBA composited over ``background``), and its
    alpha ``[H, W]`` (None for an opaque image)."""
    array = _read(path)
    if array.dtype in (np.uint8, np.uint16):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, -1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB or RGBA image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: the image holds NaN or Inf values")
    if array.shape[-1] == 4:
        alpha = array[..., 3:]
        composite = array[..., :3] * alpha + np.asarray(background, np.float32) * (1 - alpha)
        return composite.astype(np.float32), alpha[..., 0].astype(np.float32)
    return array.astype(np.float32), None


def _labels_from_disk(path: Path) -> np.ndarray:
    array = _read(path)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel label image, got shape {array.shape}")
    return array.astype(np.int64) - 1


def _features(root: Path, names: list[str], hw: tuple[int, int]) -> Tensor | None:
    """``features/<name>.npy`` or ``.pt`` (``[h, w, D]``) per view, bilinearly resized to ``hw``: ``[V, H, W, D]``.

    None when there is no ``features/`` folder.
    """
    folder = root / "features"
    if not folder.is_dir():
        return None
    maps = []
    for name in names:
        npy, pt = folder / f"{name}.npy", folder / f"{name}.pt"
        if npy.is_file():
            array = torch.from_numpy(np.load(npy)).float()
        elif pt.is_file():
            array = torch.as_tensor(torch.load(pt, map_location="cpu")).float()
        else:
            raise FileNotFoundError(f"{folder} holds features but not for view {name!r}: expected {npy} or {pt}")
        if array.ndim != 3:
            raise ValueError(f"features for {name!r} must be [h, w, D], got {list(array.shape)}")
        resized = F.interpolate(array.permute(2, 0, 1)[None], size=hw, mode="bilinear", align_corners=False)
        maps.append(resized[0].permute(1, 2, 0))
    return torch.stack(maps)


def _shrink(maps: dict[str, np.ndarray], intrinsics: list[float], factor: int,
            name: str) -> tuple[dict[str, np.ndarray], list[float]]:
    """One frame's maps shrunk by an integer ``factor``: colour box-averaged, depth and labels sampled at the
    block centres; intrinsics scaled alike."""
    if factor == 1:
        return maps, intrinsics
    h, w = maps["images"].shape[:2]
    if h % factor or w % factor:
        raise ValueError(f"downscale {factor} must divide the image size {h}x{w} ({name})")
    out = {key: value[factor // 2::factor, factor // 2::factor] for key, value in maps.items()}
    for key in ("images", "alpha"):  # averaged: the composite of the average is the average of composites
        if key in maps:
            out[key] = maps[key].reshape(h // factor, factor, w // factor, factor, *maps[key].shape[2:]).mean((1, 3))
    return out, [v / factor for v in intrinsics]


def _to_views(raw: dict[str, list], root: Path) -> Views:
    """Stack the per-frame arrays of ``raw`` (one list per ``Views`` field; empty lists: no such maps)."""
    shapes = {image.shape for image in raw["images"]}
    if len(shapes) != 1:
        raise ValueError(f"{root}: all images must have one size, found {sorted(shapes)}")
    hw = raw["images"][0].shape[:2]
    stack = lambda key, dtype: torch.from_numpy(np.stack(raw[key])).to(dtype) if raw.get(key) else None  # noqa: E731
    return Views(
        images=stack("images", torch.float32), c2w=stack("c2w", torch.float32),
        intrinsics=torch.tensor(raw["intrinsics"], dtype=torch.float32), names=raw["names"],
        depth=stack("depth", torch.float32), semantic=stack("semantic", torch.int64),
        instance=stack("instance", torch.int64), features=_features(root, raw["names"], hw),
        alpha=stack("alpha", torch.float32),
    )


def _matrix(value, source: Path, frame: int) -> np.ndarray:
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.shape == (3, 4):
        matrix = np.concatenate([matrix, [[0, 0, 0, 1]]])
    if matrix.shape != (4, 4):
        raise ValueError(f"{source}: frame {frame} transform_matrix must be 4x4 (or 3x4), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{source}: frame {frame} transform_matrix holds NaN or Inf: {matrix.tolist()}")
    return matrix


def _intrinsics(meta: dict, frame: dict, w: int, h: int, source: Path, index: int) -> list[float]:
    get = lambda key: frame.get(key, meta.get(key))  # noqa: E731
    for key, size in (("w", w), ("h", h)):
        if get(key) is not None and int(get(key)) != size:
            raise ValueError(f"{source}: frame {index} says {key} = {get(key)} but its image is {w}x{h}")
    if get("fl_x") is not None:
        fx = float(get("fl_x"))
        fy = float(get("fl_y") if get("fl_y") is not None else fx)
    elif get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
        fy = 0.5 * h / math.tan(0.5 * float(get("camera_angle_y"))) if get("camera_angle_y") is not None else fx
    else:
        raise ValueError(f"{source}: frame {index} has no intrinsics; expected fl_x (fl_y, cx, cy, w, h) or "
                         "camera_angle_x")
    cx = float(get("cx")) if get("cx") is not None else w / 2
    cy = float(get("cy")) if get("cy") is not None else h / 2
    if not all(map(math.isfinite, (fx, fy, cx, cy))):
        raise ValueError(f"{source}: frame {index} intrinsics hold NaN or Inf: fx, fy, cx, cy = {fx, fy, cx, cy}")
    return [fx, fy, cx, cy]


def _distortion(meta: dict, frame: dict, source: Path, index: int) -> Tensor | None:
    """``(k1, k2, k3, p1, p2)`` of a frame (per frame or top level; absent keys are 0), None for a pinhole."""
    get = lambda key: frame.get(key, meta.get(key))  # noqa: E731
    model = get("camera_model") or "OPENCV"
    if model not in ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL"):
        raise ValueError(f"{source}: frame {index} has camera_model {model!r}; supported: PINHOLE and OpenCV's "
                         "radial-tangential model (OPENCV: k1 k2 k3 p1 p2)")
    if get("k4"):
        raise ValueError(f"{source}: frame {index} has k4 = {get('k4')}, a fisheye or rational model; supported: "
                         "OpenCV's radial-tangential model (k1 k2 k3 p1 p2)")
    coeffs = [float(get(key) or 0.0) for key in DISTORTION_KEYS]
    if not all(map(math.isfinite, coeffs)):
        raise ValueError(f"{source}: frame {index} distortion holds NaN or Inf: {dict(zip(DISTORTION_KEYS, coeffs))}")
    return torch.tensor(coeffs, dtype=torch.float64) if any(coeffs) else None


def _undistorted(maps: dict[str, np.ndarray], intrinsics: list[float],
                 coeffs: Tensor) -> tuple[dict[str, np.ndarray], list[float]]:
    """One frame's maps resampled to the pinhole of the same size that sees only recorded pixels."""
    h, w = maps["images"].shape[:2]
    old = torch.tensor(intrinsics, dtype=torch.float64)
    new = undistorted_intrinsics(old, coeffs, h, w)
    out = {}
    for key, value in maps.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        tensor = tensor if tensor.ndim == 3 else tensor[..., None]
        mode = "bilinear" if key in ("images", "alpha") else "nearest"  # depth: no blending across silhouettes
        out[key] = undistort_image(tensor, old, coeffs, new, mode).reshape(value.shape).numpy()
    return out, new.tolist()


def _read_frames(source: Path, meta: dict, background, downscale: int,
                 frames: list[tuple[int, dict]] | None = None) -> Views:
    """The views of ``frames`` (``(index, frame)`` pairs; default: all) of the transforms file ``source``, each frame
    undistorted (OpenCV coefficients) and shrunk by ``downscale`` as it is read; ``alpha`` when any image has it."""
    root = source.parent
    raw: dict[str, list] = {k: [] for k in ("images", "c2w", "intrinsics", "names", "depth", "semantic", "instance",
                                            "alpha")}
    for index, frame in enumerate(meta.get("frames", [])) if frames is None else frames:
        if "file_path" not in frame or "transform_matrix" not in frame:
            raise ValueError(f"{source}: frame {index} needs 'file_path' and 'transform_matrix'")
        path = _find_image(root, frame["file_path"], source)
        image, alpha = _rgb(path, background)
        maps = {"images": image} if alpha is None else {"images": image, "alpha": alpha}
        if "depth_file_path" in frame:
            depth = root / frame["depth_file_path"]
            maps["depth"] = (np.load(depth).astype(np.float32) if depth.suffix == ".npy"
                             else _read(depth).astype(np.float32) * meta.get("depth_unit_scale_factor", 1e-3))
        for key, out in (("semantic_class_path", "semantic"), ("semantic_instance_path", "instance")):
            if key in frame:
                maps[out] = _labels_from_disk(root / frame[key])
        for key, value in maps.items():
            if value.shape[:2] != image.shape[:2]:
                raise ValueError(f"{source}: frame {index} {key} map is {value.shape[1]}x{value.shape[0]}, its image "
                                 f"{image.shape[1]}x{image.shape[0]}")
        intrinsics = _intrinsics(meta, frame, image.shape[1], image.shape[0], source, index)
        if (coeffs := _distortion(meta, frame, source, index)) is not None:
            maps, intrinsics = _undistorted(maps, intrinsics, coeffs)
        maps, intrinsics = _shrink(maps, intrinsics, downscale, path.name)
        raw["alpha"].append(maps.pop("alpha", None))
        for key, value in maps.items():
            raw[key].append(value)
        raw["c2w"].append(_matrix(frame["transform_matrix"], source, index))
        raw["intrinsics"].append(intrinsics)
        raw["names"].append(path.stem)
    any_alpha = any(a is not None for a in raw["alpha"])  # then the opaque frames get alpha 1
    raw["alpha"] = [np.ones(i.shape[:2], np.float32) if a is None else a
                    for a, i in zip(raw["alpha"], raw["images"])] if any_alpha else []
    for key in ("depth", "semantic", "instance"):
        if raw[key] and len(raw[key]) != len(raw["images"]):
            raise ValueError(f"{source}: {key} is given for {len(raw[key])} of {len(raw['images'])} frames; "
                             "give it for all or none")
    return _to_views(raw, root)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _scene(root: Path, train: Views, test: Views, class_names: list[str] | None = None,
           background: tuple[float, float, float] | None = None) -> Scene:
    """Attach ``scene.json`` metadata when present, otherwise derive names and bounds from the views: with depth,
    an aabb around the cameras, the origin and the points of every 4th depth pixel, padded, ``far`` = its
    diagonal; without depth and cameras looking inward at one point (an object capture), the box they look at
    (:func:`~priors3d.fields.rays.inward_box`); otherwise the cameras and the origin, padded."""
    info = _json(root / "scene.json") if (root / "scene.json").is_file() else {}
    near = float(info.get("near", 0.05))
    if info.get("aabb") is not None:
        aabb, far = torch.tensor(info["aabb"], dtype=torch.float32), float(info.get("far", 10.0))
    elif train.depth is None and (inward := inward_box(train)) is not None:
        aabb, near, far = inward
    else:
        points = [torch.zeros(1, 3)] + [v.c2w[:, :3, 3] for v in (train, test)]
        cloud = torch.cat(points + [backproject_depth(v, 4)[0] for v in (train, test) if v.depth is not None])
        lo, hi = cloud.min(0).values, cloud.max(0).values
        pad = 0.1 * (hi - lo).max().clamp_min(1.0)
        aabb = torch.stack([lo - pad, hi + pad])
        far = float((aabb[1] - aabb[0]).norm())
    class_names = info.get("class_names") if class_names is None else class_names
    if class_names is None:
        labels = [v.semantic for v in (train, test) if v.semantic is not None]
        n = int(max(int(s.max()) for s in labels)) + 1 if labels else 0
        class_names = [f"class_{i}" for i in range(n)]
    colors = info.get("class_colors")
    colors = torch.tensor(colors, dtype=torch.uint8) if colors else palette(len(class_names))
    return Scene(train=train, test=test, class_names=list(class_names), class_colors=colors, aabb=aabb,
                 near=near, far=far, background=background)


def _composited(background: tuple[float, float, float], *views: Views) -> tuple[float, float, float] | None:
    """``background`` if any of ``views`` was composited over it (has alpha), else None (opaque frames)."""
    return background if any(v.alpha is not None for v in views) else None


def normalising_transform(views: Views) -> Tensor:
    """``[4, 4]`` similarity (float64) from a capture's coordinates to the scene's: the point the cameras look at
    (:func:`~priors3d.fields.rays.inward_box`) or, if they do not look at one, the mean camera centre goes to the
    origin, and the farthest camera to distance 1. Orientation is kept."""
    centres = views.c2w[:, :3, 3].double()
    inward = inward_box(views)
    centre = centres.mean(0) if inward is None else inward[0].double().mean(0)
    scale = 1.0 / (centres - centre).norm(dim=-1).max().clamp_min(1e-12)
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] *= scale
    transform[:3, 3] = -scale * centre
    return transform


def _transformed(views: Views, transform: Tensor) -> Views:
    """``views`` seen in the coordinates of the similarity ``transform`` (cameras moved, depth scaled)."""
    scale = float(transform[0, :3].norm())
    c2w = views.c2w.double().clone()
    c2w[:, :3, 3] = c2w[:, :3, 3] @ transform[:3, :3].T + transform[:3, 3]
    return replace(views, c2w=c2w.float(), depth=None if views.depth is None else views.depth * scale)


def load_nerfstudio(folder: str | Path, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                    downscale: int = 1, test_every: int = 8) -> Scene:
    """Load a nerfstudio or Blender-synthetic folder.

    Splits: Blender's ``transforms_train.json`` / ``transforms_test.json`` (``transforms_val.json`` is
    used for testing when there is no test file); a single ``transforms.json`` is split by its
    ``train_filenames`` / ``test_filenames``, else by each frame's ``split`` field, else by
    :func:`split_indices` with ``test_every``. Intrinsics: ``fl_x, fl_y, cx, cy, w, h`` (top level or
    per frame) or ``camera_angle_x``; ``cx, cy`` default to the image centre. RGBA is composited over
    ``background`` (recorded as ``Scene.background``: a field must render that colour behind itself). A single
    ``transforms.json`` without our ``scene.json`` is a capture: its poses are re-centred and scaled
    (:func:`normalising_transform`, kept as ``Scene.transform``) and, when its frames are opaque photos, taken as
    unbounded: inner box ``[-1, 1]^3`` (every camera is inside), rays to distance 1000. OpenCV
    distortion (``k1 k2 k3 p1 p2``, top level or per frame) is undone as each frame is read (the new pinhole sees
    only recorded pixels). ``downscale`` shrinks each frame by an integer factor as it is read.
    """
    root = Path(folder)
    single, blender = root / "transforms.json", root / "transforms_train.json"
    if blender.is_file():
        candidates = (root / "transforms_test.json", root / "transforms_val.json")
        test_file = next((p for p in candidates if p.is_file()), None)
        if test_file is None:
            raise FileNotFoundError(f"{root}: has transforms_train.json but no transforms_test.json or "
                                    "transforms_val.json")
        train, test = (_read_frames(path, _json(path), background, downscale) for path in (blender, test_file))
        return _scene(root, train, test, background=_composited(background, train, test))
    if not single.is_file():
        raise FileNotFoundError(f"{root}: expected {single.name} (nerfstudio) or {blender.name} (Blender)")
    meta = _json(single)
    frames = list(enumerate(meta.get("frames", [])))
    if not frames:
        raise ValueError(f"{single}: no frames")
    if "train_filenames" in meta and "test_filenames" in meta:
        names = [{str(Path(p)) for p in meta[f"{split}_filenames"]} for split in ("train", "test")]
        train, test = ([f for f in frames if str(Path(f[1]["file_path"])) in n] for n in names)
    elif all("split" in f for _, f in frames):
        train, test = [f for f in frames if f[1]["split"] == "train"], [f for f in frames if f[1]["split"] != "train"]
    else:
        train, test = ([frames[i] for i in index] for index in split_indices(len(frames), test_every))
    if not train or not test:
        raise ValueError(f"{single}: the split left {len(train)} train and {len(test)} test frames")
    train, test = (_read_frames(single, meta, background, downscale, split) for split in (train, test))
    transform = None
    if not (root / "scene.json").is_file():  # a capture: poses in whatever frame and scale its tool chose
        transform = normalising_transform(train)
        train, test = (_transformed(v, transform) for v in (train, test))
    scene = _scene(root, train, test, background=_composited(background, train, test))
    if transform is not None and scene.background is None:  # photos of a world that goes on: unbounded
        scene = replace(scene, aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), near=0.02, far=1000.0, unbounded=True)
    return replace(scene, transform=transform)


def load_replica(folder: str | Path, downscale: int = 1, test_every: int = 8, hfov_deg: float = 90.0,
                 background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Scene:
    """Load a Replica sequence as rendered for Semantic-NeRF.

    Layout: ``traj_w_c.txt`` (one row-major 4x4 camera-to-world per line, OpenCV axes), ``rgb/rgb_{i}.png``,
    optional ``depth/depth_{i}.png`` (uint16 mm), ``semantic_class/semantic_class_{i}.png`` and
    ``semantic_instance/semantic_instance_{i}.png``. Pinhole with ``hfov_deg`` horizontal field of view,
    principal point at the image centre. Class ids present in any frame are remapped to ``0..C-1`` in
    increasing order (names ``class_<id on disk>``), likewise instance ids; 0 on disk is void (-1).
    Split: :func:`split_indices` with ``test_every``. RGBA frames (not what Semantic-NeRF ships) are
    composited over ``background``; ``downscale`` shrinks each frame as it is read.
    """
    root = Path(folder)
    traj = root / "traj_w_c.txt"
    if not traj.is_file():
        raise FileNotFoundError(f"{root}: expected traj_w_c.txt (Replica / Semantic-NeRF layout)")
    rows = [line.split() for line in traj.read_text().splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != 16), None)
    if bad is not None:
        raise ValueError(f"{traj}: line {bad + 1} has {len(rows[bad])} numbers, expected 16 (a row-major 4x4 matrix)")
    poses = np.asarray(rows, dtype=np.float64).reshape(-1, 4, 4) @ OPENCV_TO_OPENGL
    bad = next((i for i, pose in enumerate(poses) if not np.isfinite(pose).all()), None)
    if bad is not None:
        raise ValueError(f"{traj}: line {bad + 1} (frame {bad}) holds NaN or Inf: {rows[bad]}")
    n_rgb = len(list((root / "rgb").glob("rgb_*.png")))
    if n_rgb != len(poses):
        raise ValueError(f"{traj}: {len(poses)} poses but {root / 'rgb'} holds {n_rgb} rgb_<i>.png images")
    raw: dict[str, list] = {k: [] for k in ("images", "c2w", "intrinsics", "names", "depth", "semantic", "instance")}
    any_alpha = False
    optional = {"depth": "depth/depth_{}.png", "semantic": "semantic_class/semantic_class_{}.png",
                "instance": "semantic_instance/semantic_instance_{}.png"}
    for i, pose in enumerate(poses):
        path = root / "rgb" / f"rgb_{i}.png"
        image, alpha = _rgb(path, background)
        any_alpha |= alpha is not None
        h, w = image.shape[:2]
        f = 0.5 * w / math.tan(math.radians(hfov_deg) / 2)
        maps = {"images": image}
        for key, pattern in optional.items():
            if (map_path := root / pattern.format(i)).parent.is_dir():
                array = _read(map_path)
                if array.shape != (h, w):
                    raise ValueError(f"{map_path}: expected {h}x{w} like {path}, got {array.shape}")
                maps[key] = array.astype(np.float32) / 1000 if key == "depth" else array.astype(np.int64)
        maps, intrinsics = _shrink(maps, [f, f, w / 2, h / 2], downscale, path.name)
        for key, value in (*maps.items(), ("c2w", pose), ("intrinsics", intrinsics), ("names", path.stem)):
            raw[key].append(value)
    class_ids = _remap(raw["semantic"])  # the ids present in the frames as loaded
    _remap(raw["instance"])
    views = _to_views(raw, root)
    train, test = split_indices(len(views), test_every)
    names = [f"class_{c}" for c in class_ids] if raw["semantic"] else []
    return _scene(root, views.subset(train), views.subset(test), class_names=names,
                  background=background if any_alpha else None)


def _remap(maps: list[np.ndarray]) -> list[int]:
    """Remap the nonzero ids present in ``maps`` to ``0..K-1`` (0 -> -1) in place; returns the ids on disk."""
    if not maps:
        return []
    ids = np.unique(np.concatenate([np.unique(m) for m in maps]))
    ids = ids[ids != 0]
    lookup = np.full(int(max(ids.max(initial=0), max(int(m.max()) for m in maps))) + 1, -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    for i, m in enumerate(maps):
        maps[i] = lookup[m]
    return ids.tolist()


def load_scene(folder: str | Path, **kwargs) -> Scene:
    """Load any supported scene folder, detecting its layout (``kwargs`` go to the matching loader)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"scene folder {root} does not exist")
    if (root / "transforms.json").is_file() or (root / "transforms_train.json").is_file():
        return load_nerfstudio(root, **kwargs)
    if (root / "traj_w_c.txt").is_file():
        return load_replica(root, **kwargs)
    raise FileNotFoundError(f"{root}: unknown scene layout; looked for transforms.json or transforms_train.json "
                            "(nerfstudio / Blender) and traj_w_c.txt (Replica / Semantic-NeRF)")


@dataclass(kw_only=True)
class SceneOptions:
    """How a fit reads its scene (``priors3d field fit`` / ``splat fit`` options). The run records them and every
    later command (render, shape, select, edit, view) reads the scene the same way."""

    downscale: int = 1
    """Shrink every frame by this integer factor as it is read."""
    background: tuple[float, float, float] | None = None
    """Colour behind the field; RGBA frames are composited over it too. None: what the loader composited them
    over (white for nerfstudio / Blender RGBA frames), black for opaque frames."""
    aabb: tuple[float, float, float, float, float, float] | None = None
    """The field's box ``xmin ymin zmin xmax ymax zmax`` (default: the loader's, see ``load_nerfstudio``)."""


def read_scene(scene: str | Path, options: SceneOptions) -> Scene:
    """:func:`open_scene` with ``options``: frames shrunk and composited as asked, the box overridden."""
    loaded = open_scene(scene, options.downscale, options.background)
    box = None if options.aabb is None else torch.tensor(options.aabb, dtype=torch.float32).reshape(2, 3)
    if box is not None and not (box[0] < box[1]).all():
        raise ValueError(f"aabb must be xmin ymin zmin xmax ymax zmax with min < max, got {options.aabb}")
    return replace(loaded, aabb=loaded.aabb if box is None else box, background=loaded.background if options.background is None else options.background)


def fitted_scene(setup) -> Scene:
    """The scene a fit ran on, read as the fit read it: ``setup`` is a ``FieldSetup`` or ``SplatSetup`` (its
    ``scene``, ``downscale`` and ``background``)."""
    return open_scene(setup.scene, setup.downscale, setup.background)


def open_scene(scene: str | Path, downscale: int = 1, background: tuple[float, float, float] | None = None) -> Scene:
    """``room`` -> the default procedural room; otherwise a scene folder read by ``load_scene``, each frame shrunk
    by ``downscale`` and RGBA frames composited over ``background`` (None: the loader's default, white for
    nerfstudio / Blender folders as those data sets are shown)."""
    if str(scene) == "room":
        if downscale != 1:
            raise ValueError(f"the procedural room is rendered at its own size; downscale must be 1, got {downscale} "
                             "(generate a smaller room with `priors3d field generate` instead)")
        from priors3d.fields.scenes import RoomConfig, generate_room

        return generate_room(RoomConfig())
    path = Path(scene)
    if not path.is_dir():
        raise FileNotFoundError(f"scene must be a scene folder or 'room', got {str(scene)!r} (no such folder)")
    if downscale < 1:
        raise ValueError(f"downscale must be a positive integer, got {downscale}")
    return load_scene(path, downscale=downscale, **({} if background is None else {"background": background}))
