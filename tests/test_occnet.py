"""VN-OccNet and OccNet: invariance of decoder and network, the baseline's lack of it, training CLI."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from priors3d.check import equivariance_error, invariance_error
from priors3d.pointcloud.models.occnet import (
    InvariantDecoder,
    VNResnetPointnet,
    build_occnet,
    invariant_features,
)
from priors3d.commands.occupancy import EvalConfig, ProtocolsConfig, evaluate, protocols, train
from priors3d.pointcloud.occupancy_training import OccupancyTrainConfig
from priors3d.so3 import random_rotation

SMALL = dict(c_dim=8, hidden=8, decoder_hidden=16, n_blocks=2, k=6)
PLAIN_SMALL = dict(c_dim=24, hidden=24, decoder_hidden=16, n_blocks=2)


def clouds(dtype=torch.float64, b=3, n=64, t=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(b, n, 3, generator=g, dtype=dtype) * torch.tensor([0.8, 0.5, 0.3], dtype=dtype)
    return inputs + 0.2, torch.randn(b, t, 3, generator=g, dtype=dtype) * 0.7 + 0.2


def trained_a_little(model, steps=3):
    """A few optimiser steps so that zero-initialised branches are no longer zero."""
    inputs, queries = clouds(torch.float32, seed=1)
    target = (queries.norm(dim=-1) < 0.8).float()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(inputs, queries), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def vn_model():
    torch.manual_seed(0)
    return trained_a_little(build_occnet("vn", **SMALL))


@pytest.fixture(scope="module")
def plain_model():
    torch.manual_seed(0)
    return trained_a_little(build_occnet("plain", **PLAIN_SMALL))


# --- invariance ----------------------------------------------------------------------------------

def test_invariant_features_do_not_move_under_rotation():
    g = torch.Generator().manual_seed(0)
    p, c, d = (torch.randn(2, n, 3, generator=g, dtype=torch.float64) for n in (7, 5, 5))
    err = invariance_error(invariant_features, (p, c, d), vector_dim=-1, generator=g)
    assert err < 1e-13
    features = invariant_features(p, c, d)
    assert features.shape == (2, 7, 11)
    torch.testing.assert_close(features[..., 0], (p * p).sum(-1))


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_decoder_is_invariant_when_queries_and_latent_rotate_together(dtype, tolerance):
    torch.manual_seed(0)
    decoder = InvariantDecoder(c_dim=6, hidden=16, n_blocks=2).to(dtype)
    for block in decoder.blocks:      # leave the zero initialisation so that every path is exercised
        torch.nn.init.normal_(block.fc_1.weight)
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(2, 40, 3, generator=g, dtype=dtype)
    latent = torch.randn(2, 6, 3, generator=g, dtype=dtype)
    assert invariance_error(decoder, (queries, latent), vector_dim=-1, generator=g) < tolerance


def test_vn_encoder_is_equivariant():
    torch.manual_seed(0)
    encoder = VNResnetPointnet(c_dim=6, hidden=8, k=6, n_blocks=2).double().eval()
    inputs, _ = clouds()
    inputs = inputs - inputs.mean(1, keepdim=True)
    g = torch.Generator().manual_seed(2)
    assert equivariance_error(encoder, inputs, vector_dim=-1, output_vector_dim=-1, generator=g) < 1e-10


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_vn_occnet_is_invariant_to_rotations_and_translations(vn_model, dtype, tolerance):
    model = vn_model.to(dtype)
    try:
        inputs, queries = clouds(dtype)
        g = torch.Generator().manual_seed(3)
        assert invariance_error(model, (inputs, queries), vector_dim=-1, generator=g) < tolerance
        shift = torch.tensor([0.3, -1.0, 2.0], dtype=dtype)
        torch.testing.assert_close(model(inputs + shift, queries + shift), model(inputs, queries),
                                   atol=tolerance * 10, rtol=tolerance * 10)
    finally:
        vn_model.float()


def test_vn_occnet_is_invariant_in_training_mode_too(vn_model):
    """Batch statistics (the EdgeConv's VN batch norm) are rotation-invariant as well."""
    model = vn_model.double().train()
    try:
        inputs, queries = clouds()
        rotation = random_rotation(1, torch.Generator().manual_seed(4), torch.float64)[0]
        with torch.no_grad():
            torch.testing.assert_close(model(inputs @ rotation, queries @ rotation), model(inputs, queries),
                                       atol=1e-10, rtol=1e-10)
    finally:
        vn_model.float().eval()


def test_plain_occnet_is_not_invariant(plain_model):
    inputs, queries = clouds(torch.float32)
    g = torch.Generator().manual_seed(5)
    assert invariance_error(plain_model, (inputs, queries), vector_dim=-1, generator=g) > 0.05
    # but it is translation-invariant through the centring
    shift = torch.tensor([0.3, -1.0, 2.0])
    torch.testing.assert_close(plain_model(inputs + shift, queries + shift), plain_model(inputs, queries),
                               atol=1e-4, rtol=1e-4)


def test_bad_inputs_are_refused(vn_model):
    inputs, queries = clouds(torch.float32)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        vn_model(inputs[..., :2], queries)
    with pytest.raises(ValueError, match="latent vectors"):
        vn_model.decoder(queries, torch.zeros(3, 5, 3))
    with pytest.raises(ValueError, match="kind"):
        build_occnet("mlp")


@pytest.mark.parametrize("kind,sizes", [("vn", SMALL), ("plain", PLAIN_SMALL)])
def test_both_models_fit_a_fixed_batch(kind, sizes):
    torch.manual_seed(0)
    model = build_occnet(kind, **sizes)
    inputs, queries = clouds(torch.float32, b=4, n=64, t=128, seed=6)
    target = (queries.norm(dim=-1) < 0.7).float()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(40):
        loss = F.binary_cross_entropy_with_logits(model(inputs, queries), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


# --- the commands --------------------------------------------------------------------------------

def tiny_config(tmp_path, **overrides):
    fields = dict(out=tmp_path / "run", epochs=1, batch_size=8, per_class=1, test_per_class=1, n_meshes=2,
                  mesh_resolution=12, data_root=tmp_path / "cache", progress=False, n_queries=64, **SMALL)
    return OccupancyTrainConfig(**(fields | overrides))


def test_train_writes_a_run_and_eval_reads_it(tmp_path):
    config = tiny_config(tmp_path)
    summary = train(config)
    run = config.out
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "results.json", "meshes/so3.png"):
        assert (run / name).is_file(), name
    assert len(list((run / "meshes" / "so3").glob("*.ply"))) == 2
    assert summary["rotation"] == "none/so3" and 0.0 <= summary["test"]["iou"] <= 1.0
    saved = json.loads((run / "config.json").read_text())
    assert saved["kind"] == "occupancy train" and saved["seed"] == 0
    # the VN model's IoU does not depend on the test rotations
    results = evaluate(EvalConfig(run=run, rotation="none", n_meshes=1, mesh_resolution=12, progress=False))
    assert results["iou"] == pytest.approx(summary["test"]["iou"], abs=0.02)
    assert set(json.loads((run / "eval" / "results.json").read_text())) == {"none"}
    assert (run / "eval" / "meshes" / "none.png").is_file()


def test_resume_with_another_model_names_the_checkpoint(tmp_path):
    train(tiny_config(tmp_path))
    with pytest.raises(ValueError, match=r"run/checkpoint.pt does not fit the OccupancyNetwork"):
        train(tiny_config(tmp_path, model="plain", resume=True, c_dim=None, hidden=None))


def test_eval_refuses_a_folder_without_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        evaluate(EvalConfig(run=tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


def test_bad_protocol_rejected(tmp_path):
    with pytest.raises(ValueError, match="TRAIN/TEST"):
        train(tiny_config(tmp_path, rotation="so3"))
    assert not (tmp_path / "run").exists()


def test_protocols_fill_the_three_rows(tmp_path):
    shared = OccupancyTrainConfig(epochs=1, batch_size=8, per_class=1, test_per_class=1, n_meshes=1,
                                  mesh_resolution=12, data_root=tmp_path / "cache", progress=False)
    table = protocols(ProtocolsConfig(out=tmp_path / "p", models=("plain",), train=shared))
    assert set(table) == {"plain none/none", "plain none/so3", "plain so3/so3"}
    assert (tmp_path / "p" / "protocols.json").is_file()
    assert (tmp_path / "p" / "plain_none" / "meshes" / "so3.png").is_file()   # the extra test protocol's meshes
