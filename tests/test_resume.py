"""Every training command, cut by SIGINT after k steps and resumed, ends bit-identical to the run that
was never cut: same trainer state (parameters, optimiser, generators) and the same metric rows.

Each case is ``run(out, resume) -> None``: one small run of the command into ``out``; the harness
interrupts it with a real SIGINT after ``k`` steps, resumes it, and counts the steps the resumed
process runs (so a trainer that ignores the checkpoint and starts again fails even though a seeded
rerun from scratch would end in the same state).
"""

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from priors3d import engine
from priors3d.engine import Interrupted
from priors3d.runs import RunDir


@dataclass
class Case:
    run: Callable[[Path, bool], None]
    steps: int
    cut: int


CASES: dict[str, Callable[[Path], Case]] = {}
"""Command name -> factory(tmp_path) building any inputs (a fitted field, a data cache) and the case."""


def case(name):
    def register(factory):
        CASES[name] = factory
        return factory
    return register


def equal(a, b, where="state"):
    """Recursive exact equality of checkpoint states; returns the first differing path or None."""
    if isinstance(a, torch.Tensor):
        return None if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else where
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return where
        return next((d for k in a if (d := equal(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return where
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := equal(x, y, f"{where}[{i}]"))), None)
    return None if a == b else where


def untimed(rows):
    return [{k: v for k, v in r.items() if not k.endswith(("time_s", "seconds"))} for r in rows]


class StepCounter:
    """Wraps ``Run.train``: counts trainer steps and sends SIGINT after step ``cut`` (when set)."""

    def __init__(self, monkeypatch, cut=None):
        self.calls, original = 0, engine.Run.train

        def train(run, trainer, steps, **kwargs):
            step = trainer.step

            def counted(i):
                result = step(i)
                self.calls += 1
                if cut is not None and i + 1 == cut:
                    os.kill(os.getpid(), signal.SIGINT)
                return result
            trainer.step = counted
            return original(run, trainer, steps, **kwargs)
        monkeypatch.setattr(engine.Run, "train", train)


@pytest.mark.parametrize("name", CASES)  # the dict, read at collection: after the cases below register
def test_cut_and_resumed_run_is_bit_identical(name, tmp_path, monkeypatch):
    spec = CASES[name](tmp_path)
    with monkeypatch.context() as m:
        spec.run(tmp_path / "full", False)
    with monkeypatch.context() as m:
        StepCounter(m, cut=spec.cut)
        with pytest.raises(Interrupted):
            spec.run(tmp_path / "cut", False)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == spec.cut
    with monkeypatch.context() as m:
        counter = StepCounter(m)
        spec.run(tmp_path / "cut", True)
    assert counter.calls == spec.steps - spec.cut, "the resumed run did not start from the checkpoint"
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert full["step"] == cut["step"] == spec.steps
    assert equal(full["trainer"], cut["trainer"], "trainer") is None
    assert untimed(RunDir(tmp_path / "cut").read_metrics()) == untimed(RunDir(tmp_path / "full").read_metrics())


# --- cases ---------------------------------------------------------------------------------------
# Each command's small run. Keep them to a few seconds each.


@case("pointcloud train")
def pointcloud_train_case(tmp_path):
    from priors3d.commands.pointcloud import train
    from priors3d.pointcloud.train import PointCloudTrainConfig

    def run(out, resume):
        train(PointCloudTrainConfig(model="vn_pointnet", rotation="z/so3", root=tmp_path / "cache", per_class=2,
                                    test_per_class=1, n_points=64, k=6, width_divisor=8, batch_size=6, epochs=3,
                                    seed=3, device="cpu", progress=False, out=out, resume=resume))
    return Case(run, steps=3, cut=1)


@case("occupancy train")
def occupancy_train_case(tmp_path):
    from priors3d.commands.occupancy import train
    from priors3d.pointcloud.occupancy_training import OccupancyTrainConfig

    def run(out, resume):
        train(OccupancyTrainConfig(rotation="so3/so3", epochs=3, batch_size=8, per_class=1, test_per_class=1,
                                   n_meshes=1, mesh_resolution=8, data_root=tmp_path / "cache", n_queries=64,
                                   c_dim=8, hidden=8, decoder_hidden=16, n_blocks=2, k=6, progress=False, out=out,
                                   resume=resume))
    return Case(run, steps=3, cut=2)


def _tiny_room():
    from priors3d.fields.scenes import RoomConfig, generate_room

    return generate_room(RoomConfig(width=16, height=16, n_views=8, test_every=4, light_samples=1,
                                    overview_fov_deg=0.0))


@case("field fit")
def field_fit_case(tmp_path):
    from priors3d.fields.fit import FitConfig, fit_nerf
    from priors3d.fields.nerf import NeRFConfig

    scene = _tiny_room()
    # Steps 4..8 after the cut refresh the density grid, evaluate (6) and checkpoint (4).
    return Case(lambda out, resume: fit_nerf(scene, FitConfig(
        scene=Path("room"), out=out, resume=resume, progress=False, iterations=8, batch_rays=64, n_samples=8,
        n_proposal=8, density_grid_every=2, eval_every=3, checkpoint_every=4, picture_views=0,
        field=NeRFConfig(resolutions=(8, 16), features=2, hidden=16, density_grid=8))), steps=8, cut=3)


@case("splat fit")
def splat_fit_case(tmp_path):
    from priors3d.fields.splat_fit import SplatFitConfig, fit_splats

    scene = _tiny_room()
    # Densification at steps 4 (before the cut: the checkpoint holds a grown field) and 8 (after it).
    return Case(lambda out, resume: fit_splats(scene, SplatFitConfig(
        out=out, resume=resume, progress=False, iterations=10, init_stride=4, init_view_step=3, tile=8,
        densify_from=4, densify_every=4, densify_until=8, eval_every=5, picture_views=0)), steps=10, cut=6)


@case("field shape")
def field_shape_case(tmp_path):
    from priors3d.fields.fit import FitConfig, fit_nerf, load_field
    from priors3d.fields.nerf import NeRFConfig
    from priors3d.shaping.shape import ShapeConfig, shape_field

    scene, fit = _tiny_room(), tmp_path / "fit"
    fit_nerf(scene, FitConfig(scene=Path("room"), out=fit, progress=False, iterations=4, batch_rays=64, n_samples=8,
                              n_proposal=8, density_grid_every=2, eval_every=0, picture_views=0,
                              field=NeRFConfig(resolutions=(8, 16), features=2, hidden=16, density_grid=8)))
    # Rows at steps 10 and 12, checkpoints at 5 and 10, the cut at 7; the defaults: label-free consistent
    # segments, the shaping head added to the fitted field (so resuming rebuilds it); two views a step.
    return Case(lambda out, resume: shape_field(*load_field(fit), scene, ShapeConfig(
        run=fit, out=out, resume=resume, progress=False, iterations=12, batch_rays=32, jacobian_rays=16,
        views_per_step=2, density_grid_every=3, checkpoint_every=5)), steps=12, cut=7)


@case("splat shape")
def splat_shape_case(tmp_path):
    from priors3d.fields.splat_fit import SplatFitConfig, fit_splats, load_splats
    from priors3d.shaping.infogs import SplatShapeConfig, shape_splats

    scene, fit = _tiny_room(), tmp_path / "fit"
    fit_splats(scene, SplatFitConfig(out=fit, progress=False, iterations=5, init_stride=4, init_view_step=3, tile=8,
                                     eval_every=0, picture_views=0))
    # Rows at steps 10 and 12, checkpoints at 5 and 10, a photometric view drawn every step.
    return Case(lambda out, resume: shape_splats(*load_splats(fit), scene, SplatShapeConfig(
        run=fit, out=out, resume=resume, progress=False, iterations=12, fraction=0.5, checkpoint_every=5)),
        steps=12, cut=7)


@case("policy train")
def policy_train_case(tmp_path):
    from priors3d.commands.policy import train
    from priors3d.policy.rollout import collect_demos, save_demos
    from priors3d.policy.scene import DepthCamera
    from priors3d.policy.train import PolicyTrainConfig

    save_demos(tmp_path / "demos", collect_demos("push", 1, seed=0, camera=DepthCamera(n_points=32)), {"task": "push"})
    # Augmented minibatches (the trainer's generator) and a cosine schedule on both sides of the cut; rows at 2, 4,
    # 6, 7, checkpoints at 4 and 7.
    return Case(lambda out, resume: train(PolicyTrainConfig(
        out=out, resume=resume, demos=tmp_path / "demos", encoder="vn", augment=True, width=8, steps=7, batch_size=4,
        log_every=2, checkpoint_every=4, progress=False)), steps=7, cut=3)


@case("efem train")
def efem_train_case(tmp_path):
    from priors3d.commands.efem import train
    from priors3d.efem import EFEMTrainConfig

    # Checkpoints at 2 and 4; the batch generator and Adam's moments must survive the cut at 3.
    def run(out, resume):
        train(EFEMTrainConfig(out=out, resume=resume, progress=False, steps=4, checkpoint_every=2, batch_size=2,
                              objects=4, views=1, n_points=32, n_queries=32, resolution=8, channels=4, latent=4,
                              invariant=8, hidden=8, k=4, test_objects=2, n_meshes=0))
    return Case(run, steps=4, cut=3)
