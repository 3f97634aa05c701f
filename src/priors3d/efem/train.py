"""Train the shape prior of one category on canonical objects (``priors3d efem train``).

A pool of objects is generated once from the seed, each scanned partially (1-3 views, noise, occluders) a
few times, with SDF queries near the surface and uniform in the box (:class:`~priors3d.efem.data.ScanPool`;
tracing fresh scans every step would cost more than the step). Every step draws a batch from it and
regresses the analytic SDF, truncated at ``±truncation``, with an L1 loss. Objects stay upright and unit-size:
the VN prior needs no rotation augmentation (``augment="so3"`` exists for the PointNet baseline).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from priors3d import engine
from priors3d.engine import RunConfig
from priors3d.pointcloud.mesh import grid_points, marching_cubes, render_meshes, save_mesh
from priors3d.runs import config_from_dict, load_torch, open_run, save_json
from priors3d.so3 import random_rotation, rotate

from .data import ScanPool
from .prior import ShapePrior, sdf_and_gradient
from .shapes import PARAMETERS, check_category

KIND = "efem train"


@dataclasses.dataclass(kw_only=True)
class EFEMTrainConfig(RunConfig):
    """Options of ``priors3d efem train``."""

    out: Path = Path("runs/efem-prior")
    """Run directory (config.json, metrics.jsonl, checkpoint.pt, results.json, reconstructions.png)."""
    category: Literal["mug", "chair"] = "mug"
    encoder: Literal["vn", "pointnet"] = "vn"
    """vn: SIM(3)-equivariant VN encoder; pointnet: the non-equivariant baseline."""
    augment: Literal["none", "so3"] = "none"
    """Rotate each training scan (and its queries) by a random rotation (the baseline's augmentation)."""
    steps: int = 3000
    batch_size: int = 16
    lr: float = 3e-3
    """Peak learning rate (Adam, cosine decay to 5% over the steps)."""
    objects: int = 512
    """Objects in the training pool."""
    views: int = 3
    """Scans per pool object (each from 1..max_views random cameras)."""
    n_points: int = 128
    """Points per scan (drawn with replacement from the visible surface)."""
    n_queries: int = 512
    """Queries per object and step (drawn from 2048 stored ones, 70% near the surface)."""
    truncation: float = 0.25
    """The L1 loss compares SDFs clamped to ±truncation (canonical units): capacity goes to the surface."""
    resolution: int = 24
    """Depth-image side of each training view."""
    noise: float = 0.005
    max_views: int = 3
    occluder: float = 0.5
    """Probability of a ball occluder in front of the object."""
    elevation: tuple[float, float] = (-75.0, 75.0)
    """Range of the scanning cameras' elevation above the object's equator, in degrees (negative: from below).
    From below as well as above: in a scene under any rotation the cameras see an object from every side."""
    channels: int = 16
    latent: int = 16
    invariant: int = 32
    hidden: int = 128
    k: int = 8
    frequencies: int = 4
    """Octaves of the decoder's Fourier features of ⟨q, z_so3⟩."""
    pose_weight: float = 0.1
    """Weight of ``|t| + |log s|``: canonical objects are centred and unit-size, so ``t`` and ``s`` learn to be the
    object's centre and scale (the E-M gates and scores points with them)."""
    canonical_weight: float = 1.0
    """Weight of the canonical supervision: ``z_so3``'s first two vectors are the object's up and front axes and
    ``z_inv``'s first entries its part parameters (rescaled to [0, 1]); both known for a canonical object."""
    test_objects: int = 32
    """Held-out objects for the final SDF error (upright and under random SO(3) rotations)."""
    n_meshes: int = 4
    """Held-out scans reconstructed (upright and rotated) into meshes/ and reconstructions.png (0: none)."""
    mesh_resolution: int = 40
    checkpoint_every: int = 100


def build_prior(config: EFEMTrainConfig) -> ShapePrior:
    return ShapePrior(config.encoder, config.channels, config.latent, config.invariant, config.hidden, config.k,
                      config.frequencies)


def scan_pool(config: EFEMTrainConfig, objects: int, seed: int) -> ScanPool:
    """Upright canonical objects of the config's category with their scans and queries."""
    return ScanPool(config.category, objects, config.n_points, seed, views=config.views, max_views=config.max_views,
                    resolution=config.resolution, noise=config.noise, occluder=config.occluder,
                    elevation=config.elevation)


class PriorTrainer:
    """One engine step = one batch from the pool (truncated L1 SDF loss plus the pose term); the state holds the
    model, Adam and the batch generator (the pool is a function of the seed)."""

    def __init__(self, config: EFEMTrainConfig, model: ShapePrior, generator: torch.Generator):
        self.config, self.model, self.generator = config, model, generator
        self.optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.pool = scan_pool(config, config.objects, config.seed)

    def step(self, i: int) -> dict[str, float]:
        config = self.config
        for group in self.optimiser.param_groups:
            group["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / config.steps)))
        scans, queries, target, params = self.pool.batch(config.batch_size, config.n_queries, self.generator)
        rotation = torch.eye(3).expand(len(scans), 3, 3)
        if config.augment == "so3":
            rotation = random_rotation(len(scans), self.generator)
            scans, queries = rotate(scans, rotation), rotate(queries, rotation)
        self.model.train()
        code = self.model.encode(scans)
        limit = config.truncation
        sdf = (self.model.sdf(code, queries).clamp(-limit, limit) - target.clamp(-limit, limit)).abs().mean()
        pose = code.t.norm(dim=-1).mean() + code.s.log().abs().mean()
        # the canonical frame's x (front) and z (up) axes, rotated as row vectors: rows 0 and 2 of R
        frame = (code.z_so3[:, :2] - rotation[:, [2, 0]]).norm(dim=-1).mean()
        shape = (code.z_inv[:, :params.shape[1]] - params).abs().mean()
        loss = sdf + config.pose_weight * pose + config.canonical_weight * (frame + shape)
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        return {"loss": loss.item(), "sdf_l1": sdf.item(), "pose": pose.item(), "frame": frame.item(),
                "shape": shape.item()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])


def evaluate_prior(model: ShapePrior, config: EFEMTrainConfig, seed: int) -> dict[str, float]:
    """Quality of the prior on held-out objects, upright and (suffix ``_so3``) under random rotations:

    - ``sdf_l1``, ``sdf_l1_near``: mean |SDF error| at all queries and at those within 0.05 of the surface
      (``sdf_l1_near_zero``: what a field of zeros scores there, the floor a blurred field sinks to);
    - ``sign_accuracy_near``: accuracy of the predicted sign there;
    - ``surface_gradient``: mean ``|∇sdf|`` at queries within 0.01 of the surface (1 for a distance field; a
      prior that cannot place the surface blurs it and flattens its field);
    - ``centre_error``, ``log_scale_error``: mean ``|t|`` and ``|log s|`` (a canonical object is centred and
      unit-size);
    - ``up_error_deg``, ``up_flipped``: median angle between the code's first vector and the object's up axis,
      and the share of scans where it points down (the frame the canonical supervision asks for).
    """
    generator = torch.Generator().manual_seed(seed + 7919)
    scans, queries, target, _ = scan_pool(config, config.test_objects, seed + 7919).batch(
        config.test_objects, config.n_queries, generator)
    rotation = random_rotation(len(scans), generator)
    model.eval()
    near, surface = target.abs() < 0.05, target.abs() < 0.01
    results = {"sdf_l1_near_zero": target[near].abs().mean().item()}
    for suffix, (s, q, r) in (("", (scans, queries, torch.eye(3).expand_as(rotation))),
                              ("_so3", (rotate(scans, rotation), rotate(queries, rotation), rotation))):
        with torch.no_grad():
            code = model.encode(s)
        predicted, gradient = sdf_and_gradient(model, code, q)
        error = (predicted - target).abs()
        up = torch.nn.functional.cosine_similarity(code.z_so3[:, 0], r[:, 2], dim=-1)
        results |= {f"sdf_l1{suffix}": error.mean().item(), f"sdf_l1_near{suffix}": error[near].mean().item(),
                    f"sign_accuracy_near{suffix}": ((predicted > 0) == (target > 0))[near].float().mean().item(),
                    f"surface_gradient{suffix}": gradient.norm(dim=-1)[surface].mean().item(),
                    f"centre_error{suffix}": code.t.norm(dim=-1).mean().item(),
                    f"log_scale_error{suffix}": code.s.log().abs().mean().item(),
                    f"up_error_deg{suffix}": up.clamp(-1, 1).acos().rad2deg().median().item(),
                    f"up_flipped{suffix}": (up < 0).float().mean().item()}
    return results


@torch.no_grad()
def prior_mesh(model: ShapePrior, code, resolution: int = 40, bound: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes mesh of the zero level set of one shape hypothesis (``code`` with B = 1) in the box
    ``code.t ± bound·code.s``, in scene coordinates."""
    grid = grid_points(resolution, bound).to(code.t.dtype)
    world = code.t[0] + code.s[0] * grid
    values = torch.cat([model.sdf(code, chunk[None])[0] for chunk in world.split(32768)])
    vertices, faces = marching_cubes((-values).view(resolution, resolution, resolution).numpy(), 0.0, bound)
    return code.t[0].numpy() + code.s[0].item() * vertices, faces


def train_prior(config: EFEMTrainConfig) -> tuple[ShapePrior, dict]:
    """Train (or resume) a prior run; writes results.json, meshes/*.ply and reconstructions.png."""
    check_category(config.category)
    low, high = config.elevation
    if not -90 <= low < high <= 90:
        raise ValueError(f"elevation must be (low, high) degrees with -90 <= low < high <= 90, got {config.elevation}")
    parts = len(PARAMETERS[config.category])
    if config.canonical_weight and (config.invariant < parts or config.latent < 2):
        raise ValueError(f"canonical supervision needs invariant >= {parts} (the {config.category} parameters) and "
                         f"latent >= 2 (up and front axes), got invariant={config.invariant}, latent={config.latent}")
    with engine.start(config, KIND) as run:
        model = build_prior(config)                                  # after the engine seeded torch
        generator = torch.Generator().manual_seed(config.seed)
        trained = run.train(PriorTrainer(config, model, generator), config.steps, log_every=25,
                            desc=f"efem {config.category} {config.encoder}")
        results = {**trained, **evaluate_prior(model, config, config.seed),
                   "parameters": sum(p.numel() for p in model.parameters())}
        save_json(run.path("results.json"), results)
        if config.n_meshes:
            n, generator = config.n_meshes, torch.Generator().manual_seed(config.seed + 15485863)
            scans = scan_pool(config, n, config.seed + 15485863).batch(n, 1, generator)[0]
            panels = []
            for name, clouds in (("upright", scans), ("SO(3)", rotate(scans, random_rotation(n, generator)))):
                for i in range(n):
                    vertices, faces = prior_mesh(model, model.encode(clouds[i:i + 1]), config.mesh_resolution)
                    save_mesh(run.path(f"meshes/{name.replace('(3)', '3').lower()}_{i}.ply"), vertices, faces)
                    panels.append((f"{name} {i}", vertices, faces, clouds[i].numpy()))
            render_meshes(run.path("reconstructions.png"), panels, columns=n)
    return model, results


def load_prior(path: str | Path) -> tuple[EFEMTrainConfig, ShapePrior]:
    """The config and trained model (eval mode) of a run written by ``priors3d efem train``."""
    run = open_run(path, KIND, "efem")
    config = config_from_dict(EFEMTrainConfig, run.read_config()["config"], str(run.path("config.json")))
    checkpoint = run.path("checkpoint.pt")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} not found: the prior run in {path} has not saved a checkpoint yet")
    model = build_prior(config)
    model.load_state_dict(load_torch(checkpoint)["trainer"]["model"])
    return config, model.eval()
