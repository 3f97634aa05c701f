"""A field of 3D Gaussians: parameters, covariances, initialisation, and rendering through ``splat``.

Each Gaussian has a mean ``[3]``, log scales ``[3]``, a rotation quaternion ``(w, x, y, z)``, an opacity
logit and a colour; its covariance is ``Σ = R S Sᵀ Rᵀ`` with ``S = diag(exp(log_scales))`` and ``R`` the
rotation of the normalised quaternion (so the stored quaternion need not stay unit while fitting).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from priors3d.fields.rays import pixel_centres
from priors3d.fields.splat import render_gaussians
from priors3d.fields.views import Views

ATTRIBUTES = ("means", "log_scales", "quaternions", "opacity_logits", "colors")  # the parameters, in this order


def quaternion_to_matrix(quaternions: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` (acting on column vectors) of quaternions ``[..., 4]`` ``(w, x, y, z)``.

    The quaternions are normalised first; ``q`` and ``-q`` give the same rotation.
    """
    if quaternions.shape[-1] != 4:
        raise ValueError(f"quaternions must be [..., 4] (w, x, y, z), got {list(quaternions.shape)}")
    w, x, y, z = (quaternions / quaternions.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def covariance_from_scales(log_scales: Tensor, quaternions: Tensor) -> Tensor:
    """Covariances ``Σ = R S Sᵀ Rᵀ`` ``[G, 3, 3]`` from ``log_scales [G, 3]`` and ``quaternions [G, 4]``."""
    if log_scales.shape[-1] != 3 or log_scales.shape[:-1] != quaternions.shape[:-1]:
        raise ValueError(f"log_scales must be [G, 3] matching quaternions [G, 4], got "
                         f"{list(log_scales.shape)} and {list(quaternions.shape)}")
    m = quaternion_to_matrix(quaternions) * torch.exp(log_scales)[..., None, :]  # R S
    return m @ m.transpose(-1, -2)


def backproject_depth(views: Views, stride: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """World points of every ``stride``-th pixel with known depth (> 0) in every view.

    Returns:
        ``points [N, 3]``, their pixel colours ``[N, 3]`` and pixel footprints ``[N]`` (the width in
        metres of ``stride`` pixels at that depth, ``stride * depth / fx``).
    """
    if views.depth is None:
        raise ValueError("views.depth is required to initialise Gaussians from depth maps")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    depth = views.depth[:, ::stride, ::stride]  # [V, h, w]
    uu, vv = pixel_centres(*views.hw, depth.dtype).reshape(*views.hw, 2)[::stride, ::stride].unbind(-1)  # [h, w]
    fx, fy, cx, cy = (views.intrinsics[:, i, None, None].to(depth.dtype) for i in range(4))  # [V, 1, 1]
    # Camera axes are OpenGL: image rows go down, camera y up, the camera looks along -z.
    local = torch.stack([(uu - cx) / fx * depth, -(vv - cy) / fy * depth, -depth], dim=-1)  # [V, h, w, 3]
    rot, centre = views.c2w[:, :3, :3].to(depth.dtype), views.c2w[:, :3, 3].to(depth.dtype)
    world = torch.einsum("vhwj,vij->vhwi", local, rot) + centre[:, None, None, :]
    known = depth > 0
    colours = views.images[:, ::stride, ::stride]
    footprint = stride * depth / fx
    return world[known], colours[known], footprint[known]


class GaussianField(nn.Module):
    """Learnable 3D Gaussians.

    Parameters: ``means [G, 3]``, ``log_scales [G, 3]``, ``quaternions [G, 4]`` ``(w, x, y, z)``,
    ``opacity_logits [G]`` (opacity = sigmoid) and ``colors [G, C]`` (used as they are).
    """

    def __init__(self, means: Tensor, log_scales: Tensor, quaternions: Tensor, opacity_logits: Tensor,
                 colors: Tensor) -> None:
        super().__init__()
        g = means.shape[0]
        expect = {"means": (means, (g, 3)), "log_scales": (log_scales, (g, 3)),
                  "quaternions": (quaternions, (g, 4)), "opacity_logits": (opacity_logits, (g,))}
        for name, (value, shape) in expect.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must be {list(shape)} for G = {g} Gaussians, got {list(value.shape)}")
        if colors.ndim != 2 or colors.shape[0] != g:
            raise ValueError(f"colors must be [G, C] with G = {g}, got {list(colors.shape)}")
        for name, value in zip(ATTRIBUTES, (means, log_scales, quaternions, opacity_logits, colors)):
            setattr(self, name, nn.Parameter(value.clone()))

    def __len__(self) -> int:
        return self.means.shape[0]

    @classmethod
    def isotropic(cls, means: Tensor, scales: Tensor, colors: Tensor, opacity: float = 0.1) -> "GaussianField":
        """Round Gaussians at ``means [G, 3]`` with std ``scales [G]``, identity rotations, one opacity."""
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {opacity}")
        g = means.shape[0]
        quaternions = torch.zeros(g, 4, dtype=means.dtype)
        quaternions[:, 0] = 1.0
        logits = torch.full((g,), math.log(opacity / (1.0 - opacity)), dtype=means.dtype)
        log_scales = torch.log(scales.to(means.dtype))[:, None].expand(g, 3)
        return cls(means, log_scales, quaternions, logits, colors.to(means.dtype))

    @classmethod
    def from_depth(cls, views: Views, stride: int = 4, opacity: float = 0.1) -> "GaussianField":
        """One Gaussian per ``stride``-th pixel with known depth, coloured like its pixel, as wide as
        ``stride`` pixels at its depth (``backproject_depth``)."""
        points, colours, footprint = backproject_depth(views, stride)
        if points.shape[0] == 0:
            raise ValueError("views.depth has no pixel with depth > 0 to initialise Gaussians from")
        return cls.isotropic(points, footprint, colours, opacity)

    @classmethod
    def from_box(cls, aabb: Tensor, n: int, generator: torch.Generator | None = None,
                 opacity: float = 0.1) -> "GaussianField":
        """``n`` Gaussians uniformly in the box ``aabb [2, 3]``, random colours, std the mean spacing
        ``(box volume / n)^(1/3)`` divided by 2."""
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"aabb must be [2, 3] (min, max corners) with max > min, got {aabb.tolist()}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not aabb.is_floating_point():
            aabb = aabb.float()
        extent = aabb[1] - aabb[0]
        means = aabb[0] + extent * torch.rand(n, 3, generator=generator, dtype=aabb.dtype)
        colours = torch.rand(n, 3, generator=generator, dtype=aabb.dtype)
        spacing = (extent.prod() / n) ** (1.0 / 3.0)
        return cls.isotropic(means, torch.full((n,), 0.5 * float(spacing), dtype=aabb.dtype), colours, opacity)

    def covariances(self) -> Tensor:
        """``[G, 3, 3]`` world-space covariances."""
        return covariance_from_scales(self.log_scales, self.quaternions)

    def opacities(self) -> Tensor:
        """``[G]`` opacities in ``(0, 1)``."""
        return torch.sigmoid(self.opacity_logits)

    def forward(self, c2w: Tensor, intrinsics: Tensor, height: int, width: int, **options) -> dict[str, Tensor]:
        """Render one camera (``c2w [4, 4]``, ``intrinsics [4]``); ``options`` and the returned dict are
        those of ``splat.render_gaussians``."""
        return render_gaussians(self.means, self.covariances(), self.opacities(), self.colors, c2w, intrinsics,
                                height, width, **options)
