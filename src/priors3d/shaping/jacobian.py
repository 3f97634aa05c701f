"""Jacobians of rendered colours with respect to a parameter subset ``theta_D`` (JacobiNeRF).

For a pixel ``p`` with rendered grey value ``I_p(theta)``, its Jacobian is ``J_p = dI_p / dtheta_D``
flattened to a vector of ``P`` numbers. Pixels whose Jacobians point the same way respond together
when ``theta_D`` moves: JacobiNeRF shapes a field so that this happens for pixels of the same
object. Everything here is ``torch.func.vmap`` of ``torch.func.grad`` over single rays (or
points), so a whole batch is one vectorised call and the result stays differentiable with respect
to every parameter of the field (a loss on Jacobians trains the whole field).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from priors3d.fields.render import render_rays


def grey(rgb: Tensor, channel: int | None = None) -> Tensor:
    """``[..., 3] -> [...]``: the mean of R, G, B, or one channel when ``channel`` is 0, 1 or 2."""
    if channel is None:
        return rgb.mean(dim=-1)
    if channel not in (0, 1, 2):
        raise ValueError(f"channel must be None (grey) or 0, 1, 2 (R, G, B), got {channel}")
    return rgb[..., channel]


def parameter_subset(model: nn.Module, names: tuple[str, ...] | list[str] | None = None) -> dict[str, Tensor]:
    """The named parameters ``theta_D`` of ``model``; by default ``model.shaping_parameter_names()`` (a NeRF's
    shaping head, when it has one) or ``model.rgb_head_parameter_names()`` (the last layer of the RGB branch)."""
    default = getattr(model, "shaping_parameter_names", getattr(model, "rgb_head_parameter_names", None))
    if names is None and default is None:
        raise ValueError(f"{type(model).__name__} has no rgb_head_parameter_names(); pass names explicitly")
    names = tuple(default() if names is None else names)
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing or not names:
        raise ValueError(f"unknown parameter names {missing or names}; expected some of {sorted(params)}")
    return {n: params[n] for n in names}


def flatten(tensors: dict[str, Tensor], batch_dims: int = 0) -> Tensor:
    """Concatenate ``{name: [*B, *shape]}`` into ``[*B, P]`` (``batch_dims`` leading dimensions kept)."""
    return torch.cat([t.reshape(*t.shape[:batch_dims], -1) for t in tensors.values()], dim=-1)


def unflatten(vector: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of ``flatten`` for one vector ``[P]``: a dict shaped like ``like``."""
    sizes = [t.numel() for t in like.values()]
    if vector.shape != (sum(sizes),):
        raise ValueError(f"vector must be [{sum(sizes)}] to match the parameter subset, got {list(vector.shape)}")
    return {name: c.reshape(t.shape) for (name, t), c in zip(like.items(), torch.split(vector, sizes))}


def pixel_jacobians(model: nn.Module, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor,
                    n_samples: int = 32, n_proposal: int = 0, proposal=None, background: Tensor | None = None,
                    names: tuple[str, ...] | None = None, channel: int | None = None,
                    inner: Tensor | None = None, skip: float = 0.0) -> Tensor:
    """Jacobians ``[R, P]`` of the rendered grey value of each ray with respect to ``theta_D``.

    Differentiable: the result has a graph back to every parameter of ``model`` (``theta_D``
    included), so a loss on it trains the field. Rays are rendered deterministically (no jitter)
    exactly as ``render_rays`` does with the same sampling options.

    Args:
        rays_o, rays_d: ``[R, 3]``; near, far: ``[R]``.
        names: the parameter subset ``theta_D`` (default ``model.rgb_head_parameter_names()``).
        channel: None for the grey value (mean of RGB), or 0, 1, 2 for one channel.
    """
    if rays_o.ndim != 2 or rays_o.shape[-1] != 3:
        raise ValueError(f"rays_o must be [R, 3], got {list(rays_o.shape)}")
    theta = parameter_subset(model, names)

    def value(params: dict[str, Tensor], o: Tensor, d: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
        return grey(render_rays(model, o, d, t0, t1, n_samples, n_proposal, proposal=proposal, background=background,
                                params=params, inner=inner, skip=skip)["rgb"], channel)

    grads = vmap(grad(value), in_dims=(None, 0, 0, 0, 0))(theta, rays_o, rays_d, near, far)
    return flatten(grads, batch_dims=1)


def pixel_jacobians_chunked(model: nn.Module, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor,
                            chunk: int = 2048, **kwargs) -> Tensor:
    """``pixel_jacobians`` for inference: chunks of ``chunk`` rays, no graph kept. Returns ``[R, P]``."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    with torch.no_grad():
        parts = [pixel_jacobians(model, *(t[i:i + chunk] for t in (rays_o, rays_d, near, far)), **kwargs).detach()
                 for i in range(0, rays_o.shape[0], chunk)]
    return torch.cat(parts) if parts else rays_o.new_zeros(0, 0)


def point_jacobians(model: nn.Module, positions: Tensor, directions: Tensor,
                    names: tuple[str, ...] | None = None, channel: int | None = None) -> Tensor:
    """Jacobians ``[N, P]`` of the colour of 3D points (grey, or one channel) with respect to ``theta_D``.

    Args:
        positions: ``[N, 3]`` world points (samples along rays, or depth-lifted surface points).
        directions: ``[N, 3]`` unit viewing directions the colours are seen from.
    """
    if positions.ndim != 2 or positions.shape[-1] != 3 or directions.shape != positions.shape:
        raise ValueError(f"positions and directions must both be [N, 3], got {list(positions.shape)} "
                         f"and {list(directions.shape)}")
    theta = parameter_subset(model, names)

    def value(params: dict[str, Tensor], x: Tensor, d: Tensor) -> Tensor:
        _, rgb = torch.func.functional_call(model, params, (x[None], d[None]))
        return grey(rgb[0], channel)

    grads = vmap(grad(value), in_dims=(None, 0, 0))(theta, positions, directions)
    return flatten(grads, batch_dims=1)


def loop_pixel_jacobians(model: nn.Module, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor,
                         n_samples: int = 32, n_proposal: int = 0, proposal=None, background: Tensor | None = None,
                         names: tuple[str, ...] | None = None, channel: int | None = None,
                         create_graph: bool = False, inner: Tensor | None = None, skip: float = 0.0) -> Tensor:
    """The reference implementation's way: one ``torch.autograd.grad`` call per pixel. ``[R, P]``.

    Kept as the ground truth for tests and the speed benchmark (``bench/shaping_speed.py``).
    """
    theta = parameter_subset(model, names)
    values = grey(render_rays(model, rays_o, rays_d, near, far, n_samples, n_proposal, proposal=proposal,
                              background=background, inner=inner, skip=skip)["rgb"], channel)
    rows = []
    for r in range(values.shape[0]):
        g = torch.autograd.grad(values[r], list(theta.values()), retain_graph=True, create_graph=create_graph)
        rows.append(torch.cat([x.reshape(-1) for x in g]))
    return torch.stack(rows)
