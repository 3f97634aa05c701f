"""Camera rays: one ray through each pixel centre, projection back to pixels, and ray-box bounds.

Cameras follow the shared conventions: camera-to-world ``[V, 4, 4]`` in OpenGL axes (x right, y up,
looking down -z) and intrinsics ``(fx, fy, cx, cy)`` in pixels, pixel ``(u, v)`` centred at
``(u + 0.5, v + 0.5)`` with ``v`` counted downwards from the top row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from priors3d.fields.views import Scene, Views


def _check_cameras(c2w: Tensor, intrinsics: Tensor) -> None:
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"c2w must be [V, 4, 4], got {list(c2w.shape)}")
    if intrinsics.shape != (c2w.shape[0], 4):
        raise ValueError(f"intrinsics must be [V, 4] = [{c2w.shape[0]}, 4] (fx, fy, cx, cy), "
                         f"got {list(intrinsics.shape)}")


def pixel_centres(height: int, width: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Tensor:
    """Continuous coordinates ``[H * W, 2]`` ``(u + 0.5, v + 0.5)`` of every pixel, row-major."""
    v = torch.arange(height, dtype=dtype, device=device) + 0.5
    u = torch.arange(width, dtype=dtype, device=device) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1).reshape(-1, 2)


def camera_rays(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Rays through every pixel centre.

    Args:
        c2w: ``[V, 4, 4]`` camera-to-world, OpenGL axes.
        intrinsics: ``[V, 4]`` ``(fx, fy, cx, cy)`` in pixels.
        height, width: image size ``H, W``.

    Returns:
        origins ``[V, H, W, 3]`` and unit directions ``[V, H, W, 3]`` in world space.
    """
    _check_cameras(c2w, intrinsics)
    uv = pixel_centres(height, width, c2w.dtype, c2w.device).reshape(height, width, 2)
    return pixel_rays(c2w[:, None, None], intrinsics[:, None, None], uv)


def pixel_rays(c2w: Tensor, intrinsics: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through continuous pixel positions ``uv [..., 2]`` (pixel ``(u, v)`` covers ``[u, u+1) x [v, v+1)``) of
    cameras ``c2w [..., 4, 4]`` with ``intrinsics [..., 4]`` (leading dimensions broadcast): origins and unit
    directions ``[..., 3]`` in world space."""
    fx, fy, cx, cy = intrinsics.to(c2w.dtype).unbind(-1)
    u, v = uv.to(c2w.dtype).unbind(-1)
    # Image rows go down, camera y goes up; the camera looks along -z.
    dirs_cam = torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u - cx)], dim=-1)
    dirs = torch.einsum("...j,...ij->...i", dirs_cam, c2w[..., :3, :3])
    return c2w[..., :3, 3].expand_as(dirs), dirs / dirs.norm(dim=-1, keepdim=True)


def views_rays(views: Views) -> tuple[Tensor, Tensor]:
    """``camera_rays`` for every view of ``views``: origins and directions ``[V, H, W, 3]``."""
    height, width = views.hw
    return camera_rays(views.c2w, views.intrinsics, height, width)


def project_points(points: Tensor, c2w: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points into one camera.

    Args:
        points: ``[N, 3]`` world points.
        c2w: ``[4, 4]`` camera-to-world, OpenGL axes.
        intrinsics: ``[4]`` ``(fx, fy, cx, cy)``.

    Returns:
        ``uv`` ``[N, 2]`` continuous pixel coordinates (pixel ``(u, v)`` covers ``[u, u+1) x [v, v+1)``)
        and ``z`` ``[N]`` depth along the viewing axis (positive in front of the camera).
    """
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be [N, 3], got {list(points.shape)}")
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    local = (points - centre) @ rot  # world -> camera: R^T (p - t), as row vectors
    z = -local[:, 2]
    fx, fy, cx, cy = intrinsics.unbind(-1)
    uv = torch.stack([fx * local[:, 0] / z + cx, -fy * local[:, 1] / z + cy], dim=-1)
    return uv, z


def ray_aabb(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where rays enter and leave an axis-aligned box (slab method).

    Args:
        origins, directions: ``[..., 3]`` (directions need not be unit; ``t`` is in their units).
        aabb: ``[2, 3]`` box (min corner, max corner).

    Returns:
        ``t_near [...]``, ``t_far [...]`` (``t_near`` clamped to >= 0, so a ray starting inside the
        box enters at 0) and ``hit [...]`` bool, true where the ray meets the box in front of its origin.
    """
    if aabb.shape != (2, 3):
        raise ValueError(f"aabb must be [2, 3] (min, max corners), got {list(aabb.shape)}")
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far, t_far > t_near


def scene_aabb(scene: Scene) -> Tensor:
    """``[2, 3]`` box of the scene: ``scene.aabb``, or the box of the train cameras' centres."""
    if scene.aabb is not None:
        return scene.aabb.float().reshape(2, 3)
    centres = scene.train.c2w[:, :3, 3]
    return torch.stack([centres.amin(0), centres.amax(0)])


def ray_bounds(origins: Tensor, directions: Tensor, aabb: Tensor, near: float, far: float) -> tuple[Tensor, Tensor]:
    """``near [...]``, ``far [...]`` of rays ``[..., 3]``: the box interval clipped to ``[near, far]``.

    Rays that miss the box get ``near == far`` (an empty ray that renders the background).
    """
    t_near, t_far, hit = ray_aabb(origins, directions, aabb)
    t_near = t_near.clamp(min=near)
    t_far = torch.where(hit, t_far.clamp(max=far), t_near)
    return t_near, torch.maximum(t_far, t_near)


def inward_box(views: Views, max_miss: float = 0.2) -> tuple[Tensor, float, float] | None:
    """The box that cameras looking inward at one point (an object capture) all look at, or None.

    The point is the least-squares meeting point of the optical axes; the capture counts as inward when the axes
    pass it at an rms distance below ``max_miss`` times the median camera distance ``d``. The box is the cube of
    half-side ``1.1 d tan(fov_x / 2)`` around it (what the median camera frames at that distance; 1.59 for the
    NeRF-synthetic cameras), with ray bounds ``near, far = d_min - r, d_max + r`` (``r`` = its half-diagonal).

    Returns:
        ``aabb [2, 3]``, near, far; or None when the cameras do not look at one point.
    """
    origins, forward = views.c2w[:, :3, 3].double(), -views.c2w[:, :3, 2].double()
    forward = forward / forward.norm(dim=-1, keepdim=True)
    across = torch.eye(3, dtype=torch.float64) - forward[:, :, None] * forward[:, None, :]  # [V, 3, 3]
    point = torch.linalg.lstsq(across.sum(0), (across @ origins[:, :, None]).sum(0)).solution[:, 0]
    offset = point - origins
    ahead = (offset * forward).sum(-1)
    miss = (across @ offset[:, :, None])[..., 0].norm(dim=-1)
    distance = offset.norm(dim=-1)
    if (ahead <= 0).any() or miss.square().mean().sqrt() > max_miss * distance.median():
        return None
    width = views.hw[1]
    half_fov_tan = (0.5 * width / views.intrinsics[:, 0].double()).median()
    half = 1.1 * distance.median() * half_fov_tan
    aabb = torch.stack([point - half, point + half]).float()
    reach = float(half) * 3**0.5
    return aabb, max(0.05, float(distance.min()) - reach), float(distance.max()) + reach
