"""The NeRF field under torch.func, a tiny fit on a toy scene, checkpoints and the render command."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.func import grad, vmap

from priors3d.commands import fit as fit_commands
from priors3d.commands.fit import RenderConfig, render
from priors3d.fields.fit import FitConfig, fit_nerf, learning_rate, load_field
from priors3d.fields.formats import open_scene
from priors3d.fields.nerf import NeRF, NeRFConfig, field_from_state, field_state
from priors3d.fields.rays import camera_rays
from priors3d.fields.render import render_rays
from priors3d.fields.views import Scene, Views
from priors3d.runs import RunDir

SPHERES = [((0.0, 0.0, 0.0), 0.6, (0.9, 0.2, 0.2)), ((0.7, 0.3, 0.2), 0.3, (0.2, 0.8, 0.3)),
           ((-0.5, -0.4, 0.5), 0.35, (0.2, 0.3, 0.9))]


def look_at(eye: torch.Tensor) -> torch.Tensor:
    """Camera-to-world (OpenGL) at ``eye`` looking at the origin, +z up."""
    back = torch.nn.functional.normalize(eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back), dim=0)
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, torch.linalg.cross(back, right), back, eye
    return c2w


def trace_spheres(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Lambert-shaded coloured spheres on black, by exact ray-sphere intersection: ``[..., 3]``."""
    best = torch.full(origins.shape[:-1], math.inf)
    colour = torch.zeros_like(origins)
    light = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 1.0]), dim=0)
    for centre, radius, rgb in SPHERES:
        oc = origins - torch.tensor(centre)
        b = (oc * dirs).sum(-1)
        disc = b**2 - ((oc**2).sum(-1) - radius**2)
        t = -b - torch.sqrt(disc.clamp_min(0))
        hit = (disc > 0) & (t > 0) & (t < best)
        normal = (oc + t[..., None] * dirs) / radius
        shade = 0.3 + 0.7 * (normal @ light).clamp_min(0)
        colour = torch.where(hit[..., None], shade[..., None] * torch.tensor(rgb), colour)
        best = torch.where(hit, t, best)
    return colour


def toy_scene(size: int = 20, n_train: int = 12, n_test: int = 2) -> Scene:
    def views(n: int, offset: float) -> Views:
        angles = torch.arange(n) * 2 * math.pi / n + offset
        eyes = torch.stack([3 * torch.cos(angles), 3 * torch.sin(angles), 0.8 + 0.5 * torch.sin(3 * angles)], -1)
        c2w = torch.stack([look_at(e) for e in eyes])
        intrinsics = torch.tensor([size * 1.2, size * 1.2, size / 2, size / 2]).expand(n, 4).contiguous()
        origins, dirs = camera_rays(c2w, intrinsics, size, size)
        return Views(trace_spheres(origins, dirs), c2w, intrinsics, [f"v{offset:.1f}_{i}" for i in range(n)])

    aabb = torch.tensor([[-1.2, -1.2, -1.2], [1.2, 1.2, 1.2]])
    return Scene(train=views(n_train, 0.0), test=views(n_test, 0.4), aabb=aabb, near=0.5, far=6.0)


def small_cfg(out: Path, **overrides) -> FitConfig:
    cfg = dict(scene=Path("toy"), out=out, iterations=60, batch_rays=256, lr=2e-2, lr_final=5e-3, n_samples=16,
               n_proposal=24, density_grid_every=5, eval_every=30, checkpoint_every=20, picture_views=1,
               progress=False, field=NeRFConfig(resolutions=(8, 16, 32), features=2, hidden=32, density_grid=16))
    cfg.update(overrides)
    return FitConfig(**cfg)


def test_field_shapes_range_and_box():
    field = NeRF(NeRFConfig(aabb=(-1, -2, -1, 1, 2, 1), resolutions=(4, 8), density_grid=8))
    positions = torch.randn(2, 5, 7, 3)
    sigma, rgb = field(positions, torch.nn.functional.normalize(torch.randn(2, 5, 7, 3), dim=-1))
    assert sigma.shape == (2, 5, 7) and rgb.shape == (2, 5, 7, 3)
    assert torch.all(sigma >= 0) and torch.all((rgb >= 0) & (rgb <= 1))
    outside = (field.to_unit(positions).abs() > 1).any(-1)
    assert outside.any() and torch.all(sigma[outside] == 0) and torch.all(sigma[~outside] > 0)
    per_ray = torch.nn.functional.normalize(torch.randn(2, 5, 1, 3), dim=-1)
    torch.testing.assert_close(field(positions, per_ray)[1], field(positions, per_ray.expand(2, 5, 7, 3))[1])
    density_only, none = field(positions)
    assert none is None and torch.equal(density_only, sigma)
    # Grids get fewer cells along shorter box sides: [1, C, z, y, x].
    assert field.grids[1].shape == (1, 4, 5, 9, 5)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        field(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="max corner"):
        NeRF(NeRFConfig(aabb=(1, 0, 0, 0, 1, 1)))


def _head_setup():
    torch.manual_seed(0)
    field = NeRF(NeRFConfig(resolutions=(4, 8), features=2, hidden=16, init_scale=0.5, density_grid=8)).double()
    params = dict(field.named_parameters())
    head = {name: params[name] for name in NeRF.rgb_head_parameter_names()}
    g = torch.Generator().manual_seed(1)
    rays_o = (torch.rand(6, 3, generator=g, dtype=torch.float64) - 0.5) * 0.5
    rays_d = torch.nn.functional.normalize(torch.randn(6, 3, generator=g, dtype=torch.float64), dim=-1)
    near, far = torch.full((6,), 0.05, dtype=torch.float64), torch.full((6,), 0.8, dtype=torch.float64)
    return field, params, head, (rays_o, rays_d, near, far)


def _grey(field, head, o, d, near, far, proposal=None):
    return render_rays(field, o, d, near, far, n_samples=8, n_proposal=6, proposal=proposal, params=head)["rgb"].mean()


@pytest.mark.parametrize("cached", [False, True])
def test_vmap_grad_matches_autograd_loop(cached):
    field, params, head, rays = _head_setup()
    field.update_density_grid(generator=torch.Generator().manual_seed(0))
    proposal = field.grid_density if cached else None
    jac = vmap(grad(lambda h, *ray: _grey(field, h, *ray, proposal=proposal)), in_dims=(None, 0, 0, 0, 0))(head, *rays)
    for i in range(6):
        single = [r[i:i + 1] for r in rays]
        out = render_rays(field, *single, n_samples=8, n_proposal=6, proposal=proposal)["rgb"].mean()
        loop = torch.autograd.grad(out, [params[n] for n in head])
        for name, expected in zip(head, loop):
            torch.testing.assert_close(jac[name][i], expected, rtol=1e-9, atol=1e-12)
    assert jac["rgb_out.weight"].abs().sum() > 0
    # functional_call with other head values changes the render (params are really used).
    shifted = {n: p + 1.0 for n, p in head.items()}
    assert not torch.allclose(_grey(field, shifted, *[r[0] for r in rays]), _grey(field, head, *[r[0] for r in rays]))


def test_double_backward_through_jacobians():
    field, params, head, rays = _head_setup()
    jac = vmap(grad(lambda h, *ray: _grey(field, h, *ray)), in_dims=(None, 0, 0, 0, 0))(head, *rays)
    flat = torch.cat([j.reshape(6, -1) for j in jac.values()], dim=1)
    similarity = torch.nn.functional.normalize(flat, dim=1) @ torch.nn.functional.normalize(flat, dim=1).T
    loss = (similarity - torch.eye(6, dtype=torch.float64)).pow(2).sum()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))
    for name in ("grids.0", "trunk.0.weight", "rgb_geo.weight", "rgb_dir.weight", "rgb_out.weight"):
        assert grads[name] is not None and torch.isfinite(grads[name]).all() and grads[name].abs().sum() > 0


def test_field_state_round_trip():
    field = NeRF(NeRFConfig(resolutions=(4, 8), features=2, hidden=16, density_grid=8))
    field.update_density_grid()
    copy = field_from_state(field_state(field))
    x, d = torch.randn(10, 3) * 0.5, torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    for a, b in zip(field(x, d), copy(x, d)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(field.grid_density(x), copy.grid_density(x))


def test_tiny_fit_improves_psnr_and_writes_run(tmp_path):
    scene = toy_scene()
    untrained = fit_nerf(scene, small_cfg(tmp_path / "zero", iterations=0, picture_views=0))
    cfg = small_cfg(tmp_path / "run")
    summary = fit_nerf(scene, cfg)
    assert untrained["step"] == 0 and summary["step"] == 60
    assert summary["psnr"] > untrained["psnr"] + 3
    run = cfg.out
    assert {"config.json", "metrics.jsonl", "metrics.json", "checkpoint.pt"} <= {p.name for p in run.iterdir()}
    assert len(list(run.glob("test_*.png"))) == 1
    records = RunDir(run).read_metrics()
    assert [r["step"] for r in records] == [30, 60]  # one evaluation at step 30, the final one at 60
    assert records[-1]["psnr"] == summary["psnr"]
    field, setup = load_field(run)
    assert setup.n_samples == 16 and setup.aabb == pytest.approx((-1.2, -1.2, -1.2, 1.2, 1.2, 1.2))
    assert not field.training


@pytest.mark.parametrize("regulariser", ["sparsity", "distortion"])
def test_regularisers_lower_what_they_penalise(tmp_path, regulariser):
    """Two fits that differ only in one regulariser: the sparsity loss leaves less density in the empty part of the
    box, the distortion loss leaves the weight along test rays in shorter stretches; both still fit the scene."""
    from priors3d.fields.render import distortion_loss

    scene = toy_scene()
    fits = {}
    for weight in (0.0, 0.05):
        out = tmp_path / f"{weight}"
        summary = fit_nerf(scene, small_cfg(out, eval_every=0, picture_views=0, **{regulariser: weight}))
        field, setup = load_field(out)
        fits[weight] = summary, field, setup
    g = torch.Generator().manual_seed(0)
    points = torch.rand(20000, 3, generator=g) * 2.4 - 1.2
    empty = torch.stack([(points - torch.tensor(c)).norm(dim=-1) > r + 0.1 for c, r, _ in SPHERES]).all(0)
    origins, dirs = camera_rays(scene.test.c2w, scene.test.intrinsics, 20, 20)
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)

    def penalty(field, setup) -> float:
        with torch.no_grad():
            if regulariser == "sparsity":
                return float(field(points[empty])[0].mean())
            out = render_rays(field, o, d, *setup.bounds(o, d), **setup.sampling(field))
            return float(distortion_loss(out["weights"], out["s_edges"]).mean())

    assert penalty(*fits[0.05][1:]) < 0.7 * penalty(*fits[0.0][1:])
    assert fits[0.05][0]["psnr"] > fits[0.0][0]["psnr"] - 1.5


def test_render_command_writes_pngs(tmp_path, monkeypatch):
    scene = toy_scene(size=12, n_train=6, n_test=2)
    summary = fit_nerf(scene, small_cfg(tmp_path / "run", iterations=4, picture_views=0))
    monkeypatch.setattr(fit_commands, "fitted_scene", lambda setup: scene)
    result = render(RenderConfig(run=tmp_path / "run", progress=False))
    out = tmp_path / "run" / "renders" / "test"
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [f"{n}.png" for n in scene.test.names] + [f"{n}_depth.png" for n in scene.test.names])
    assert result["psnr"] == pytest.approx(summary["psnr"], abs=1e-4)


def test_render_refuses_a_run_of_another_kind(tmp_path):
    RunDir(tmp_path / "points").write_config({}, 0, "pointcloud train")
    with pytest.raises(ValueError, match=r"points was written by pointcloud train; 'field render' expects a run written by "
                                         r"field fit or field shape"):
        render(RenderConfig(run=tmp_path / "points"))
    with pytest.raises(FileNotFoundError, match="nothing is not a run directory"):
        load_field(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_learning_rate_decays_over_iterations_or_budget():
    cfg = small_cfg(Path("unused"), lr=1e-2, lr_final=1e-3, iterations=100)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(1e-2)
    assert learning_rate(cfg, 50, 0.0) == pytest.approx(math.sqrt(1e-5))
    assert learning_rate(cfg, 100, 0.0) == pytest.approx(1e-3)
    budgeted = small_cfg(Path("unused"), lr=1e-2, lr_final=1e-3, iterations=100, time_budget_s=10.0)
    assert learning_rate(budgeted, 10, 10.0) == pytest.approx(1e-3)
    assert learning_rate(budgeted, 50, 1.0) == pytest.approx(learning_rate(cfg, 50, 0.0))


def test_cli_configs_parse_and_missing_scene_is_reported(tmp_path):
    import tyro

    cfg = tyro.cli(FitConfig, args=["room", "--iterations", "7", "--field.resolutions", "8", "16"])
    assert cfg.scene == Path("room") and cfg.iterations == 7 and cfg.field.resolutions == (8, 16)
    assert tyro.cli(RenderConfig, args=[str(tmp_path)]).split == "test"
    with pytest.raises(FileNotFoundError, match="scene folder or 'room'"):
        open_scene(tmp_path / "missing")
