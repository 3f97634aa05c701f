"""priors3d.policy: SIM(3)-equivariance of the VN policy, the simulated tasks and the depth camera, the
demonstrations, and the policy commands end to end."""

import json

import numpy as np
import pytest
import torch

from priors3d import check
from priors3d.commands.policy import DemosConfig, EvalConfig, demos, evaluate, train
from priors3d.policy import (SETTINGS, TASKS, DepthCamera, PointNetPolicy, PolicyTrainConfig, PolicyTrainer,
                             SceneTransform, VNPolicy, collect_demos, expert_actor, make_task, rollout, sample_transform)
from priors3d.policy.rollout import stack
from priors3d.so3 import random_rotation

CAMERA = DepthCamera(n_points=96)


def observations(task="pick_place", n=3, dtype=torch.float64):
    """Real observations: the first step of ``n`` original episodes, one with the gripper closed."""
    batch = stack([make_task(task, "original", 0, i).observe(CAMERA) for i in range(n)])
    batch["gripper"][0] = 1.0
    return [batch[k].to(dtype) if k != "labels" else batch[k] for k in ("points", "labels", "ee", "gripper")]


def similarity(dtype, seed=0):
    """A random SIM(3) element: full rotation, scale in [0.5, 2], translation."""
    generator = torch.Generator().manual_seed(seed)
    rotation = random_rotation(1, generator, dtype)[0]
    scale = 0.5 + 1.5 * torch.rand((), generator=generator, dtype=dtype)
    return rotation, scale, torch.randn(3, generator=generator, dtype=dtype)


def sim3_errors(policy, dtype, seeds=range(4)):
    """Worst relative errors of the move (equivariance) and of the gripper logit (invariance) over random g."""
    points, labels, ee, gripper = observations(dtype=dtype)
    move, logit = policy(points, labels, ee, gripper)
    worst = [0.0, 0.0]
    for seed in seeds:
        rotation, scale, shift = similarity(dtype, seed)
        move_g, logit_g = policy(scale * points @ rotation + shift, labels, scale * ee @ rotation + shift, gripper)
        expected = scale * move @ rotation
        worst[0] = max(worst[0], ((move_g - expected).norm() / expected.norm()).item())
        worst[1] = max(worst[1], ((logit_g - logit).norm() / logit.norm()).item())
    return worst


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vn_policy_move_is_sim3_equivariant_and_gripper_invariant(dtype):
    """π(s·o R + t) = s·π(o) R for the move, the gripper logit unchanged. float64 within 1e-8; float32 within
    1e-4 (check.TOLERANCE: rounding of the normalisation and ~10 layers measures ~1e-6, a network that is not
    equivariant is off by 1e-1 or more, see the PointNet test below)."""
    torch.manual_seed(0)
    policy = VNPolicy(2, width=16).to(dtype).eval()
    limit = 1e-8 if dtype == torch.float64 else check.TOLERANCE[torch.float32]
    move_error, logit_error = sim3_errors(policy, dtype)
    assert move_error <= limit and logit_error <= limit
    # the rotation part through priors3d.check as well (labels and gripper do not rotate)
    points, labels, ee, gripper = observations(dtype=dtype)
    check.assert_equivariant(lambda p, e: policy(p, labels, e, gripper)[0], (points, ee), vector_dim=-1,
                             output_vector_dim=-1, tolerance=limit)
    check.assert_invariant(lambda p, e: policy(p, labels, e, gripper)[1], (points, ee), vector_dim=-1, tolerance=limit)


def test_pointnet_policy_is_not_rotation_equivariant():
    torch.manual_seed(0)
    move_error, logit_error = sim3_errors(PointNetPolicy(2, width=16).double().eval(), torch.float64)
    assert move_error > 1e-2 and logit_error > 1e-2


@pytest.mark.parametrize("task", list(TASKS))
def test_scripted_expert_succeeds_in_every_setting(task):
    """The task is the same task after the scene transform: the expert solves Original and transformed scenes."""
    for setting in SETTINGS:
        result = rollout(task, setting, expert_actor, episodes=2 if task != "cloth_cover" else 1, seed=1000,
                         camera=CAMERA)
        assert result["success"].all(), (task, setting, result["reward"])
        assert ((result["reward"] >= 0) & (result["reward"] <= 1)).all()


def test_a_policy_that_stays_still_fails():
    """Reward and success measure the task: doing nothing leaves every task unsolved."""
    still = lambda obs, tasks: (torch.zeros(len(tasks), 3), torch.zeros(len(tasks), dtype=torch.bool))  # noqa: E731
    for task in TASKS:
        result = rollout(task, "original", still, episodes=1, seed=0, camera=CAMERA)
        assert not result["success"].any() and (result["reward"] < 0.2).all(), task


def test_settings_keep_gravity_and_sample_their_ranges():
    rng = np.random.default_rng(0)
    for setting in SETTINGS:
        for _ in range(50):
            t = sample_transform(setting, rng)
            assert np.allclose(t.linear[:2, 2], 0) and np.allclose(t.linear[2, :2], 0) and t.linear[2, 2] > 0
            scales = np.linalg.svd(t.linear, compute_uv=False)
            assert t.shift[2] == 0 and (setting == "r_sn_p" or not t.shift.any())
            if setting == "original":
                assert np.allclose(t.linear, np.eye(3))
            elif setting == "r_su":
                assert np.allclose(scales, scales[0]) and 1 <= scales[0] <= 2
            else:
                assert scales.max() / scales.min() <= 1.33 + 1e-9 and 1 <= scales.min() and scales.max() <= 2


def test_depth_camera_sees_only_the_nearest_surface_facing_it():
    """Two overlapping horizontal squares: where they overlap only the upper one is seen; downward faces never."""
    grid = np.stack(np.meshgrid(np.linspace(-0.1, 0.1, 40), np.linspace(-0.1, 0.1, 40)), -1).reshape(-1, 2)
    upper = np.c_[grid, np.full(len(grid), 0.1)]
    lower = np.c_[grid + [0.1, 0.0], np.zeros(len(grid))]
    below = np.c_[grid, np.full(len(grid), 0.05)]  # facing down: never seen
    points = np.concatenate([upper, lower, below])
    normals = np.concatenate([np.tile([0.0, 0.0, 1.0], (2 * len(grid), 1)), np.tile([0.0, 0.0, -1.0], (len(grid), 1))])
    labels = np.repeat([0, 1, 2], len(grid))
    seen, seen_labels = DepthCamera(noise=0.0, n_points=2000).observe(points, normals, labels, np.random.default_rng(0))
    assert 2 not in seen_labels
    lower_seen = seen[seen_labels == 1]
    assert len(lower_seen) and (lower_seen[:, 0] > 0.1 - 0.015).all()  # the overlap (x < 0.1) is hidden


def test_occluded_samples_stay_hidden_in_a_scene_scaled_twice():
    """The puck standing on half of its goal pad, the scene scaled 2x: no pad sample under the puck is seen, up
    to one pixel at its rim (with samples too sparse for the camera's pixels, the z-buffer lets them through
    wherever a pixel holds no sample of the puck)."""
    camera = DepthCamera(noise=0.0, n_points=4000)
    for episode in range(5):
        task = make_task("push", "original", 0, episode)
        task.transform = SceneTransform(2.0 * np.eye(3), np.zeros(3))
        task.puck[:2] = task.goal[:2] + [task.radius, 0.0]
        seen = task.observe(camera)
        pad = seen["points"][seen["labels"] == 1, :2]
        distance = np.linalg.norm(pad - task.transform.points(task.puck)[:2], axis=1)
        assert len(pad) and distance.min() > 2 * task.radius - camera.pixel


def test_demos_are_deterministic_for_a_seed():
    a, b = (collect_demos("push", 2, seed=5, camera=CAMERA) for _ in range(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = collect_demos("push", 2, seed=6, camera=CAMERA)
    assert not torch.equal(a["points"], c["points"])


def test_augmented_samples_are_one_similarity_of_points_end_effector_and_move():
    """Each augmented sample is its demonstration under one map ``x ↦ s x R + t`` (R about z, s in [1, 2], t on
    the table; the move without ``t``)."""
    demos = collect_demos("pick_place", 1, seed=0, camera=CAMERA)
    config = PolicyTrainConfig(demos=None, augment=True, batch_size=16)
    trainer = PolicyTrainer(config, VNPolicy(2, width=4), demos, torch.Generator().manual_seed(0))
    generator = trainer.generator.get_state()
    batch = trainer.batch()
    index = torch.randint(len(demos["points"]), (16,), generator=torch.Generator().set_state(generator))
    before = torch.cat([demos["points"][index], demos["ee"][index, None]], 1).double()  # [B, N + 1, 3]
    after = torch.cat([batch["points"], batch["ee"][:, None]], 1).double()
    centred = before - before.mean(1, keepdim=True)
    linear = torch.linalg.lstsq(centred, after - after.mean(1, keepdim=True)).solution  # [B, 3, 3]
    shift = after.mean(1) - (before.mean(1, keepdim=True) @ linear)[:, 0]
    assert torch.allclose(before @ linear + shift[:, None], after, atol=1e-5)
    assert torch.allclose(demos["move"][index].double()[:, None] @ linear, batch["move"][:, None].double(), atol=1e-5)
    assert torch.allclose(linear[:, 2, :2], torch.zeros(16, 2, dtype=torch.float64), atol=1e-5)  # z stays vertical
    assert torch.allclose(linear[:, :2, 2], torch.zeros(16, 2, dtype=torch.float64), atol=1e-5)
    factors = torch.linalg.svdvals(linear)
    assert torch.allclose(factors[:, 0], factors[:, 2], rtol=1e-5) and (linear.det() > 0).all()  # similarities
    assert (factors >= 1 - 1e-5).all() and (factors <= 2 + 1e-5).all() and (factors[:, 0] > 1.2).any()
    assert (shift[:, :2].abs() <= 0.4 + 1e-5).all() and (shift[:, :2].abs() > 0.1).any()
    assert torch.allclose(shift[:, 2], torch.zeros(16, dtype=torch.float64), atol=1e-5)


def test_policy_commands_end_to_end(tmp_path, capsys):
    folder = tmp_path / "demos"
    summary = demos(DemosConfig(task="push", out=folder, episodes=2, n_points=64))
    assert summary["steps"] == 2 * TASKS["push"].horizon and (folder / "demos.json").is_file()
    with pytest.raises(ValueError, match="overwrite"):
        demos(DemosConfig(task="push", out=folder, episodes=2))
    run = tmp_path / "run"
    train(PolicyTrainConfig(out=run, demos=folder, encoder="vn", width=8, steps=3, batch_size=4, progress=False))
    results = evaluate(EvalConfig(run=run, settings=("r_sn_p",), episodes=2, progress=False))
    assert 0 <= results["r_sn_p"]["reward"] <= 1 and (run / "eval" / "r_sn_p.png").is_file()
    assert json.loads((run / "eval" / "results.json").read_text())["r_sn_p"]["episodes"] == 2
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        evaluate(EvalConfig(run=tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="policy demos"):
        train(PolicyTrainConfig(out=tmp_path / "other", demos=tmp_path / "missing", progress=False))
