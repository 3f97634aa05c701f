"""Checkpoints of the Vector Neurons authors' VN-DGCNN (FlyingGiraffe/vnn) in our models.

The fixtures (``shared/fixtures/official-vnn`` beside the clone, see its README.md) hold their models'
float64 outputs on fixed random weights and inputs. Errors are relative, as in :mod:`priors3d.check`:
‖ours − theirs‖ / ‖theirs‖ over all of a fixture's logits (``-s`` prints max-abs errors too).
"""

from pathlib import Path

import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from priors3d import cli, vn
from priors3d.check import assert_invariant
from priors3d.pointcloud.data.shapenetpart import SEG_CLASSES
from priors3d.pointcloud.models import from_official
from priors3d.vn.fused import _BatchNormLeakyReLU, _EdgeConvMean

FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures" / "official-vnn"
TASKS = ("cls", "partseg")


def load_fixture(task: str) -> dict:
    path = FIXTURES / f"vn_dgcnn_{task}.pt"
    if not path.is_file():
        pytest.skip(f"no official Vector Neurons fixture at {path} (shared/fixtures beside the clone)")
    return torch.load(path, weights_only=False)


def model_and_inputs(fixture: dict, exact_eps: bool):
    """Our float64 model (eval mode) holding the fixture's weights, and the fixture's inputs for it."""
    model = from_official(fixture["state_dict"], fixture["task"], exact_eps=exact_eps).double()
    assert not model.training and model.k == fixture["k"] and fixture["pooling"] == "mean"
    if fixture["task"] == "cls":
        return model, (fixture["points"],)
    return model, (fixture["points"], F.one_hot(fixture["category"], model.head.num_classes).double())


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("exact_eps,tolerance", [(True, 1e-10), (False, 1e-4)])
def test_official_checkpoints_give_the_authors_outputs(task, exact_eps, tolerance):
    fixture = load_fixture(task)
    model, inputs = model_and_inputs(fixture, exact_eps)
    with torch.no_grad():
        logits = model(*inputs)
    expected = fixture["logits"]
    assert logits.shape == expected.shape
    error = ((logits - expected).norm() / expected.norm()).item()
    worst = (logits - expected).abs().max().item()
    print(f"{task} exact_eps={exact_eps}: relative {error:.2e}, max abs {worst:.2e} "
          f"(over max |logit|: {worst / expected.abs().max().item():.2e})")
    assert error <= tolerance


def test_unknown_missing_and_misshaped_keys_give_one_error_naming_them():
    state = load_fixture("cls")["state_dict"]
    with pytest.raises(ValueError, match=r"official VN-DGCNN cls model .*: 1 unknown: conv9\.weight$"):
        from_official({**state, "conv9.weight": torch.zeros(3)}, "cls")
    missing = {key: value for key, value in state.items() if key != "conv2.map_to_dir.weight"}
    with pytest.raises(ValueError, match=r": 1 missing: conv2\.map_to_dir\.weight$"):
        from_official(missing, "cls")
    with pytest.raises(ValueError, match=r": 1 of the wrong shape: linear2\.weight \[256, 511\] \(expected \[256, 512"):
        from_official({**state, "linear2.weight": torch.zeros(256, 511)}, "cls")
    renamed = {("model." if i < 8 else "") + key: value for i, (key, value) in enumerate(state.items())}
    with pytest.raises(ValueError, match=r": 8 missing: conv1\..*, \.\.\.; 8 unknown: model\.conv1\..*, \.\.\.$"):
        from_official(renamed, "cls")
    with pytest.raises(ValueError, match="task must be 'cls' or 'partseg'"):
        from_official(state, "detection")


@pytest.mark.parametrize("task", TASKS)
def test_exact_eps_models_stay_rotation_invariant(task):
    model, inputs = model_and_inputs(load_fixture(task), exact_eps=True)
    error = assert_invariant(model, inputs, vector_dim=(-1, None)[:len(inputs)], n_rotations=3,
                             generator=torch.Generator().manual_seed(0))
    print(f"{task}: invariance error {error:.1e}")


def reference_norm_relu(both: Tensor, bn: torch.nn.BatchNorm1d, train: bool) -> Tensor:
    """The reference code's VN batch norm (norm ``‖q‖ + 1e-6``) then VN-LeakyReLU(0.2), through autograd."""
    q, k = both[:, :4], both[:, 4:]
    n = q.norm(dim=2) + 1e-6
    m = F.batch_norm(n, None if train else bn.running_mean, None if train else bn.running_var, bn.weight, bn.bias,
                     train, 0.0, bn.eps)
    return vn.vn_leaky_relu(q / n.unsqueeze(2) * m.unsqueeze(2), k, 0.2)


@pytest.mark.parametrize("train", [True, False])
def test_exact_eps_kernels_match_the_reference_norm_with_gradients(train):
    """On vectors 1e-7 to 1 long (where ε matters), ``VNBatchNorm(exact_eps=True)`` and both fused kernels with
    ``exact_eps`` compute the reference's norm, and the kernels its gradients."""
    torch.manual_seed(0)
    scales = torch.logspace(-7, 0, 6, dtype=torch.float64)            # one length scale per point
    both, per_neighbor, per_center = (torch.randn(3, 8, 3, 6, dtype=torch.float64).mul(scales).requires_grad_()
                                      for _ in range(3))
    norm = vn.VNBatchNorm(4, exact_eps=True).double().train(train)
    with torch.no_grad():
        norm.bn.weight.uniform_(0.5, 1.5), norm.bn.bias.uniform_(-0.5, 0.5)
        norm.bn.running_mean.uniform_(0, 1), norm.bn.running_var.uniform_(0.5, 1)
    expected = reference_norm_relu(both, norm.bn, train)
    torch.testing.assert_close(vn.vn_leaky_relu(norm(both[:, :4]), both[:, 4:], 0.2), expected, rtol=1e-12, atol=0)
    stats = (None, None) if train else (norm.bn.running_mean, norm.bn.running_var)
    bn_args = (norm.bn.weight, norm.bn.bias, *stats, train, 0.1, norm.bn.eps, 0.2)
    index = vn.knn(per_neighbor.detach(), 4)                           # [3, 6, 4]
    edges = vn.gather_neighbors(per_neighbor, index) + per_center.unsqueeze(-1)
    cases = [(_BatchNormLeakyReLU.apply(both, 4, *bn_args, False, True), expected, [both]),
             (_EdgeConvMean.apply(per_neighbor, per_center, index, 4, *bn_args, True),
              reference_norm_relu(edges, norm.bn, train).mean(-1), [per_neighbor, per_center])]
    for out, reference, inputs in cases:
        torch.testing.assert_close(out, reference, rtol=1e-10, atol=1e-13)
        g = torch.randn_like(out)
        wrt = [*inputs, norm.bn.weight, norm.bn.bias]
        for ours, theirs in zip(torch.autograd.grad(out, wrt, g), torch.autograd.grad(reference, wrt, g)):
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12 * theirs.abs().max().item())


def test_eval_command_evaluates_an_official_checkpoint_on_a_modelnet40_folder(tmp_path, capsys):
    """The fixture's clouds as a 40-class ModelNet40 test split labelled with the authors' predictions: the
    command's (float32, rotated) predictions agree with them."""
    fixture = load_fixture("cls")
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    folder.mkdir()
    with h5py.File(folder / "ply_data_test0.h5", "w") as f:
        f["data"] = fixture["points"].float().numpy()
        f["label"] = fixture["logits"].argmax(-1).numpy().astype(np.uint8)[:, None]            # their predictions
    (folder / "shape_names.txt").write_text("".join(f"class{i}\n" for i in range(40)))
    (folder / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    checkpoint = tmp_path / "best_model.pth"
    torch.save({"epoch": 3, "model_state_dict": fixture["state_dict"]}, checkpoint)
    command = ["pointcloud", "eval", "--official-checkpoint", str(checkpoint), "--device", "cpu", "--no-progress"]
    cli.main(command + ["--task", "cls", "--dataset", "modelnet40", "--root", str(folder), "--n-points", "256"])
    metrics = dict(item.split("=") for item in capsys.readouterr().out.split())
    labels = fixture["logits"].argmax(-1)
    loss = F.cross_entropy(fixture["logits"], labels, label_smoothing=0.2).item()  # the eval's label smoothing
    assert metrics["oa"] == "1.0000" and abs(float(metrics["loss"]) - loss) <= 1e-4, (metrics, loss)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(command + ["--task", "cls", "--dataset", "synthetic"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "40 classes; the built-in synthetic data has 15" in message
    assert "a 40-class ModelNet40 folder (--dataset modelnet40 --root FOLDER)" in message
    with pytest.raises(SystemExit):
        cli.main(command + ["--task", "seg"])
    assert "not a state dict of the official VN-DGCNN partseg model" in capsys.readouterr().err


def test_eval_command_evaluates_an_official_part_model_on_a_shapenetpart_folder(tmp_path, capsys):
    """The fixture's clouds as a ShapeNetPart test split, parts labelled with the authors' predictions (restricted
    to each shape's category): the command's (float32, rotated) predictions agree with them."""
    fixture = load_fixture("partseg")
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (root / "train_test_split").mkdir(parents=True)
    names, entries = list(SEG_CLASSES), []
    for i, (points, category, logits) in enumerate(zip(fixture["points"], fixture["category"], fixture["logits"])):
        parts = torch.tensor(SEG_CLASSES[names[category]])
        labels = parts[logits[:, parts].argmax(-1)]
        (root / f"{category:08d}").mkdir()
        rows = torch.cat([points, torch.zeros_like(points), labels[:, None].double()], 1)
        np.savetxt(root / f"{category:08d}" / f"shape{i}.txt", rows.numpy(), fmt="%.9g")
        entries.append(f"shape_data/{category:08d}/shape{i}")
    (root / "synsetoffset2category.txt").write_text("".join(f"{n}\t{i:08d}\n" for i, n in enumerate(names)))
    (root / "train_test_split" / "shuffled_test_file_list.json").write_text(json.dumps(entries))
    checkpoint = tmp_path / "vn_dgcnn_partseg.pt"
    torch.save({"state_dict": fixture["state_dict"]}, checkpoint)
    cli.main(["pointcloud", "eval", "--official-checkpoint", str(checkpoint), "--task", "seg", "--root", str(root),
              "--n-points", "256", "--device", "cpu", "--no-progress"])
    metrics = dict(item.split("=") for item in capsys.readouterr().out.split())
    assert metrics["instance_miou"] == metrics["point_acc"] == "1.0000", metrics
