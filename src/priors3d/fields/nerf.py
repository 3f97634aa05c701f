"""A radiance field built to train in minutes on a CPU.

Positions are encoded by trilinear look-ups (``F.grid_sample``) in a few dense feature grids of
increasing resolution spanning the scene box (a dense cousin of Instant-NGP's multiresolution hash
encoding: on a CPU a dense grid's look-up and gradient are plain strided memory access). A small
density trunk maps the features to a density and a geometry feature; the RGB branch takes the
geometry feature and a frequency encoding of the view direction. A coarse cached density grid
(a buffer refreshed from the field during training, as Instant-NGP's occupancy grid) proposes where
along a ray to sample, at the cost of a look-up instead of a network pass.

Made for ``torch.func``: no BatchNorm, no in-place writes, any leading batch shape, so the
Jacobian of a rendered colour with respect to ``rgb_head_parameter_names()`` can be taken with
``vmap(grad(...))`` and trained through.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class NeRFConfig:
    """Architecture of ``NeRF`` (stored in checkpoints to rebuild the field).

    Attributes:
        aabb: scene box ``(xmin, ymin, zmin, xmax, ymax, zmax)``; the grids span it.
        resolutions: cells along the longest box side, one entry per grid level; shorter sides get
            proportionally fewer cells.
        features: feature channels per level.
        hidden: width of the density trunk and the RGB branch.
        geo_features: geometry feature passed from the trunk to the RGB branch.
        dir_frequencies: frequency bands of the view-direction encoding.
        init_scale: grid features start uniform in ``[-init_scale, init_scale]``.
        density_grid: cells along the longest box side of the cached density grid that proposes
            where to sample (``grid_density``, ``update_density_grid``).
        shaping_features: outputs of the shaping head (0 = none; see ``add_shaping_head``).
        contract: an unbounded scene: ``aabb`` is the inner box, kept as it is on the inner half of each grid,
            and everything outside is contracted into the outer half (``contract``).
    """

    aabb: tuple[float, float, float, float, float, float] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    resolutions: tuple[int, ...] = (16, 32, 64, 96)
    features: int = 4
    hidden: int = 64
    geo_features: int = 15
    dir_frequencies: int = 4
    init_scale: float = 1e-4
    density_grid: int = 64
    shaping_features: int = 0
    contract: bool = False


def positional_encoding(x: Tensor, n_frequencies: int) -> Tensor:
    """``[..., D] -> [..., D * (1 + 2 * n_frequencies)]``: ``x``, then ``sin(2^k π x)``, then
    ``cos(2^k π x)`` for ``k < n_frequencies`` (frequency-major, coordinate-minor)."""
    if n_frequencies == 0:
        return x
    scales = (2.0 ** torch.arange(n_frequencies, dtype=x.dtype, device=x.device)) * math.pi
    angles = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


def contract(unit: Tensor) -> Tensor:
    """Scene contraction (mip-NeRF 360, with the max-norm as grid methods use it): box coordinates ``[..., 3]``
    (the inner box is ``[-1, 1]^3``) -> ``[-1, 1]^3``; the inner box fills ``[-0.5, 0.5]^3`` unchanged but
    for the factor 1/2, and a point at max-norm ``r > 1`` lands at ``(2 - 1/r) / 2``."""
    norm = unit.abs().amax(dim=-1, keepdim=True)
    outside = (2.0 - 1.0 / norm.clamp_min(1.0)) * unit / norm.clamp_min(1.0)
    return 0.5 * torch.where(norm <= 1.0, unit, outside)


def grid_features(grids: list[Tensor], unit: Tensor) -> Tensor:
    """Trilinear look-up in dense grids.

    Args:
        grids: per level ``[1, C, Dz, Dy, Dx]`` features on the box corners (``align_corners``).
        unit: ``[N, 3]`` positions in ``[-1, 1]^3`` (x, y, z); outside gives zeros.

    Returns:
        ``[N, L * C]`` concatenated features of the ``L`` levels.
    """
    coords = unit.reshape(1, 1, 1, -1, 3)
    looked_up = [F.grid_sample(g, coords, mode="bilinear", padding_mode="zeros", align_corners=True)
                 for g in grids]  # each [1, C, 1, 1, N]
    return torch.cat([f.reshape(f.shape[1], -1) for f in looked_up], dim=0).transpose(0, 1)


class NeRF(nn.Module):
    """Dense multiresolution grids + density trunk + view-dependent RGB branch.

    ``field(positions [..., 3], directions [..., 3] | None) -> (sigma [...], rgb [..., 3] | None)``;
    ``directions`` may be any shape that broadcasts to ``positions`` (e.g. ``[R, 1, 3]`` per ray).
    Density is ``exp`` of the trunk output (capped at ``exp(15)``), zero outside the box.
    """

    def __init__(self, config: NeRFConfig | None = None):
        super().__init__()
        self.config = config = config or NeRFConfig()
        if len(config.aabb) != 6:
            raise ValueError(f"aabb must have 6 numbers (min xyz, max xyz), got {config.aabb}")
        aabb = torch.tensor(config.aabb, dtype=torch.float32).reshape(2, 3)
        if not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"aabb max corner must exceed min corner, got {config.aabb}")
        self.register_buffer("aabb", aabb)
        self.grids = nn.ParameterList()
        for res in config.resolutions:
            grid = torch.empty(1, config.features, *_corners(aabb, res)).uniform_(-config.init_scale, config.init_scale)
            self.grids.append(nn.Parameter(grid))
        self.register_buffer("density_grid", torch.ones(1, 1, *_corners(aabb, config.density_grid)))
        n_in = config.features * len(config.resolutions)
        self.trunk = nn.Sequential(nn.Linear(n_in, config.hidden), nn.ReLU(),
                                   nn.Linear(config.hidden, 1 + config.geo_features))
        # RGB branch: relu(W_geo g + W_dir enc(d) + b) -> linear -> sigmoid; the direction term is
        # computed once per ray and broadcast over its samples.
        self.rgb_geo = nn.Linear(config.geo_features, config.hidden)
        self.rgb_dir = nn.Linear(3 * (1 + 2 * config.dir_frequencies), config.hidden, bias=False)
        self.rgb_out = nn.Linear(config.hidden, 3)
        if config.shaping_features:
            self.add_shaping_head(config.shaping_features)

    def add_shaping_head(self, features: int = 16) -> None:
        """Add a head ``h(x)`` (MLP of the grid features and a frequency encoding of the position, ``features``
        outputs) whose colour term ``shaping_out(h)`` joins the RGB logits. ``shaping_out`` starts at zero, so the
        colours stay those of the fitted field as long as it is not trained; its Jacobians ``e_c ⊗ h`` are what
        JacobiNeRF shapes then (``shaping_parameter_names``)."""
        hidden, n_in = self.config.hidden, self.config.features * len(self.config.resolutions) + 3 * 9
        self.config = replace(self.config, shaping_features=features)
        self.shaping = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, features))
        self.shaping_out = nn.Linear(features, 3, bias=False)
        nn.init.zeros_(self.shaping_out.weight)

    def shaping_parameter_names(self) -> tuple[str, ...]:
        """``theta_D`` of shaping and propagation: the shaping head's last layer, else ``rgb_head_parameter_names``."""
        return ("shaping_out.weight",) if self.config.shaping_features else self.rgb_head_parameter_names()

    @staticmethod
    def rgb_head_parameter_names() -> tuple[str, ...]:
        """The default parameters whose colour Jacobians JacobiNeRF shapes: the RGB branch's last layer."""
        return ("rgb_out.weight", "rgb_out.bias")

    def grid_density(self, positions: Tensor) -> Tensor:
        """Cached density ``[...]`` at ``positions [..., 3]`` (trilinear in ``density_grid``; 0 outside the box)."""
        unit = self.to_unit(positions).reshape(1, 1, 1, -1, 3).to(self.density_grid.dtype)
        sigma = F.grid_sample(self.density_grid, unit, mode="bilinear", padding_mode="zeros", align_corners=True)
        return sigma.reshape(positions.shape[:-1]).to(positions.dtype)

    @torch.no_grad()
    def update_density_grid(self, decay: float = 0.95, generator: torch.Generator | None = None) -> None:
        """Refresh the cached density: ``max(decay * old, sigma)`` at each grid corner jittered within its cell."""
        _, _, nz, ny, nx = self.density_grid.shape
        axes = [torch.linspace(-1.0, 1.0, n, dtype=self.density_grid.dtype) for n in (nx, ny, nz)]
        unit = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # [x, y, z, 3]
        cell = torch.tensor([2.0 / (n - 1) for n in (nx, ny, nz)], dtype=unit.dtype)
        unit = unit + (torch.rand(unit.shape, generator=generator, dtype=unit.dtype) - 0.5) * cell
        sigma, _ = self.at_unit(unit)  # [x, y, z]
        self.density_grid = torch.maximum(decay * self.density_grid, sigma.permute(2, 1, 0)[None, None])

    def to_unit(self, positions: Tensor) -> Tensor:
        """World positions ``[..., 3]`` -> grid coordinates, ``[-1, 1]^3`` for the box (contracted when
        ``config.contract``: every position lands inside)."""
        lo, hi = self.aabb[0].to(positions.dtype), self.aabb[1].to(positions.dtype)
        unit = 2.0 * (positions - lo) / (hi - lo) - 1.0
        return contract(unit) if self.config.contract else unit

    def forward(self, positions: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if positions.shape[-1] != 3:
            raise ValueError(f"positions must be [..., 3], got {list(positions.shape)}")
        return self.at_unit(self.to_unit(positions), directions)

    def at_unit(self, unit: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The field at grid coordinates ``unit [..., 3]`` (see ``to_unit``); ``forward`` for world positions."""
        batch = unit.shape[:-1]
        unit = unit.reshape(-1, 3)
        feats = grid_features(list(self.grids), unit.to(self.grids[0].dtype))
        out = self.trunk(feats)
        inside = (unit.abs() <= 1.0).all(dim=-1).to(out.dtype)
        sigma = torch.exp(out[:, 0].clamp(max=15.0)) * inside
        if directions is None:
            return sigma.reshape(batch), None
        if directions.shape[-1] != 3 or torch.broadcast_shapes(directions.shape, (*batch, 3)) != (*batch, 3):
            raise ValueError(f"directions must be [..., 3] broadcastable to positions {[*batch, 3]}, "
                             f"got {list(directions.shape)}")
        dir_term = self.rgb_dir(positional_encoding(directions.to(out.dtype), self.config.dir_frequencies))
        hidden = self.rgb_geo(out[:, 1:]).reshape(*batch, self.config.hidden) + dir_term
        logits = self.rgb_out(torch.relu(hidden))
        if self.config.shaping_features:
            head = self.shaping(torch.cat([feats, positional_encoding(unit.to(feats.dtype), 4)], dim=-1))
            logits = logits + self.shaping_out(head).reshape(*batch, 3)
        rgb = torch.sigmoid(logits)
        return sigma.reshape(batch), rgb


def _corners(aabb: Tensor, resolution: int) -> tuple[int, int, int]:
    """Grid corners ``(z, y, x)`` for ``resolution`` cells along the longest side of ``aabb [2, 3]``."""
    extent = aabb[1] - aabb[0]
    x, y, z = (max(2, round(resolution * float(e / extent.max()))) + 1 for e in extent)
    return z, y, x


def field_state(field: NeRF) -> dict:
    """What a checkpoint needs to rebuild ``field``: its config and weights."""
    return {"config": asdict(field.config), "state_dict": field.state_dict()}


def field_from_state(state: dict) -> NeRF:
    """Inverse of ``field_state``."""
    field = NeRF(NeRFConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()}))
    field.load_state_dict(state["state_dict"])
    return field
