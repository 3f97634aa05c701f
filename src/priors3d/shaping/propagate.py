"""Label propagation through Jacobians: from a few clicked pixels to every pixel of every view.

Three responses of a target pixel ``p`` to a class ``k`` whose clicks have the (mean, unit)
Jacobian ``J_k``; the label is the argmax over classes, or -1 where no response reaches
``min_response``:

- perturb-and-render: move ``theta_D`` by ``sigma * J_k`` and render again; response ``|I_k - I|``.
- first order (no re-rendering): ``|cos(J_p, J_k)|`` from the target pixel's own Jacobian (the
  MAP rule of JacobiNeRF: ``argmax_k`` of the gradient cosine); the first-order Taylor term of
  the perturbation above, divided by ``||J_p||``.
- 3D: the first-order response of every sample along the ray, volume-rendered with the ray's weights.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from priors3d.fields.rays import views_rays
from priors3d.fields.render import FieldSetup, render_nerf_views, render_rays
from priors3d.fields.views import Views
from priors3d.shaping.clicks import Click
from priors3d.shaping.jacobian import (flatten, grey, parameter_subset, pixel_jacobians_chunked, point_jacobians,
                                       unflatten)


def view_rays(views: Views, setup: FieldSetup) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rays of every pixel: origins, directions ``[V, H*W, 3]`` and bounds near, far ``[V, H*W]``."""
    origins, directions = views_rays(views)
    o, d = origins.flatten(1, 2), directions.flatten(1, 2)
    return (o, d, *setup.bounds(o, d))


def map_rays(views: Views, setup: FieldSetup, fn: Callable[..., Tensor], chunk: int, desc: str = "",
             progress: bool = False) -> Tensor:
    """``[V, H, W, K]``: ``fn(o [R, 3], d [R, 3], near [R], far [R]) -> [R, K]`` over every pixel's ray of
    ``views``, ``chunk`` rays of one view at a time."""
    rays = view_rays(views, setup)
    out = [torch.cat([fn(*(r[v, i:i + chunk] for r in rays)) for i in range(0, rays[0].shape[1], chunk)])
           for v in tqdm(range(len(views)), desc=desc, disable=not progress, leave=False)]
    return torch.stack(out).reshape(len(views), *views.hw, -1)


def render_grey(model: nn.Module, setup: FieldSetup, views: Views, params: dict[str, Tensor] | None = None,
                channel: int | None = None, rgb: bool = False) -> Tensor:
    """Grey images ``[V, H, W]`` (or colour ``[V, H, W, 3]`` with ``rgb``), optionally with ``params`` swapped in."""
    images = torch.stack([r["rgb"] for r in render_nerf_views(model, views, setup, params=params)])
    return images if rgb else grey(images, channel)


def view_jacobians(model: nn.Module, setup: FieldSetup, views: Views, chunk: int = 2048,
                   names: tuple[str, ...] | None = None, channel: int | None = None,
                   progress: bool = False) -> Tensor:
    """Jacobians of every pixel of every view: ``[V, H, W, P]`` (no graph)."""
    return map_rays(views, setup, partial(pixel_jacobians_chunked, model, chunk=chunk, names=names, channel=channel,
                                          **setup.sampling(model)), chunk, "jacobians", progress)


def click_rays(views: Views, setup: FieldSetup, clicks: list[Click]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Origins, directions ``[M, 3]`` and near/far ``[M]`` of the clicked pixels' rays."""
    if not clicks:
        raise ValueError("need at least one click (view/x/y/class)")
    for click in clicks:
        click.check(views)
    v = torch.tensor([c.view for c in clicks])
    i = torch.tensor([c.y * views.hw[1] + c.x for c in clicks])
    return tuple(r[v, i] for r in view_rays(views, setup))


def click_jacobians(model: nn.Module, setup: FieldSetup, views: Views, clicks: list[Click],
                    names: tuple[str, ...] | None = None, channel: int | None = None) -> Tensor:
    """Jacobians ``[M, P]`` of the clicked pixels."""
    return pixel_jacobians_chunked(model, *click_rays(views, setup, clicks), names=names, channel=channel,
                                   **setup.sampling(model))


def prototypes(jacobians: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Per-class mean of unit Jacobians ``[K, P]`` (zero rows for classes without clicks).

    Args:
        jacobians: ``[M, P]`` click Jacobians; labels: ``[M]`` their classes.
    """
    if jacobians.ndim != 2 or labels.shape != jacobians.shape[:1]:
        raise ValueError(f"jacobians must be [M, P] and labels [M], got {list(jacobians.shape)} and "
                         f"{list(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"click labels must be in 0..{n_classes - 1}, got {labels.unique().tolist()}")
    unit = F.normalize(jacobians, dim=-1)
    sums = torch.zeros(n_classes, jacobians.shape[1], dtype=jacobians.dtype).index_add_(0, labels, unit)
    counts = torch.bincount(labels, minlength=n_classes).clamp_min(1).to(jacobians.dtype)
    return sums / counts[:, None]


def argmax_labels(responses: Tensor, active: Tensor, min_response: float = 0.0) -> Tensor:
    """``[..., K] -> [...]`` labels: argmax over the ``active [K]`` classes, -1 below ``min_response``."""
    best, labels = responses.masked_fill(~active, float("-inf")).max(dim=-1)
    return torch.where(best >= min_response, labels, torch.full_like(labels, -1))


def first_order_responses(jacobians: Tensor, protos: Tensor) -> Tensor:
    """``|cos(J_p, J_k)|``: ``[..., P]`` target Jacobians and ``[K, P]`` prototypes -> ``[..., K]``."""
    return (F.normalize(jacobians, dim=-1) @ F.normalize(protos, dim=-1).T).abs()


def perturb_responses(model: nn.Module, setup: FieldSetup, views: Views, protos: Tensor, sigma: float = 1.0,
                      names: tuple[str, ...] | None = None, channel: int | None = None,
                      progress: bool = False) -> Tensor:
    """``|I_k - I|`` ``[V, H, W, K]``: render with ``theta_D + sigma * J_k / ||J_k||`` for each class ``k``.

    Classes with a zero prototype get zero response.
    """
    theta = {n: t.detach() for n, t in parameter_subset(model, names).items()}
    base = flatten(theta)
    reference = render_grey(model, setup, views, channel=channel)
    out = []
    for k in tqdm(range(protos.shape[0]), desc="perturb", disable=not progress, leave=False):
        norm = protos[k].norm()
        if float(norm) == 0.0:
            out.append(torch.zeros_like(reference))
            continue
        moved = unflatten(base + sigma * protos[k] / norm, theta)
        out.append((render_grey(model, setup, views, params=moved, channel=channel) - reference).abs())
    return torch.stack(out, dim=-1)


def volume_responses(model: nn.Module, setup: FieldSetup, views: Views, point_protos: Tensor, chunk: int = 256,
                     names: tuple[str, ...] | None = None, channel: int | None = None,
                     progress: bool = False) -> Tensor:
    """3D responses ``[V, H, W, K]``: ``sum_s w_s |cos(J_s, J_k)|`` over the samples ``s`` of each ray.

    Args:
        point_protos: ``[K, P]`` prototypes built from ``point_jacobians`` of the clicked surface points
            (see ``click_point_jacobians``).
    """
    kwargs = setup.sampling(model)
    unit_protos = F.normalize(point_protos, dim=-1)

    def responses(o: Tensor, d: Tensor, near: Tensor, far: Tensor) -> Tensor:
        with torch.no_grad():
            r = render_rays(model, o, d, near, far, **kwargs)
            mids = 0.5 * (r["t_starts"] + r["t_ends"])  # [R, S]
            points = o[:, None] + mids[..., None] * d[:, None]
            dirs = d[:, None].expand_as(points)
            jac = point_jacobians(model, points.reshape(-1, 3), dirs.reshape(-1, 3), names, channel)
        cos = (F.normalize(jac, dim=-1) @ unit_protos.T).abs().reshape(*mids.shape, -1)  # [R, S, K]
        return (r["weights"][..., None] * cos).sum(dim=1)

    return map_rays(views, setup, responses, chunk, "3d responses", progress)


def click_point_jacobians(model: nn.Module, setup: FieldSetup, views: Views, clicks: list[Click],
                          names: tuple[str, ...] | None = None, channel: int | None = None) -> Tensor:
    """Jacobians ``[M, P]`` of the clicked pixels' surface points (rendered depth lifted along the ray)."""
    o, d, near, far = click_rays(views, setup, clicks)
    with torch.no_grad():
        depth = render_rays(model, o, d, near, far, **setup.sampling(model))["depth"]
        return point_jacobians(model, o + depth[:, None] * d, d, names, channel)
