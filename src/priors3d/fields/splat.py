"""Differentiable Gaussian splatting on the CPU, in plain PyTorch (no custom kernels).

The image formation of 3D Gaussian splatting (Kerbl et al. 2023), written as small pure functions:

1. ``project_gaussians``: world -> camera (OpenGL axes, the camera looks down -z), the mean goes to
   pixels with the pinhole model, the covariance to a 2D covariance with the EWA local affine
   approximation ``Σ₂ = J Wᵀ Σ W Jᵀ + s I`` (Zwicker et al. 2002), where ``W`` is the camera's
   rotation (camera to world), ``J`` the Jacobian of the perspective projection at the mean and ``s``
   a low-pass filter (0.3 px² as in 3DGS).
2. ``rasterize``: Gaussians sorted front to back, every pixel centre ``p`` gets
   ``alpha_i = min(0.99, o_i exp(-½ dᵀ Σ₂⁻¹ d))`` with ``d = p - uv_i`` and

       C = Σ_i c_i alpha_i T_i,        T_i = Π_{j<i} (1 - alpha_j)

   with ``T`` from an exclusive cumulative product. The dense pixel x Gaussian block is built a chunk
   of pixels at a time to bound memory.

Nothing is written in place, so everything supports double backward and float64. By default there is
no culling and no 1/255 alpha cut-off: every Gaussian in front of the near plane reaches every pixel,
which keeps the image a smooth function of the parameters (at a cost of ``H W G``). ``cull_sigma``
switches to square tiles that see only the Gaussians whose k-sigma box meets them (3DGS uses k = 3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from priors3d.fields.rays import pixel_centres

LOWPASS = 0.3  # px², added to the 2D covariance (3DGS's anti-aliasing dilation)
MAX_ALPHA = 0.99
CHUNK_ELEMENTS = 1 << 22  # pixel x Gaussian pairs per chunk when no chunk size is given


def _check_camera(c2w: Tensor, intrinsics: Tensor) -> None:
    if c2w.shape != (4, 4):
        raise ValueError(f"c2w must be one camera-to-world [4, 4], got {list(c2w.shape)}")
    if intrinsics.shape != (4,):
        raise ValueError(f"intrinsics must be [4] (fx, fy, cx, cy), got {list(intrinsics.shape)}")


def project_gaussians(means: Tensor, covariances: Tensor, c2w: Tensor, intrinsics: Tensor,
                      height: int, width: int, lowpass: float = LOWPASS) -> tuple[Tensor, Tensor, Tensor]:
    """Project 3D Gaussians into one camera.

    Args:
        means: ``[G, 3]`` world-space centres.
        covariances: ``[G, 3, 3]`` world-space covariances.
        c2w: ``[4, 4]`` camera-to-world, OpenGL axes.
        intrinsics: ``[4]`` ``(fx, fy, cx, cy)`` in pixels (pixel ``(u, v)`` centred at ``(u+0.5, v+0.5)``).
        height, width: image size, used to clamp the Jacobian to 1.3x the field of view as in 3DGS
            (only Gaussians far outside the image are affected).
        lowpass: variance in px² added to both image axes.

    Returns:
        ``uv [G, 2]`` projected centres in continuous pixel coordinates, ``depth [G]`` z-depth in
        front of the camera (negative behind it) and ``cov2d [G, 2, 2]`` image-space covariances.
    """
    if means.ndim != 2 or means.shape[-1] != 3:
        raise ValueError(f"means must be [G, 3], got {list(means.shape)}")
    if covariances.shape != (means.shape[0], 3, 3):
        raise ValueError(f"covariances must be [G, 3, 3] = [{means.shape[0]}, 3, 3], got {list(covariances.shape)}")
    _check_camera(c2w, intrinsics)
    rot, centre = c2w[:3, :3].to(means.dtype), c2w[:3, 3].to(means.dtype)
    local = (means - centre) @ rot  # world -> camera for row vectors: Rᵀ (p - t)
    x, y, depth = local[:, 0], local[:, 1], -local[:, 2]
    fx, fy, cx, cy = intrinsics.to(means.dtype).unbind(-1)
    uv = torch.stack([fx * x / depth + cx, -fy * y / depth + cy], dim=-1)

    # Jacobian of (u, v) w.r.t. camera (x, y, z) with depth = -z, tangents clamped to 1.3x the FOV.
    lim_x = 1.3 * 0.5 * width / fx
    lim_y = 1.3 * 0.5 * height / fy
    tx = torch.maximum(torch.minimum(x / depth, lim_x), -lim_x)
    ty = torch.maximum(torch.minimum(y / depth, lim_y), -lim_y)
    zero = torch.zeros_like(depth)
    jac = torch.stack([
        torch.stack([fx / depth, zero, fx * tx / depth], dim=-1),
        torch.stack([zero, -fy / depth, -fy * ty / depth], dim=-1),
    ], dim=-2)  # [G, 2, 3]
    cov_cam = rot.T @ covariances @ rot  # Σ_cam = Rᵀ Σ R
    cov2d = jac @ cov_cam @ jac.transpose(-1, -2)
    cov2d = cov2d + lowpass * torch.eye(2, dtype=means.dtype, device=means.device)
    return uv, depth, cov2d


def inverse_2x2(cov2d: Tensor) -> Tensor:
    """Inverse ``[..., 2, 2]`` of symmetric positive-definite ``[..., 2, 2]`` matrices (the conics)."""
    a, b, c = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
    det = a * c - b * b
    return torch.stack([torch.stack([c, -b], -1), torch.stack([-b, a], -1)], -2) / det[..., None, None]


def gaussian_alphas(pixels: Tensor, uv: Tensor, conics: Tensor, opacities: Tensor) -> Tensor:
    """``alpha [P, G] = min(0.99, o exp(-½ dᵀ Σ₂⁻¹ d))`` with ``d = pixel - uv``.

    Args:
        pixels: ``[P, 2]`` pixel centres; uv: ``[G, 2]``; conics: ``[G, 2, 2]`` inverse 2D covariances;
        opacities: ``[G]`` in ``[0, 1]``.
    """
    d = pixels[:, None, :] - uv[None, :, :]  # [P, G, 2]
    dx, dy = d[..., 0], d[..., 1]
    power = -0.5 * (conics[:, 0, 0] * dx * dx + 2.0 * conics[:, 0, 1] * dx * dy + conics[:, 1, 1] * dy * dy)
    return torch.clamp(opacities * torch.exp(power), max=MAX_ALPHA)


def composite_weights(alphas: Tensor) -> Tensor:
    """Front-to-back blending weights ``alpha_i T_i`` ``[..., G]`` from ``alphas [..., G]`` (sorted near to far)."""
    transmittance = torch.cumprod(1.0 - alphas, dim=-1)
    exclusive = torch.cat([torch.ones_like(transmittance[..., :1]), transmittance[..., :-1]], dim=-1)
    return alphas * exclusive


def pixel_blocks(height: int, width: int, chunk: int, tile: int | None = None,
                 device: torch.device | str | None = None) -> list[Tensor]:
    """Row-major pixel numbers split into blocks: runs of ``chunk`` pixels, or ``tile x tile`` squares."""
    if tile is None:
        return list(torch.arange(height * width, device=device).split(chunk))
    if tile < 1:
        raise ValueError(f"tile must be >= 1 pixel, got {tile}")
    ids = torch.arange(height * width, device=device).reshape(height, width)
    return [ids[r:r + tile, c:c + tile].reshape(-1) for r in range(0, height, tile) for c in range(0, width, tile)]


def _strongest(weights: Tensor, keep: Tensor | slice) -> Tensor:
    """``[P]`` index (among all Gaussians) of the largest of ``weights [P, K]``; -1 where all are 0."""
    if weights.shape[1] == 0:
        return torch.full(weights.shape[:1], -1, dtype=torch.long, device=weights.device)
    best = weights.argmax(dim=-1)
    best = best if isinstance(keep, slice) else keep[best]
    return torch.where(weights.amax(dim=-1) > 0, best, torch.full_like(best, -1))


def rasterize(uv: Tensor, depth: Tensor, cov2d: Tensor, opacities: Tensor, colors: Tensor,
              height: int, width: int, background: Tensor | None = None, chunk: int | None = None,
              cull_sigma: float | None = None, tile: int = 16, return_index: bool = False) -> dict[str, Tensor]:
    """Blend projected Gaussians into an image; the Gaussians must already be sorted near to far.

    Args:
        uv: ``[G, 2]`` centres in pixels; depth: ``[G]`` z-depths (positive); cov2d: ``[G, 2, 2]``.
        opacities: ``[G]`` in ``[0, 1]``; colors: ``[G, C]`` (RGB or any per-Gaussian feature).
        background: ``[C]`` added with the remaining transmittance; None = black.
        chunk: pixels per dense block when not culling; None = as many as keep ``chunk * G`` near 4M.
        cull_sigma: None = exact, every Gaussian reaches every pixel. A number ``k`` = render
            ``tile x tile`` blocks, each with only the Gaussians whose ``k``-sigma bounding box meets
            it (as 3DGS's tiles with k = 3): much faster, and off by at most ``exp(-k²/2)`` per Gaussian.
        return_index: also return which Gaussian (its position in this sorted order) has the largest
            blending weight at each pixel, -1 where none contributes.

    Returns:
        dict with ``rgb [H, W, C]``, ``alpha [H, W]`` (accumulated opacity), ``depth [H, W]`` (blended
        z-depth normalised by alpha, as ``render_rays`` does) and, if asked, ``index [H, W]`` int64.
    """
    n = uv.shape[0]
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 pixel, got {chunk}")
    if cull_sigma is not None and not cull_sigma > 0:
        raise ValueError(f"cull_sigma must be > 0 or None, got {cull_sigma}")
    conics = inverse_2x2(cov2d)
    values = torch.cat([colors, depth[:, None]], dim=-1)  # [G, C + 1]: colour and depth in one product
    centres = pixel_centres(height, width, uv.dtype, uv.device)
    blocks = pixel_blocks(height, width, chunk, None if cull_sigma is None else tile, uv.device)
    if cull_sigma is not None:  # k-sigma bounding boxes of the ellipses, [G, 2] each
        reach = cull_sigma * torch.diagonal(cov2d, dim1=-2, dim2=-1).detach().sqrt()
        low, high = uv.detach() - reach, uv.detach() + reach
    blended, alphas, indices = [], [], []
    for ids in blocks:
        pixels = centres[ids]
        keep = slice(None)
        if cull_sigma is not None:
            meets = (high >= pixels.amin(dim=0)) & (low <= pixels.amax(dim=0))
            keep = torch.nonzero(meets.all(dim=-1)).squeeze(-1)  # still sorted near to far
        weights = composite_weights(gaussian_alphas(pixels, uv[keep], conics[keep], opacities[keep]))  # [P, K]
        blended.append(weights @ values[keep])
        alphas.append(weights.sum(dim=-1))
        if return_index:
            indices.append(_strongest(weights, keep))
    blended, alpha = torch.cat(blended), torch.cat(alphas)
    if cull_sigma is not None:  # tiles -> row-major pixels
        inverse = torch.argsort(torch.cat(blocks))
        blended, alpha = blended[inverse], alpha[inverse]
        indices = [torch.cat(indices)[inverse]] if return_index else indices
    rgb, acc_depth = blended[:, :-1], blended[:, -1]
    if background is not None:
        rgb = rgb + (1.0 - alpha)[:, None] * background.to(rgb.dtype)
    out = {"rgb": rgb.reshape(height, width, -1), "alpha": alpha.reshape(height, width),
           "depth": (acc_depth / alpha.clamp_min(1e-6)).reshape(height, width)}
    if return_index:
        out["index"] = torch.cat(indices).reshape(height, width)
    return out


def render_gaussians(means: Tensor, covariances: Tensor, opacities: Tensor, colors: Tensor, c2w: Tensor,
                     intrinsics: Tensor, height: int, width: int, near: float = 0.01,
                     background: Tensor | None = None, lowpass: float = LOWPASS, chunk: int | None = None,
                     cull_sigma: float | None = None, tile: int = 16, return_index: bool = False,
                     screen_offsets: Tensor | None = None) -> dict[str, Tensor]:
    """Render world-space Gaussians from one camera: project, cull, sort by depth, rasterise.

    Args:
        means: ``[G, 3]``; covariances: ``[G, 3, 3]``; opacities: ``[G]`` in ``[0, 1]``; colors: ``[G, C]``.
        c2w: ``[4, 4]`` camera-to-world (OpenGL axes); intrinsics: ``[4]`` ``(fx, fy, cx, cy)``.
        height, width: image size.
        near: Gaussians whose centre is closer than this z-depth (or behind the camera) are dropped.
        background, chunk, cull_sigma, tile: see ``rasterize``; lowpass: see ``project_gaussians``.
        return_index: also return ``index [H, W]``, the input index of the Gaussian with the largest
            blending weight at each pixel (-1 where none contributes).
        screen_offsets: ``[G, 2]`` pixels added to the projected centres. Pass zeros that require
            grad to read each Gaussian's view-space position gradient (what densification needs).

    Returns:
        dict with ``rgb [H, W, C]``, ``alpha [H, W]``, ``depth [H, W]`` and optionally ``index [H, W]``.
    """
    if means.ndim != 2 or means.shape[-1] != 3:
        raise ValueError(f"means must be [G, 3], got {list(means.shape)}")
    g = means.shape[0]
    if opacities.shape != (g,):
        raise ValueError(f"opacities must be [G] = [{g}], got {list(opacities.shape)}")
    if colors.ndim != 2 or colors.shape[0] != g:
        raise ValueError(f"colors must be [G, C] with G = {g}, got {list(colors.shape)}")
    _check_camera(c2w, intrinsics)
    if screen_offsets is not None and screen_offsets.shape != (g, 2):
        raise ValueError(f"screen_offsets must be [G, 2] = [{g}, 2], got {list(screen_offsets.shape)}")
    # Cull behind the near plane before projecting (no division by ~0 depths, even in the backward pass),
    # then sort front to back (stable, so ties keep input order).
    z = (c2w[:3, 3].to(means.dtype) - means.detach()) @ c2w[:3, 2].to(means.dtype)  # z-depth: -(Rᵀ(p - t))_z
    kept = torch.nonzero(z > near).squeeze(-1)
    order = kept[torch.argsort(z[kept], stable=True)]
    uv, depth, cov2d = project_gaussians(means[order], covariances[order], c2w, intrinsics, height, width, lowpass)
    if screen_offsets is not None:
        uv = uv + screen_offsets[order]
    out = rasterize(uv, depth, cov2d, opacities[order], colors[order],
                    height, width, background, chunk, cull_sigma, tile, return_index)
    if return_index and order.numel():
        index = out["index"]
        out["index"] = torch.where(index >= 0, order[index.clamp_min(0)], index)
    return out
