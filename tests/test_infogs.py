from pathlib import Path

import pytest
import torch

from priors3d.commands import shaping as commands
from priors3d.commands.shaping import SplatEditConfig, splat_edit, splat_shape
from priors3d.fields.gaussians import GaussianField
from priors3d.fields.scenes import RoomConfig, generate_room
from priors3d.fields.splat_fit import SplatFitConfig, SplatSetup, fit_splats
from priors3d.fields.views import Views
from priors3d.runs import RunDir
from priors3d.shaping import infogs
from priors3d.shaping.clicks import Click
from priors3d.shaping.decoder import (OUTPUTS, decoder_deltas, gaussian_jacobians, nearest_neighbours, recall_leakage,
                                      render_decoded, solve_edit)
from priors3d.shaping.infogs import (DecoderConfig, SplatShapeConfig, clicked_gaussian, fill_from_neighbours,
                                     label_weights, load_shaped, make_decoder, shaping_step, voted_labels)
from priors3d.shaping.jacobian import parameter_subset
from priors3d.shaping.losses import jacobian_cosines

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def two_groups(n=30, seed=0):
    """Two clusters of round Gaussians, 0.6 apart, labelled 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-0.3, 0.0, 0.0], [0.3, 0.0, 0.0]])
    means = torch.cat([0.1 * torch.randn(n, 3, generator=g) + centre for centre in centres])
    field = GaussianField.isotropic(means, torch.full((2 * n,), 0.05), torch.rand(2 * n, 3, generator=g))
    return field, torch.cat([torch.zeros(n), torch.ones(n)]).long()


def camera(distance=3.0):
    c2w = torch.eye(4)
    c2w[2, 3] = distance  # at +z looking down -z at the origin
    return c2w, torch.tensor([12.0, 12.0, 8.0, 8.0])


def test_decoder_is_identity_at_initialisation():
    field, _ = two_groups()
    decoder = make_decoder(field, BOX, DecoderConfig())
    deltas = decoder_deltas(decoder)
    assert torch.equal(deltas, torch.zeros(len(field), 7))
    c2w, k = camera()
    assert torch.equal(render_decoded(field, deltas, c2w, k, 16, 16)["rgb"], field(c2w, k, 16, 16)["rgb"])
    assert gaussian_jacobians(decoder, decoder.inputs()).norm(dim=-1).min() > 0  # zero layer, non-zero Jacobians


def loop_gaussian_jacobians(decoder, inputs, output="motion", names=None):
    """The reference for ``gaussian_jacobians``: one ``torch.autograd.grad`` call per Gaussian and output."""
    theta = parameter_subset(decoder, names or decoder.head_names())
    values = decoder(inputs)[:, OUTPUTS[output]]
    rows = []
    for i in range(values.shape[0]):
        per_output = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(values[i, k], list(theta.values()),
                                                                              retain_graph=True)])
                      for k in range(values.shape[1])]
        rows.append(torch.cat(per_output))
    return torch.stack(rows)


@pytest.mark.parametrize("output", ["motion", "color", "opacity"])
@pytest.mark.parametrize("names", [None, ("head.weight", "body.2.weight", "body.0.bias")])
def test_jacobians_match_a_loop_of_autograd_grad(output, names):
    field, _ = two_groups(n=4)
    decoder = make_decoder(field, BOX, DecoderConfig(hidden=8))
    with torch.no_grad():
        decoder.head.weight.normal_(generator=torch.Generator().manual_seed(1))  # so deeper layers matter too
    inputs = decoder.inputs()
    fast = gaussian_jacobians(decoder, inputs, output, names)
    slow = loop_gaussian_jacobians(decoder, inputs, output, names)
    assert fast.shape == slow.shape and fast.shape[0] == 8
    torch.testing.assert_close(fast, slow)


def test_shaping_separates_two_groups_and_a_move_stays_in_its_group():
    field, ids = two_groups()
    decoder = make_decoder(field, BOX, DecoderConfig(feature_dim=0, hidden=32))
    same = ids[:, None] == ids[None, :]

    def cosines():
        return jacobian_cosines(gaussian_jacobians(decoder, decoder.inputs()).detach())

    assert cosines()[~same].mean() > 0.9  # unshaped: everything resonates
    cfg = SplatShapeConfig(run=Path("."), fraction=0.5, lr=1e-2)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)
    neighbours = nearest_neighbours(field.means.detach(), 4)
    for _ in range(200):
        shaping_step(decoder, optimiser, ids, neighbours, cfg, generator)
    cos = cosines()
    assert cos[same].mean() > 0.95 and cos[~same].mean() < 0.35
    offset = torch.tensor([0.0, 0.0, 0.3])
    theta = solve_edit(decoder, 0, "motion", offset)
    with torch.no_grad():
        moved = decoder_deltas(decoder, theta)[:, :3] - decoder_deltas(decoder)[:, :3]
    torch.testing.assert_close(moved[0], offset)  # the clicked Gaussian moves exactly as asked
    spread = recall_leakage(moved, ids == 0, 0.3)
    assert spread["recall"] == 1.0 and spread["leakage"] == 0.0 and spread["drift"] < 0.35


def one_view(c2w, k, size=16):
    return Views(images=torch.zeros(1, size, size, 3), c2w=c2w[None], intrinsics=k[None], names=["a"])


def test_label_weights_are_the_blending_weights_summed_per_label():
    field, _ = two_groups(n=10)
    c2w, k = camera()
    setup = SplatSetup(scene="toy", cull_sigma=None)  # exact: every Gaussian reaches every pixel
    labels = torch.randint(-1, 3, (16, 16), generator=torch.Generator().manual_seed(0))
    weights = label_weights(field, torch.zeros(len(field), 7), c2w, k, labels, 3, setup)
    # Reference: with identity colours, channel i of the render is Gaussian i's weight at each pixel.
    per_pixel = GaussianField(field.means, field.log_scales, field.quaternions, field.opacity_logits,
                              torch.eye(len(field)))(c2w, k, 16, 16)["rgb"]  # [H, W, G]
    reference = torch.stack([(per_pixel * (labels == c)[..., None]).sum(dim=(0, 1)) for c in range(3)], dim=1)
    torch.testing.assert_close(weights, reference)


def test_a_gaussian_takes_the_label_it_contributes_most_to():
    # 0: small and opaque in front of the centre; 1: wide and opaque behind it; 2: faint, behind 1 and off
    # centre, so it dominates no pixel (the old "dominant Gaussian" vote left it unlabelled).
    means = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [1.5, 0.8, -0.5]])
    field = GaussianField.isotropic(means, torch.tensor([0.25, 1.0, 0.3]), torch.ones(3, 3))
    with torch.no_grad():
        field.opacity_logits.copy_(torch.tensor([4.0, 4.0, -1.0]))
    c2w, k = camera()
    v, u = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    labels = torch.where((u - 8) ** 2 + (v - 8) ** 2 < 3.5**2, 0, 1)  # a disc around the centre: mask 0
    labels[0, 0] = -1  # void pixels count nowhere
    setup = SplatSetup(scene="toy", tile=8)
    assert 2 not in field(c2w, k, 16, 16, return_index=True)["index"]
    assert voted_labels(field, one_view(c2w, k), labels[None], setup).tolist() == [0, 1, 1]
    swapped = torch.where(labels >= 0, 1 - labels, -1)
    assert voted_labels(field, one_view(c2w, k), swapped[None], setup).tolist() == [1, 0, 0]
    assert voted_labels(field, one_view(c2w, k), torch.full((1, 16, 16), -1), setup).tolist() == [-1, -1, -1]


def test_unlabelled_gaussians_inherit_from_their_neighbours():
    field, groups = two_groups(n=20)
    ids = groups.clone()
    hidden = torch.tensor([0, 5, 25, 33])
    ids[hidden] = -1
    filled = fill_from_neighbours(field.means, ids, k=5)
    assert torch.equal(filled, groups)
    assert torch.equal(fill_from_neighbours(field.means, torch.full((40,), -1), k=5), torch.full((40,), -1))


def test_a_click_picks_the_clicked_objects_gaussian():
    # A large faint Gaussian of object 1 in front, a small opaque one of object 0 behind it: the front one
    # has the larger weight at the centre pixel, but object 0 is what the pixel shows.
    means = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.02, 0.0, 0.0]])
    field = GaussianField.isotropic(means, torch.tensor([0.8, 0.05, 0.05]), torch.ones(3, 3))
    with torch.no_grad():
        field.opacity_logits.copy_(torch.tensor([-0.5, 4.0, 4.0]))
    c2w, k = camera()
    views, setup, deltas = one_view(c2w, k), SplatSetup(scene="toy", tile=8), torch.zeros(3, 7)
    centre = Click(0, 8, 8, 0)
    assert clicked_gaussian(field, deltas, views, setup, centre) == 0  # the dominant Gaussian
    ids = torch.tensor([1, 0, 0])
    assert clicked_gaussian(field, deltas, views, setup, centre, ids) == 1  # what the labelled Gaussians render
    assert clicked_gaussian(field, deltas, views, setup, Click(0, 1, 1, 0), ids) == 0  # only 0 reaches the corner
    masks = torch.zeros(1, 16, 16, dtype=torch.long)
    assert clicked_gaussian(field, deltas, views, setup, centre, ids, masks) == 1  # the clicked pixel's mask
    assert clicked_gaussian(field, deltas, views, setup, centre, ids, masks + 1) == 0


def test_shape_and_edit_commands_write_pictures(tmp_path, monkeypatch):
    scene = generate_room(RoomConfig(width=16, height=16, n_views=8, test_every=4, light_samples=1,
                                     overview_fov_deg=0.0))
    fit_dir = tmp_path / "fit"
    fit_splats(scene, SplatFitConfig(scene=Path("room"), out=fit_dir, iterations=5, init_stride=4, init_view_step=3,
                                     picture_views=0, tile=8, progress=False))
    for module in (commands, infogs):  # the tiny room instead of the default one
        monkeypatch.setattr(module, "fitted_scene", lambda setup: scene)
    summary = splat_shape(SplatShapeConfig(run=fit_dir, out=tmp_path / "shape", iterations=3, fraction=0.5,
                                           progress=False))
    assert summary["step"] == 3 and (tmp_path / "shape" / "metrics.json").exists()
    for op in ("move", "recolor", "remove"):
        result = splat_edit(SplatEditConfig(run=tmp_path / "shape", click="0/8/8", op=op, views=2))
        assert Path(result["picture"]).exists() and result["affected_gaussians"] >= 1
    run = load_shaped(tmp_path / "shape")
    assert run.ids is not None and run.ids.shape == (len(run.field),) and bool((run.ids >= 0).all())
    assert run.masks.shape == scene.train.instance.shape  # label-free masks, kept in the checkpoint
    with pytest.raises(ValueError, match="outside"):
        splat_edit(SplatEditConfig(run=tmp_path / "shape", click="0/16/3"))
    unshaped = load_shaped(fit_dir)  # a fit run: a fresh decoder, no labels
    assert unshaped.ids is None and torch.equal(decoder_deltas(unshaped.decoder), torch.zeros(len(unshaped.field), 7))
    with pytest.raises(FileNotFoundError, match="'splat edit' expects"):
        load_shaped(tmp_path / "missing")
    RunDir(tmp_path / "other").write_config({}, 0, "field fit")
    with pytest.raises(ValueError, match="was written by field fit; 'splat edit' expects a run written by splat shape or"):
        load_shaped(tmp_path / "other")


def test_bad_clicks_are_rejected():
    field = GaussianField.isotropic(torch.zeros(1, 3), torch.full((1,), 0.05), torch.ones(1, 3))
    c2w, k = camera()
    views, setup = one_view(c2w, k), SplatSetup(scene="toy", tile=8)
    deltas = torch.zeros(1, 7)
    assert clicked_gaussian(field, deltas, views, setup, Click(0, 8, 8, 0)) == 0
    with pytest.raises(ValueError, match="no Gaussian covers"):
        clicked_gaussian(field, deltas, views, setup, Click(0, 0, 0, 0))
    with pytest.raises(ValueError, match="outside"):
        clicked_gaussian(field, deltas, views, setup, Click(0, 3, 16, 0))


def test_label_free_masks_without_depth_maps_use_the_rendered_depth(tmp_path):
    from dataclasses import replace

    from priors3d.shaping.sources import SegmentConfig

    scene = generate_room(RoomConfig(width=16, height=16, n_views=8, test_every=4, light_samples=1,
                                     overview_fov_deg=0.0))
    fit_splats(scene, SplatFitConfig(scene=Path("room"), out=tmp_path / "fit", iterations=5, init_stride=4,
                                     init_view_step=3, picture_views=0, tile=8, progress=False))
    field, setup = infogs.load_splats(tmp_path / "fit")
    bare = replace(scene, train=replace(scene.train, depth=None, semantic=None, instance=None))
    masks = infogs.splat_masks(field, setup, bare, SegmentConfig())
    assert masks.shape == scene.train.instance.shape and masks.dtype == torch.long
    assert bool((masks >= 0).any())
    views_per_id = [len(torch.nonzero(masks == i)[:, 0].unique()) for i in masks[masks >= 0].unique().tolist()]
    assert max(views_per_id) > 1  # some segment associated across views through the Gaussians' depth
    measured = infogs.splat_masks(field, setup, scene, SegmentConfig())  # with the room's depth maps
    assert not torch.equal(masks, measured)
