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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from priors3d.fields.gaussians import backproject_depth
from priors3d.fields.views import Scene, Views
from priors3d.runs import atomic_write, save_json
from priors3d.viz import palette

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


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda p: Image.fromarray(array).save(p, format="PNG"))


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
            _save_png(root / frame["file_path"], (views.images[i].clamp(0, 1) * 255).round().byte().numpy())
            if views.depth is not None:
                frame["depth_file_path"] = f"depth/{name}.png"
                mm = (views.depth[i] * 1000).round().clamp(0, 65535).numpy().astype(np.uint16)
                _save_png(root / frame["depth_file_path"], mm)
            for key, labels in (("semantic_class", views.semantic), ("semantic_instance", views.instance)):
                if labels is not None:
                    frame[f"{key}_path"] = f"{key}/{name}.png"
                    _save_png(root / frame[f"{key}_path"], _labels_to_disk(labels[i]))
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


def _rgb(path: Path, background: tuple[float, float, float]) -> np.ndarray:
    """The image at ``path`` as ``[H, W, 3]`` float32 in [0, 1]; RGBA is composited over ``background``."""
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
        array = array[..., :3] * alpha + np.asarray(background, np.float32) * (1 - alpha)
    return array.astype(np.float32)


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


def _to_views(raw: dict[str, list], root: Path, downscale: int) -> Views:
    """Stack the per-frame arrays of ``raw`` (one list per ``Views`` field; empty lists: no such maps) into
    ``Views``, every image shrunk by ``downscale``: RGB box-averaged, labels and depth sampled."""
    for i, image in enumerate(raw["images"] if downscale > 1 else []):
        h, w = image.shape[:2]
        if h % downscale or w % downscale:
            raise ValueError(f"downscale {downscale} must divide the image size {h}x{w} ({raw['names'][i]})")
        raw["images"][i] = image.reshape(h // downscale, downscale, w // downscale, downscale, 3).mean((1, 3))
        for key in ("depth", "semantic", "instance"):
            if raw[key]:
                raw[key][i] = raw[key][i][downscale // 2::downscale, downscale // 2::downscale]
        raw["intrinsics"][i] = [v / downscale for v in raw["intrinsics"][i]]
    shapes = {image.shape for image in raw["images"]}
    if len(shapes) != 1:
        raise ValueError(f"{root}: all images must have one size, found {sorted(shapes)}")
    hw = raw["images"][0].shape[:2]
    stack = lambda key, dtype: torch.from_numpy(np.stack(raw[key])).to(dtype) if raw[key] else None  # noqa: E731
    return Views(
        images=stack("images", torch.float32), c2w=stack("c2w", torch.float32),
        intrinsics=torch.tensor(raw["intrinsics"], dtype=torch.float32), names=raw["names"],
        depth=stack("depth", torch.float32), semantic=stack("semantic", torch.int64),
        instance=stack("instance", torch.int64), features=_features(root, raw["names"], hw),
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


def _read_frames(source: Path, meta: dict, background, downscale: int,
                 frames: list[tuple[int, dict]] | None = None) -> Views:
    """The views of ``frames`` (``(index, frame)`` pairs; default: all) of the transforms file ``source``."""
    root = source.parent
    raw: dict[str, list] = {k: [] for k in ("images", "c2w", "intrinsics", "names", "depth", "semantic", "instance")}
    for index, frame in enumerate(meta.get("frames", [])) if frames is None else frames:
        if "file_path" not in frame or "transform_matrix" not in frame:
            raise ValueError(f"{source}: frame {index} needs 'file_path' and 'transform_matrix'")
        path = _find_image(root, frame["file_path"], source)
        image = _rgb(path, background)
        raw["images"].append(image)
        raw["c2w"].append(_matrix(frame["transform_matrix"], source, index))
        raw["intrinsics"].append(_intrinsics(meta, frame, image.shape[1], image.shape[0], source, index))
        raw["names"].append(path.stem)
        if "depth_file_path" in frame:
            depth = root / frame["depth_file_path"]
            raw["depth"].append(np.load(depth).astype(np.float32) if depth.suffix == ".npy"
                                else _read(depth).astype(np.float32) * meta.get("depth_unit_scale_factor", 1e-3))
        for key, out in (("semantic_class_path", "semantic"), ("semantic_instance_path", "instance")):
            if key in frame:
                raw[out].append(_labels_from_disk(root / frame[key]))
    for key in ("depth", "semantic", "instance"):
        if raw[key] and len(raw[key]) != len(raw["images"]):
            raise ValueError(f"{source}: {key} is given for {len(raw[key])} of {len(raw['images'])} frames; "
                             "give it for all or none")
    return _to_views(raw, root, downscale)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _scene(root: Path, train: Views, test: Views, class_names: list[str] | None = None) -> Scene:
    """Attach ``scene.json`` metadata when present, otherwise derive names and bounds from the views: an aabb
    around the cameras, the origin and the points of every 4th depth pixel, padded; ``far`` = its diagonal."""
    info = _json(root / "scene.json") if (root / "scene.json").is_file() else {}
    if info.get("aabb") is not None:
        aabb, far = torch.tensor(info["aabb"], dtype=torch.float32), float(info.get("far", 10.0))
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
                 near=float(info.get("near", 0.05)), far=far)


def load_nerfstudio(folder: str | Path, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                    downscale: int = 1, test_every: int = 8) -> Scene:
    """Load a nerfstudio or Blender-synthetic folder.

    Splits: Blender's ``transforms_train.json`` / ``transforms_test.json`` (``transforms_val.json`` is
    used for testing when there is no test file); a single ``transforms.json`` is split by its
    ``train_filenames`` / ``test_filenames``, else by each frame's ``split`` field, else by
    :func:`split_indices` with ``test_every``. Intrinsics: ``fl_x, fl_y, cx, cy, w, h`` (top level or
    per frame) or ``camera_angle_x``; ``cx, cy`` default to the image centre. RGBA is composited over
    ``background``. ``downscale`` shrinks images by an integer factor.
    """
    root = Path(folder)
    single, blender = root / "transforms.json", root / "transforms_train.json"
    if blender.is_file():
        candidates = (root / "transforms_test.json", root / "transforms_val.json")
        test_file = next((p for p in candidates if p.is_file()), None)
        if test_file is None:
            raise FileNotFoundError(f"{root}: has transforms_train.json but no transforms_test.json or "
                                    "transforms_val.json")
        return _scene(root, *(_read_frames(path, _json(path), background, downscale) for path in (blender, test_file)))
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
    return _scene(root, *(_read_frames(single, meta, background, downscale, split) for split in (train, test)))


def load_replica(folder: str | Path, downscale: int = 1, test_every: int = 8, hfov_deg: float = 90.0) -> Scene:
    """Load a Replica sequence as rendered for Semantic-NeRF.

    Layout: ``traj_w_c.txt`` (one row-major 4x4 camera-to-world per line, OpenCV axes), ``rgb/rgb_{i}.png``,
    optional ``depth/depth_{i}.png`` (uint16 mm), ``semantic_class/semantic_class_{i}.png`` and
    ``semantic_instance/semantic_instance_{i}.png``. Pinhole with ``hfov_deg`` horizontal field of view,
    principal point at the image centre. Class ids present in any frame are remapped to ``0..C-1`` in
    increasing order (names ``class_<id on disk>``), likewise instance ids; 0 on disk is void (-1).
    Split: :func:`split_indices` with ``test_every``.
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
    optional = {"depth": "depth/depth_{}.png", "semantic": "semantic_class/semantic_class_{}.png",
                "instance": "semantic_instance/semantic_instance_{}.png"}
    for i, pose in enumerate(poses):
        path = root / "rgb" / f"rgb_{i}.png"
        image = _rgb(path, (0.0, 0.0, 0.0))
        h, w = image.shape[:2]
        f = 0.5 * w / math.tan(math.radians(hfov_deg) / 2)
        for key, value in (("images", image), ("c2w", pose), ("intrinsics", [f, f, w / 2, h / 2]),
                           ("names", path.stem)):
            raw[key].append(value)
        for key, pattern in optional.items():
            if (map_path := root / pattern.format(i)).parent.is_dir():
                array = _read(map_path)
                if array.shape != (h, w):
                    raise ValueError(f"{map_path}: expected {h}x{w} like {path}, got {array.shape}")
                raw[key].append(array.astype(np.float32) / 1000 if key == "depth" else array.astype(np.int64))
    class_ids = _remap(raw["semantic"])
    _remap(raw["instance"])
    views = _to_views(raw, root, downscale)
    train, test = split_indices(len(views), test_every)
    names = [f"class_{c}" for c in class_ids] if raw["semantic"] else []
    return _scene(root, views.subset(train), views.subset(test), class_names=names)


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


def open_scene(scene: str | Path) -> Scene:
    """``room`` -> the default procedural room; otherwise a scene folder read by ``load_scene``."""
    if str(scene) == "room":
        from priors3d.fields.scenes import RoomConfig, generate_room

        return generate_room(RoomConfig())
    path = Path(scene)
    if not path.is_dir():
        raise FileNotFoundError(f"scene must be a scene folder or 'room', got {str(scene)!r} (no such folder)")
    return load_scene(path)
