"""Metrics on hand-made predictions, and tiny end-to-end runs of train / eval / protocols (resume: test_resume.py)."""

import json

import pytest
import torch

from priors3d.metrics import confusion_matrix

from priors3d.pointcloud import metrics
from priors3d.commands.pointcloud import EvalConfig, ProtocolsConfig, evaluate, protocols, train
from priors3d.pointcloud.train import PointCloudTrainConfig, load_run, make_optimizer, protocol_table, resolve

# two categories: 0 with parts {0, 1, 2}, 1 with parts {3, 4}
SEG = [[0, 1, 2], [3, 4]]


def test_classification_metrics():
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, -1])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 1]]      # the void item is skipped
    result = metrics.classification_metrics(confusion)
    assert result["oa"] == pytest.approx(5 / 7)
    assert result["macc"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)


def test_shape_iou_absent_part_counts_one_and_void_ignored():
    target = torch.tensor([[0, 0, 1, 1, -1, -1]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 2]])                           # part 2 only on void points
    iou = metrics.shape_ious(pred, target, torch.tensor([0]), SEG)
    # part 0: 1/2, part 1: 2/3, part 2: absent from truth and (non-void) prediction -> 1
    assert iou.item() == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    pred_missing = torch.tensor([[0, 0, 0, 0, 0, 0]])
    iou = metrics.shape_ious(pred_missing, target, torch.tensor([0]), SEG)
    assert iou.item() == pytest.approx((2 / 4 + 0 + 1) / 3)


def test_restricted_prediction_only_uses_category_parts():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 9.0, 1.0]], [[5.0, 0.0, 0.0, 1.0, 2.0]]])   # [B=2, N=1, P=5]
    pred = metrics.restricted_prediction(logits, torch.tensor([0, 1]), SEG)
    assert pred.tolist() == [[0], [4]]


def test_instance_and_class_miou():
    meter = metrics.SegmentationMeter(SEG)
    target = torch.tensor([[0, 1, 2, 2], [0, 0, 1, 1], [3, 3, 4, 4]])
    pred = torch.tensor([[0, 1, 2, 2], [0, 0, 0, 0], [3, 3, 4, 4]])
    meter.update(pred, target, torch.tensor([0, 0, 1]))
    shape2 = (2 / 4 + 0 + 1) / 3
    result = meter.compute()
    assert result["instance_miou"] == pytest.approx((1 + shape2 + 1) / 3)
    assert result["class_miou"] == pytest.approx(((1 + shape2) / 2 + 1) / 2)


def test_protocol_table_layout():
    table = protocol_table({"vn_dgcnn": {"z/z": 0.9, "z/so3": 0.88}}, ("z/z", "z/so3", "so3/so3"), "oa")
    lines = table.splitlines()
    assert lines[0] == "| Model (oa, %) | z/z | z/SO(3) | SO(3)/SO(3) |"
    assert lines[2] == "| vn_dgcnn | 90.0 | 88.0 | – |"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def tiny(cache, out, **kwargs):
    options = dict(root=cache, per_class=2, test_per_class=1, n_points=64, k=6, width_divisor=8, batch_size=6,
                   epochs=1, seed=3, device="cpu", progress=False, out=out)
    return PointCloudTrainConfig(**(options | kwargs))


def test_train_writes_run_and_eval_reads_it(cache, tmp_path):
    out = tmp_path / "run"
    first = train(tiny(cache, out, model="vn_pointnet", rotation="z/so3", epochs=2))
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl", "metrics.csv", "metrics.json", "curves.png",
                 "confusion.png"):
        assert (out / name).is_file(), name
    assert 0.0 <= first["oa"] <= 1.0 and 0.0 <= first["macc"] <= 1.0
    saved = json.loads((out / "config.json").read_text())
    assert saved["kind"] == "pointcloud train" and saved["seed"] == 3 and saved["config"]["model"] == "vn_pointnet"
    assert saved["config"]["scale"] == [1.0, 1.0]  # the run records the augmentation it trained with
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and "test/oa" in records[0]
    final = json.loads((out / "metrics.json").read_text())
    assert final["oa"] == first["oa"] and final["rotation"] == "so3" and final["step"] == 2
    csv_rows = (out / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[0].startswith("step,train_time_s,lr,")   # header + two epochs
    assert f"{first['oa']}" in csv_rows[2]                                           # final test metrics

    again = evaluate(EvalConfig(run=out, device="cpu", progress=False))
    assert again["oa"] == pytest.approx(first["oa"])
    assert (out / "eval-so3.json").is_file()

    with pytest.raises(ValueError, match="already holds a run written by pointcloud train"):
        train(tiny(cache, out, model="vn_pointnet"))

    config = json.loads((out / "config.json").read_text())
    config["config"]["width_divisor"] = 4  # no longer the architecture the checkpoint holds
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="checkpoint.pt does not fit the VNPointNetCls"):
        evaluate(EvalConfig(run=out, device="cpu"))
    config["config"]["widths"] = 4  # an option this version does not know
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json does not fit PointCloudTrainConfig: can not match \"widths\""):
        evaluate(EvalConfig(run=out, device="cpu"))


def test_eval_of_a_mistyped_path_creates_nothing(tmp_path):
    missing = tmp_path / "runs" / "typo"
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        load_run(missing, torch.device("cpu"))
    assert not (tmp_path / "runs").exists()


def test_eval_refuses_a_run_of_another_kind(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "occupancy train", "config": {}}))
    with pytest.raises(ValueError, match="was written by occupancy train; 'priors3d pointcloud eval' expects"):
        evaluate(EvalConfig(run=tmp_path, device="cpu"))


def test_segmentation_run_writes_pictures(cache, tmp_path):
    out = tmp_path / "seg"
    result = train(tiny(cache, out, model="dgcnn", task="seg", rotation="none/none"))
    assert (out / "segmentation.png").is_file() and (out / "curves.png").is_file()
    assert 0.0 <= result["class_miou"] <= 1.0 and 0.0 <= result["instance_miou"] <= 1.0


def test_protocols_end_to_end(cache, tmp_path):
    config = ProtocolsConfig(models=("pointnet",), protocols=("z/z", "z/so3"), train=tiny(cache, None),
                             out=tmp_path / "protocols", progress=False)
    results = protocols(config)
    assert set(results["pointnet"]) == {"z/z", "z/so3"}
    table = (tmp_path / "protocols" / "protocols.md").read_text()
    assert table.startswith("| Model (oa, %) | z/z | z/SO(3) |") and "| pointnet |" in table
    assert (tmp_path / "protocols" / "pointnet-z" / "checkpoint.pt").is_file()


def test_protocols_over_seeds_give_mean_and_spread(cache, tmp_path):
    config = ProtocolsConfig(models=("pointnet",), protocols=("z/z",), train=tiny(cache, None), seeds=(3, 4),
                             out=tmp_path / "protocols", progress=False)
    results = protocols(config)
    saved = json.loads((tmp_path / "protocols" / "protocols.json").read_text())
    runs = saved["per_seed"]["pointnet"]["z/z"]
    assert len(runs) == 2 and results["pointnet"]["z/z"] == pytest.approx(sum(runs) / 2)
    for seed in (3, 4):
        saved_config = json.loads((tmp_path / "protocols" / f"pointnet-z-seed{seed}" / "config.json").read_text())
        assert saved_config["config"]["seed"] == seed
    row = (tmp_path / "protocols" / "protocols.md").read_text().splitlines()[2]
    assert row == f"| pointnet | {100 * sum(runs) / 2:.1f} ± {100 * abs(runs[0] - runs[1]) / 2 ** 0.5:.1f} |"


def test_bad_protocol_rejected(cache, tmp_path):
    with pytest.raises(ValueError, match="TRAIN/TEST"):
        train(tiny(cache, tmp_path / "bad", rotation="z-so3"))


def test_scale_augmentation_defaults_to_off_for_vn_models_only():
    for model, expected in [("vn_pointnet", (1.0, 1.0)), ("vn_dgcnn", (1.0, 1.0)), ("pointnet", (0.8, 1.25)),
                            ("dgcnn", (0.8, 1.25))]:
        assert resolve(PointCloudTrainConfig(model=model)).scale == expected, model
    assert resolve(PointCloudTrainConfig(model="vn_dgcnn", scale=(0.5, 2.0))).scale == (0.5, 2.0)


def test_learning_rate_warms_up_then_decays_to_one_hundredth():
    config = PointCloudTrainConfig(epochs=4, warmup_epochs=1.0, optimizer="sgd", lr=0.1)
    optimizer, scheduler = make_optimizer(config, torch.nn.Linear(2, 2), steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3) and rates[10] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(rates[:10], rates[1:11]))      # linear warm-up over the first epoch
    assert all(a > b for a, b in zip(rates[10:39], rates[11:40]))   # then cosine decay
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)   # lr / 100 after the last step
