"""EFEM: analytic shapes and scans, the SIM(3)-equivariant prior, scenes, E-M, AP and the baseline."""

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from priors3d import check
from priors3d.efem import (Code, EFEMTrainConfig, EMConfig, ShapePrior, average_precision, build_prior,
                           dbscan_instances, evaluate_prior, instance_ap, load_prior, make_scene, merge_duplicates,
                           object_scans, object_sdf, point_normals, sample_params, sdf_box, segment,
                           surface_points)
from priors3d.efem.train import PriorTrainer, scan_pool, train_prior
from priors3d.so3 import random_rotation


def _scan(dtype=torch.float64, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return object_scans("mug", sample_params("mug", n, g, dtype), 128, g, resolution=16)


def _similarity(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return random_rotation(1, g, dtype)[0], 0.5 + 2 * torch.rand((), generator=g, dtype=dtype), \
        torch.randn(3, generator=g, dtype=dtype) * 3


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_vn_prior_codes_and_sdf_follow_any_similarity(dtype, tolerance):
    """t ↦ λ t R + τ, s ↦ λ s, z_so3 ↦ z_so3 R, z_inv fixed, SDF(λ x R + τ) = λ SDF(x), on a real partial
    scan.
    float32: relative errors stay below check.TOLERANCE (1e-4); we see ~1e-6 (rounding through a 6-layer net)."""
    prior = ShapePrior("vn").to(dtype).eval()
    scans = _scan(dtype)
    queries = scans + 0.05 * torch.randn(scans.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    rotation, lam, tau = _similarity(dtype)
    with torch.no_grad():
        a, b = prior.encode(scans), prior.encode(lam * scans @ rotation + tau)
        sdf_a, sdf_b = prior.sdf(a, queries), prior.sdf(b, lam * queries @ rotation + tau)

    def rel(x, y):
        return ((x - y).norm() / y.norm()).item()
    assert rel(b.t, lam * a.t @ rotation + tau) <= tolerance
    assert rel(b.s, lam * a.s) <= tolerance
    assert rel(b.z_so3, a.z_so3 @ rotation) <= tolerance
    assert rel(b.z_inv, a.z_inv) <= tolerance
    assert rel(sdf_b, lam * sdf_a) <= tolerance
    check.assert_equivariant(lambda x: prior.encode(x).z_so3, scans, vector_dim=-1, output_vector_dim=-1,
                             tolerance=tolerance)


def test_pointnet_prior_is_not_rotation_equivariant():
    prior = ShapePrior("pointnet").double().eval()
    assert check.equivariance_error(lambda x: prior.encode(x).z_so3, _scan(), vector_dim=-1,
                                    output_vector_dim=-1) > 1e-2


def test_upright_training_needs_no_rotation_augmentation(tmp_path):
    """After a few upright training steps the VN prior's SDF error on rotated scans equals the upright one;
    the PointNet prior's does not."""
    errors = {}
    torch.manual_seed(0)
    for encoder in ("vn", "pointnet"):
        config = EFEMTrainConfig(out=tmp_path, encoder=encoder, batch_size=4, n_points=64, n_queries=64,
                                 resolution=12, channels=8, latent=4, invariant=8, hidden=16, k=6, objects=8,
                                 views=1, test_objects=4, steps=3)
        model = build_prior(config)
        trainer = PriorTrainer(config, model, torch.Generator().manual_seed(0))
        for i in range(3):
            trainer.step(i)
        errors[encoder] = evaluate_prior(model, config, seed=0)
    vn, plain = errors["vn"], errors["pointnet"]
    assert vn["sdf_l1_so3"] == pytest.approx(vn["sdf_l1"], rel=1e-4)
    assert abs(plain["sdf_l1_near_so3"] - plain["sdf_l1_near"]) > 1e-2 * plain["sdf_l1_near"]


class _FixedPrior(nn.Module):
    """A stand-in prior: a sphere field of slope ``slope`` and a code whose first vector is always +z."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def encode(self, scans):
        b = len(scans)
        z_so3 = torch.tensor([0.0, 0.0, 2.0]).expand(b, 2, 3)
        return Code(torch.tensor([0.1, 0.0, 0.0]).expand(b, 1, 3), torch.full((b, 1, 1), 2.0), z_so3,
                    torch.zeros(b, 6))

    def sdf(self, code, points):
        return self.slope * ((points - code.t).norm(dim=-1) - 0.4)


def test_prior_quality_reports_slope_centre_scale_and_up_axis():
    """``surface_gradient`` is the field's slope at the surface; centre and scale errors are ``|t|`` and
    ``|log s|``; the up axis is right upright (0°, never flipped) and, for a code that ignores the scan's
    rotation, wrong under rotations (flipped for about half)."""
    config = EFEMTrainConfig(out=Path("unused"), n_points=32, n_queries=256, resolution=12, views=1,
                             test_objects=32)
    quality = evaluate_prior(_FixedPrior(0.3), config, seed=0)
    assert quality["surface_gradient"] == pytest.approx(0.3, rel=1e-5)
    assert quality["up_error_deg"] == pytest.approx(0.0, abs=1e-3) and quality["up_flipped"] == 0.0
    assert quality["up_error_deg_so3"] > 30 and 0.2 < quality["up_flipped_so3"] < 0.8
    assert quality["centre_error"] == pytest.approx(0.1) and quality["log_scale_error"] == pytest.approx(math.log(2))
    assert quality["sdf_l1_near_zero"] > 0


def test_box_sdf_is_exact_and_csg_objects_bound_the_distance():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(1, 500, 3, generator=g, dtype=torch.float64)
    half = torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64)
    surface = torch.rand(1, 20000, 3, generator=g, dtype=torch.float64) * 2 - 1
    surface = surface / surface.abs().amax(-1, keepdim=True) * half        # points on the box's faces
    brute = torch.cdist(p, surface)[0].amin(1)
    inside = (p.abs() < half).all(-1)[0]
    exact = sdf_box(p, torch.zeros(1, 3, dtype=torch.float64), half)[0]
    assert torch.allclose(exact.abs(), brute, atol=1e-2) and bool(((exact < 0) == inside).all())
    for category in ("mug", "chair"):
        params = sample_params(category, 2, g, torch.float64)
        on = surface_points(lambda x: object_sdf(category, params, x), 2000, 2, g, dtype=torch.float64)
        assert object_sdf(category, params, on).abs().max() < 1e-4
        queries = torch.rand(2, 300, 3, generator=g, dtype=torch.float64) * 2 - 1
        distance = torch.cdist(queries, on).amin(-1)
        assert bool((object_sdf(category, params, queries).abs() <= distance + 0.03).all())


def test_scans_lie_on_the_visible_surface_and_fewer_views_see_less():
    g = torch.Generator().manual_seed(0)
    params = sample_params("chair", 3, g, torch.float64)
    one = object_scans("chair", params, 400, torch.Generator().manual_seed(1), max_views=1, noise=0.0, occluder=0.0)
    assert object_sdf("chair", params, one).abs().max() < 2e-3
    dense = surface_points(lambda x: object_sdf("chair", params, x), 3000, 3, g, dtype=torch.float64)
    covered = (torch.cdist(dense, one).amin(-1) < 0.05).double().mean()
    assert covered < 0.8                                                  # one view sees part of the chair


def test_so3_scenes_differ_from_upright_ones_only_by_the_targets_rotations():
    """Same seed: the same objects (categories, parameters, scales) and clutter orientations; the targets are
    turned off the vertical in the SO(3) layout only."""
    upright, turned = make_scene("chair", "z", 5), make_scene("chair", "so3", 5)
    assert len(upright.instances) == len(turned.instances)
    for a, b in zip(upright.instances, turned.instances):
        assert a.category == b.category and torch.equal(a.params, b.params) and a.scale == b.scale
        tilted = abs(b.rotation[2, 2].item()) < 1 - 1e-6  # the object's up axis left the vertical
        assert tilted == (b.category == "chair")
        if b.category != "chair":
            assert torch.equal(a.rotation, b.rotation)


def test_scenes_are_deterministic_and_piles_touch():
    a, b = make_scene("mug", "piles", 3), make_scene("mug", "piles", 3)
    assert torch.equal(a.points, b.points) and torch.equal(a.instance, b.instance)
    other = make_scene("mug", "piles", 4).points
    assert other.shape != a.points.shape or not torch.equal(other, a.points)
    targets = [inst for inst in a.instances if inst.category == "mug"]
    assert 2 <= len(targets) <= 6
    assert all(0.5 <= inst.scale <= 2.0 for inst in targets)
    # each pile member but the first placed slid until it touched: its surface comes within 2% of another's
    from priors3d.efem.scenes import _surface
    g = torch.Generator().manual_seed(0)
    touching = 0
    for i, inst in enumerate(a.instances):
        if inst.category == "mug":
            surface = _surface(inst, 400, g)
            gap = min(other.sdf(surface).min().item() for j, other in enumerate(a.instances) if j != i)
            touching += gap < 0.02 * inst.scale
    assert touching >= len(targets) - 1
    assert a.points[:, 2].min() > -0.02                                   # nothing below the floor
    with pytest.raises(ValueError, match="layout"):
        make_scene("mug", "stacked", 0)


class SphereOracle(nn.Module):
    """A perfect 'prior' of the spheres of radius 0.3 at ``centres``: a sample's hypothesis is the sphere nearest
    its centroid (so the test exercises the E-M's bookkeeping alone: pruning, merging, assignment)."""

    def __init__(self, centres):
        super().__init__()
        self.centres = centres
        self.unused = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def encode(self, points):
        b = len(points)
        nearest = torch.cdist(points.mean(1), self.centres).argmin(1)
        return Code(self.centres[nearest][:, None], torch.ones(b, 1, 1, dtype=points.dtype),
                    torch.zeros(b, 1, 3, dtype=points.dtype), torch.zeros(b, 1, dtype=points.dtype))

    def sdf(self, code, points):
        return (points - code.t).norm(dim=-1) - 0.3


def test_em_finds_each_instance_once():
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(2, 600, 3, generator=g, dtype=torch.float64)
    centres = torch.tensor([[0, 0, 1.0], [1.5, 0, 1.0]], dtype=torch.float64)
    spheres = 0.3 * direction / direction.norm(dim=-1, keepdim=True) + centres[:, None]
    floor = torch.cat([torch.rand(400, 2, generator=g, dtype=torch.float64) * 3 - 1,
                       torch.zeros(400, 1, dtype=torch.float64)], 1)
    points = torch.cat([spheres.reshape(-1, 3), floor])
    truth = torch.cat([torch.zeros(600), torch.ones(600), -torch.ones(400)]).long()
    found = segment(SphereOracle(centres), points, EMConfig(proposals=12, seed_radius=(0.2, 0.5), isolated_iterations=3,
                                                     joint_iterations=2), g)
    assert len(found.masks) == 2
    assert instance_ap([(found.masks, found.confidence)], [truth])["AP"] == pytest.approx(1.0)


def test_point_normals_are_the_surface_normals():
    """Unsigned PCA normals: exact on a plane, radial (to the neighbourhood's curvature) on a sphere."""
    g = torch.Generator().manual_seed(0)
    plane = torch.cat([torch.rand(300, 2, generator=g, dtype=torch.float64), torch.full((300, 1), 0.5,
                                                                                        dtype=torch.float64)], 1)
    assert point_normals(plane, 16)[:, 2].abs().min() == pytest.approx(1.0, abs=1e-12)
    sphere = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    sphere = sphere / sphere.norm(dim=-1, keepdim=True)
    cosine = (point_normals(sphere, 16) * sphere).sum(-1).abs()
    assert cosine.min() > 0.99  # 16 neighbours span ~4 degrees of arc: the tilt stays far below 8 degrees


def _icosahedron_points(n: int, circumradius: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` points uniform on an icosahedron's faces (a sphere-like solid whose faces turn abruptly)."""
    golden = (1 + 5 ** 0.5) / 2
    corners = torch.tensor([(0, a, b) for a in (-1, 1) for b in (-golden, golden)], dtype=torch.float64)
    corners = torch.cat([corners, corners.roll(1, 1), corners.roll(2, 1)])
    corners = circumradius * corners / corners.norm(dim=-1, keepdim=True)
    distance = torch.cdist(corners, corners)
    edge = distance.masked_fill(torch.eye(12, dtype=torch.bool), 9).min()
    faces = torch.tensor([f for f in itertools.combinations(range(12), 3)  # the 20 triples of mutual neighbours
                          if all(torch.isclose(distance[i, j], edge) for i, j in itertools.combinations(f, 2))])
    assert len(faces) == 20
    u, v = torch.rand(2, n, 1, generator=generator, dtype=torch.float64)
    fold = u + v > 1
    u, v = torch.where(fold, 1 - u, u), torch.where(fold, 1 - v, v)
    tri = corners[faces[torch.randint(len(faces), (n,), generator=generator)]]
    return tri[:, 0] + u * (tri[:, 1] - tri[:, 0]) + v * (tri[:, 2] - tri[:, 0])


def test_em_confidence_prefers_the_shape_whose_normals_agree():
    """A sphere and an icosahedron lie equally within the sphere hypotheses' inlier band (coverage 1 both), but the
    icosahedron's faces turn away from the spheres' gradient: it must come out less confident."""
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0, 0, 1.0], [1.5, 0, 1.0]], dtype=torch.float64)
    direction = torch.randn(800, 3, generator=g, dtype=torch.float64)
    sphere = 0.3 * direction / direction.norm(dim=-1, keepdim=True) + centres[0]
    solid = _icosahedron_points(800, 0.33, g) + centres[1]
    points = torch.cat([sphere, solid])
    found = segment(SphereOracle(centres), points, EMConfig(proposals=12, seed_radius=(0.2, 0.5),
                                                            isolated_iterations=3, joint_iterations=2), g)
    assert len(found.masks) == 2
    on_sphere = found.masks[:, :800].sum(1) > found.masks[:, 800:].sum(1)
    assert found.masks.sum(1).min() > 700  # both found whole: the confidence, not the coverage, tells them apart
    # sphere: 1 up to the PCA normals' tilt; icosahedron: the mean |cos| between its faces and the radial directions
    # over its surface (0.974 for these samples)
    assert found.confidence[on_sphere].item() > 0.99
    assert found.confidence[~on_sphere].item() < 0.98
    with pytest.raises(ValueError, match="normal_neighbours must be at least 3"):
        segment(SphereOracle(centres), points, EMConfig(normal_neighbours=2), g)


def test_em_confidence_prefers_the_shape_seen_all_round():
    """A whole sphere and a hemisphere both lie on their hypotheses' surfaces (coverage and normals perfect), but the
    hemisphere leaves half of its hypothesis unseen: its confidence must be about half."""
    g = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0, 0, 1.0], [1.5, 0, 1.0]], dtype=torch.float64)
    direction = torch.randn(2, 800, 3, generator=g, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    direction[1, :, 2] = direction[1, :, 2].abs()                        # the second sphere's upper half only
    points = (0.3 * direction + centres[:, None]).reshape(-1, 3)
    found = segment(SphereOracle(centres), points, EMConfig(proposals=12, seed_radius=(0.2, 0.5),
                                                            isolated_iterations=3, joint_iterations=2), g)
    assert len(found.masks) == 2 and found.masks.sum(1).min() > 700
    whole = found.masks[:, :800].sum(1) > found.masks[:, 800:].sum(1)
    assert found.confidence[whole].item() > 0.95
    # the hemisphere's grid surface: half of it seen, plus the band within inlier·s below its rim
    assert 0.45 < found.confidence[~whole].item() < 0.7
    with pytest.raises(ValueError, match="surface_grid must be at least 2"):
        segment(SphereOracle(centres), points, EMConfig(surface_grid=1), g)


def test_merge_duplicates_keeps_the_most_confident():
    masks = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    kept = merge_duplicates(masks, torch.tensor([0.5, 0.9, 0.1]), iou=0.5)
    assert kept.tolist() == [1, 2]


def test_assigning_points_to_no_proposal_gives_no_mask():
    """E-M can reject every proposal in its last step (a 15-scene benchmark met it): no mask, no error."""
    from priors3d.efem.em import _assign

    masks = _assign(torch.zeros(0, 7), torch.zeros(0, 7, dtype=torch.bool))
    assert masks.shape == (0, 7) and masks.dtype == torch.bool


def test_em_method_starts_every_scene_from_the_same_seed(monkeypatch):
    """A scene's E-M does not depend on the scenes segmented before it: every call gets a fresh generator."""
    from types import SimpleNamespace

    from priors3d.efem import Segmentation, em_method, protocol

    draws = []

    def record(prior, points, config, generator):
        draws.append(torch.rand(4, generator=generator))
        return Segmentation(torch.zeros(0, len(points), dtype=torch.bool), torch.zeros(0), None)

    monkeypatch.setattr(protocol, "segment", record)
    method = em_method(None, EMConfig(), seed=3)
    for _ in range(2):
        method(SimpleNamespace(points=torch.zeros(5, 3)))
    assert torch.equal(draws[0], draws[1]) and method.last.masks.shape == (0, 5)


def test_instance_ap_on_hand_made_predictions():
    """Two instances; predictions by confidence: hit, duplicate (FP), hit at IoU 0.6 → PR points (1/2, 1),
    (1/2, 1/2), (1, 2/3): interpolated AP50 = 1/2 + 1/2 · 2/3 = 5/6; at IoU > 0.6 the third misses: AP = 1/2."""
    truth = torch.tensor([0] * 10 + [1] * 10 + [-1] * 5)
    first = truth == 0
    second = torch.zeros(25, dtype=torch.bool)
    second[10:16] = True                                                 # 6 of 10 points: IoU 0.6
    masks = torch.stack([first, first, second])
    scores = instance_ap([(masks, torch.tensor([0.9, 0.8, 0.7]))], [truth])
    assert scores["AP50"] == pytest.approx(5 / 6) and scores["AP25"] == pytest.approx(5 / 6)
    # thresholds 0.5 and 0.55 see the second hit, 0.6 ... 0.95 do not
    assert scores["AP"] == pytest.approx((2 * 5 / 6 + 8 * 0.5) / 10)
    assert average_precision([], 3) == 0.0


def test_dbscan_baseline_separates_distant_clusters():
    g = torch.Generator().manual_seed(0)
    blobs = torch.randn(2, 200, 3, generator=g) * 0.05 + torch.tensor([[[0, 0, 0.5]], [[2.0, 0, 0.5]]])
    floor = torch.cat([torch.rand(2000, 2, generator=g) * 3, torch.zeros(2000, 1)], 1)   # dense: one cluster if kept
    masks, confidence = dbscan_instances(torch.cat([blobs.reshape(-1, 3), floor]))
    assert len(masks) == 2 and not masks[:, 400:].any()


def test_load_prior_names_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_prior(tmp_path / "nothing")


def test_training_scans_come_from_the_configured_elevations(tmp_path):
    """Cameras below the equator see the underside: their scans lie lower than those of cameras above."""
    heights = {}
    for name, elevation in {"below": (-75.0, -30.0), "above": (30.0, 75.0)}.items():
        config = EFEMTrainConfig(category="mug", elevation=elevation, n_points=64, resolution=12, occluder=0.0)
        heights[name] = scan_pool(config, objects=4, seed=0).scans[..., 2].mean().item()
    assert heights["below"] < heights["above"] - 0.05
    with pytest.raises(ValueError, match="elevation"):
        train_prior(EFEMTrainConfig(out=tmp_path / "run", elevation=(30.0, 10.0), steps=1, progress=False))
