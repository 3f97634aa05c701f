from pathlib import Path

import pytest
import torch

from priors3d.fields.gaussians import GaussianField
from priors3d.fields.scenes import RoomConfig, generate_room
from priors3d.fields.splat_fit import SplatFitConfig, SplatSetup, train_splats
from priors3d.fields.views import Views
from priors3d.shaping.decoder import (decoder_deltas, gaussian_jacobians, knn, loop_gaussian_jacobians,
                                      recall_leakage, render_decoded, solve_edit)
from priors3d.shaping.infogs import (DecoderConfig, SplatEditConfig, SplatShapeConfig, clicked_gaussian,
                                     dominant_labels, edit, make_decoder, parse_pixel, shape, shaping_step)
from priors3d.shaping.losses import jacobian_cosines
from priors3d.shaping.propagate import Click

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def two_groups(n=30, seed=0):
    """Two clusters of round Gaussians, 0.6 apart, labelled 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-0.3, 0.0, 0.0], [0.3, 0.0, 0.0]])
    means = torch.cat([0.1 * torch.randn(n, 3, generator=g) + centres[0], 0.1 * torch.randn(n, 3, generator=g) + centres[1]])
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
    neighbours = knn(field.means.detach(), 4)
    for _ in range(200):
        shaping_step(decoder, optimiser, ids, neighbours, cfg, generator)
    cos = cosines()
    assert cos[same].mean() > 0.95 and cos[~same].mean() < 0.35
    offset = torch.tensor([0.0, 0.0, 0.3])
    theta = solve_edit(decoder, 0, "motion", offset)
    with torch.no_grad():
        moved = decoder_deltas(decoder, theta)[:, :3] - decoder_deltas(decoder)[:, :3]
    torch.testing.assert_close(moved[0], offset)  # the clicked Gaussian moves exactly as asked
    assert recall_leakage(moved, ids == 0, 0.3) == {"recall": 1.0, "leakage": 0.0}


def test_dominant_labels_vote_per_gaussian():
    field, ids = two_groups(n=10)
    c2w, k = camera()
    index = field(c2w, k, 16, 16, return_index=True)["index"]
    labels = torch.where(index >= 0, ids[index.clamp_min(0)], -1)  # a label map that agrees with the groups
    views = Views(images=torch.zeros(1, 16, 16, 3), c2w=c2w[None], intrinsics=k[None], names=["a"])
    votes = dominant_labels(field, views, labels[None], SplatSetup(scene="toy", cull_sigma=3.0, tile=8))
    seen = votes >= 0
    assert seen.any() and torch.equal(votes[seen], ids[seen])
    assert set(index[index >= 0].unique().tolist()) == set(torch.nonzero(seen).flatten().tolist())


def test_shape_and_edit_commands_write_pictures(tmp_path):
    scene = generate_room(RoomConfig(width=16, height=16, n_views=8, test_every=4, light_samples=1,
                                     overview_fov_deg=0.0))
    fit_dir = tmp_path / "fit"
    train_splats(scene, SplatFitConfig(out=fit_dir, iterations=5, init_stride=4, init_view_step=3, picture_views=0,
                                       tile=8))
    import priors3d.shaping.infogs as infogs

    original = infogs.load_fit_scene
    infogs.load_fit_scene = lambda name: scene  # the tiny room instead of the default one
    try:
        summary = shape(SplatShapeConfig(run=fit_dir, out=tmp_path / "shape", iterations=3, fraction=0.5))
        assert summary["step"] == 3 and (tmp_path / "shape" / "metrics.json").exists()
        for op in ("move", "recolor", "remove"):
            result = edit(SplatEditConfig(run=tmp_path / "shape", click="0/8/8", op=op, views=2))
            assert Path(result["picture"]).exists() and result["affected_gaussians"] >= 1
        with pytest.raises(ValueError, match="outside"):
            edit(SplatEditConfig(run=tmp_path / "shape", click="0/16/3"))
    finally:
        infogs.load_fit_scene = original


def test_bad_clicks_are_rejected():
    field = GaussianField.isotropic(torch.zeros(1, 3), torch.full((1,), 0.05), torch.ones(1, 3))
    c2w, k = camera()
    views = Views(images=torch.zeros(1, 16, 16, 3), c2w=c2w[None], intrinsics=k[None], names=["a"])
    setup = SplatSetup(scene="toy", tile=8)
    deltas = torch.zeros(1, 7)
    assert clicked_gaussian(field, deltas, views, setup, Click(0, 8, 8, 0)) == 0
    with pytest.raises(ValueError, match="no Gaussian covers"):
        clicked_gaussian(field, deltas, views, setup, Click(0, 0, 0, 0))
    with pytest.raises(ValueError, match="outside"):
        clicked_gaussian(field, deltas, views, setup, Click(0, 3, 16, 0))
    with pytest.raises(ValueError, match="view/x/y"):
        parse_pixel("0/3")
