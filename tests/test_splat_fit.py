import math
from pathlib import Path

import pytest
import torch

from priors3d.fields.scenes import RoomConfig, generate_room
from priors3d.fields.fit import view_psnr
from priors3d.fields.splat_fit import (SplatFitConfig, SplatSetup, densify_and_prune, fit_splats, initial_field,
                                       load_splats, render_splat_views)
from priors3d.runs import RunDir


@pytest.fixture(scope="module")
def tiny_room():
    return generate_room(RoomConfig(width=16, height=16, n_views=8, test_every=4, light_samples=1,
                                    overview_fov_deg=0.0))


def tiny_config(out: Path, **kwargs) -> SplatFitConfig:
    base = dict(scene=Path("room"), out=out, iterations=40, init_stride=2, init_view_step=3, eval_every=10**9,
                checkpoint_every=20, picture_views=1, densify_from=10, densify_every=10, densify_until=30, tile=8,
                progress=False)
    return SplatFitConfig(**{**base, **kwargs})


def test_fit_reduces_training_loss_and_writes_a_run(tiny_room, tmp_path):
    cfg, views = tiny_config(tmp_path / "fit"), tiny_room.train
    initial = initial_field(tiny_room, cfg, torch.Generator().manual_seed(0))
    before = view_psnr(render_splat_views(initial, views, SplatSetup(scene="room", tile=8)), views)
    summary = fit_splats(tiny_room, cfg)
    field, setup = load_splats(cfg.out)
    after = view_psnr(render_splat_views(field, views, setup), views)
    assert after["psnr"] > before["psnr"] + 1.0
    assert summary["step"] == 40 and len(field) == summary["gaussians"]
    assert (cfg.out / "metrics.json").exists() and list(cfg.out.glob("test_*.png"))


def _state(log_scales, logits):
    g = len(logits)
    quats = torch.zeros(g, 4)
    quats[:, 0] = 1.0
    return {"means": torch.arange(g * 3, dtype=torch.float32).reshape(g, 3), "log_scales": torch.tensor(log_scales),
            "quaternions": quats, "opacity_logits": torch.tensor(logits), "colors": torch.rand(g, 3)}


def test_densify_clones_small_splits_large_and_prunes_transparent():
    small, large = [math.log(0.01)] * 3, [math.log(0.5)] * 3
    # 0: small, large gradient -> clone; 1: large, large gradient -> split in two; 2: quiet -> kept;
    # 3: nearly transparent -> pruned.
    state = _state([small, large, small, small], [0.0, 0.0, 0.0, -8.0])
    grads = torch.tensor([1.0, 1.0, 0.0, 0.0])
    new, source = densify_and_prune(state, grads, 0.5, 0.1, 0.01, budget=10, generator=torch.Generator().manual_seed(0))
    assert sorted(source.tolist()) == [0, 0, 1, 1, 2]
    assert all(v.shape[0] == 5 for v in new.values())
    clones = new["means"][source == 0]
    assert torch.equal(clones[0], clones[1])
    halves = source == 1
    assert torch.allclose(new["log_scales"][halves], torch.full((2, 3), math.log(0.5 / 1.6)))
    assert (new["means"][halves] - state["means"][1]).norm(dim=-1).max() < 5 * 0.5  # drawn near the parent
    assert not torch.equal(new["means"][halves][0], new["means"][halves][1])


def test_densify_respects_the_budget_largest_gradients_first():
    small = [math.log(0.01)] * 3
    state = _state([small] * 4, [0.0] * 4)
    new, source = densify_and_prune(state, torch.tensor([0.6, 0.9, 0.7, 0.1]), 0.5, 0.1, 0.01, budget=1,
                                    generator=torch.Generator())
    assert sorted(source.tolist()) == [0, 1, 1, 2, 3]


def test_bad_input_is_rejected(tiny_room, tmp_path):
    with pytest.raises(ValueError, match="mean_grads"):
        densify_and_prune(_state([[0.0] * 3], [0.0]), torch.zeros(2), 0.5, 0.1, 0.01, 1, torch.Generator())
    with pytest.raises(FileNotFoundError, match="splat fit"):
        load_splats(tmp_path)
    RunDir(tmp_path / "nerf").write_config({}, 0, "field fit")
    with pytest.raises(ValueError, match="nerf was written by field fit; 'splat shape' expects a run written by splat fit"):
        load_splats(tmp_path / "nerf")
    with pytest.raises(ValueError, match="init"):
        initial_field(tiny_room, tiny_config(tmp_path, init="grid"), torch.Generator())
