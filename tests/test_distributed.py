"""Two processes on loopback (gloo): after training, both ranks hold identical weights and metrics."""

import os
import socket
import time

import torch
import torch.multiprocessing as mp

from priors3d.pointcloud import distributed
from priors3d.pointcloud.data import make_dataset
from priors3d.pointcloud.models import build_model
from priors3d.pointcloud.train import PointCloudTrainConfig, train_pointcloud
from priors3d.runs import seed_everything

TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config: PointCloudTrainConfig, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.process_group("cpu") as context:
        model, metrics = train_pointcloud(config, context)
        torch.save({"state": model.state_dict(), "metrics": metrics}, os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_ranks_hold_identical_weights(tmp_path):
    config = PointCloudTrainConfig(model="vn_pointnet", root=tmp_path / "data", per_class=2, test_per_class=1,
                                   n_points=64, k=6, width_divisor=8, batch_size=4, epochs=1, seed=5, device="cpu",
                                   progress=False, out=tmp_path / "run")
    train_set = make_dataset("synthetic", config.root, "train", config.n_points, per_class=2, progress=False)
    make_dataset("synthetic", config.root, "test", config.n_points, per_class=1, progress=False)
    processes = mp.start_processes(_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2,
                                   join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not processes.join(timeout=1):
        if time.monotonic() > deadline:
            for p in processes.processes:
                p.kill()
            raise AssertionError(f"distributed training did not finish in {TIMEOUT_S} s")

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0["state"].keys() == rank1["state"].keys()
    for name, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][name]), name
    assert rank0["metrics"] == rank1["metrics"]

    # the step changed the weights (both ranks started from the same seeded initialisation)
    seed_everything(config.seed)
    initial = build_model("vn_pointnet", "cls", train_set.num_classes, k=6, width_divisor=8).state_dict()
    assert any(not torch.equal(initial[name], rank0["state"][name]) for name in initial)
    assert (config.out / "checkpoint.pt").is_file() and (config.out / "metrics.json").is_file()
