"""Lens distortion as COLMAP and nerfstudio write it (OpenCV's radial-tangential model ``k1 k2 k3 p1 p2``), and
the undistortion of images to the pinhole cameras that every ray in priors3d assumes.

Points are normalised image coordinates ``[..., 2]``: ``((u - cx) / fx, (v - cy) / fy)`` with ``u`` to the right and
``v`` down (OpenCV's image axes), pixel centres at ``u + 0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from priors3d.fields.rays import pixel_centres

DISTORTION_KEYS = ("k1", "k2", "k3", "p1", "p2")
"""The order of a ``coeffs [5]`` tensor; the names are those of nerfstudio's ``transforms.json``."""


def distort(xy: Tensor, coeffs: Tensor) -> Tensor:
    """Ideal normalised points ``[..., 2]`` -> where the lens puts them ``[..., 2]``; ``coeffs [5]``."""
    k1, k2, k3, p1, p2 = coeffs.to(xy.dtype).unbind(-1)
    x, y = xy.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return torch.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                        y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], -1)


def undistort(xy_distorted: Tensor, coeffs: Tensor, iterations: int = 12) -> Tensor:
    """The inverse of :func:`distort` by Newton's method: ``[..., 2] -> [..., 2]``.

    Raises ValueError if a point does not converge to within 1e-9 (a lens model that folds over there).
    """
    k1, k2, k3, p1, p2 = coeffs.to(xy_distorted.dtype).unbind(-1)
    xy = xy_distorted.clone()
    for _ in range(iterations):
        x, y = xy.unbind(-1)
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        slope = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
        residual = distort(xy, coeffs) - xy_distorted
        a = radial + 2 * x * x * slope + 2 * p1 * y + 6 * p2 * x  # d xd / dx
        b = 2 * x * y * slope + 2 * p1 * x + 2 * p2 * y  # d xd / dy = d yd / dx
        d = radial + 2 * y * y * slope + 6 * p1 * y + 2 * p2 * x  # d yd / dy
        det = a * d - b * b
        rx, ry = residual.unbind(-1)
        xy = xy - torch.stack([d * rx - b * ry, a * ry - b * rx], -1) / det[..., None]
    error = (distort(xy, coeffs) - xy_distorted).abs().amax() if xy.numel() else 0.0
    if not error <= 1e-9:
        raise ValueError(f"undistortion did not converge (residual {float(error):.2e}); the distortion "
                         f"coefficients {dict(zip(DISTORTION_KEYS, coeffs.tolist()))} fold the image over")
    return xy


def undistorted_intrinsics(intrinsics: Tensor, coeffs: Tensor, height: int, width: int) -> Tensor:
    """Pinhole ``(fx, fy, cx, cy)`` of the same image size whose every pixel the distorted image covers (OpenCV's
    ``getOptimalNewCameraMatrix`` with ``alpha = 0``): the largest box inside the undistorted image border."""
    fx, fy, cx, cy = intrinsics.double().tolist()
    u = torch.arange(width + 1, dtype=torch.float64)
    v = torch.arange(height + 1, dtype=torch.float64)
    edges = {"left": (torch.zeros_like(v), v), "right": (torch.full_like(v, width), v),
             "top": (u, torch.zeros_like(u)), "bottom": (u, torch.full_like(u, height))}
    ideal = {side: undistort(torch.stack([(a - cx) / fx, (b - cy) / fy], -1), coeffs.double())
             for side, (a, b) in edges.items()}
    x0, x1 = ideal["left"][:, 0].max(), ideal["right"][:, 0].min()
    y0, y1 = ideal["top"][:, 1].max(), ideal["bottom"][:, 1].min()
    new_fx, new_fy = width / (x1 - x0), height / (y1 - y0)
    return torch.stack([new_fx, new_fy, -x0 * new_fx, -y0 * new_fy]).to(intrinsics.dtype)


def undistort_image(image: Tensor, intrinsics: Tensor, coeffs: Tensor, new_intrinsics: Tensor,
                    mode: str = "bilinear") -> Tensor:
    """Resample a distorted ``image [H, W, C]`` (camera ``intrinsics [4]``, ``coeffs [5]``) as seen by the pinhole
    ``new_intrinsics [4]`` of the same size. ``mode``: ``bilinear`` (colours, depth) or ``nearest`` (labels)."""
    height, width = image.shape[:2]
    new = new_intrinsics.double()
    uv = pixel_centres(height, width, torch.float64).reshape(height, width, 2)
    xy = distort((uv - new[2:]) / new[:2], coeffs.double())
    src = xy * intrinsics[:2].double() + intrinsics[2:].double()  # pixel coordinates in the distorted image
    grid = (2 * src / torch.tensor([width, height], dtype=torch.float64) - 1).to(torch.float32)
    values = image.permute(2, 0, 1)[None].to(torch.float32)
    out = F.grid_sample(values, grid[None], mode=mode, padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).to(image.dtype)
