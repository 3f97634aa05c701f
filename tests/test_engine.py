"""The training engine on a toy trainer: resume, signals, NaN, run-directory protection."""

import os
import signal
import stat

import pytest
import torch

from priors3d import engine
from priors3d.engine import Interrupted, NonFinite, RunConfig
from priors3d.runs import RunDir, RunLocked, atomic_write


class Toy:
    """Linear regression with SGD on batches drawn from the global torch RNG and its own generator."""

    def __init__(self, generator, nan_at=None):
        self.model = torch.nn.Linear(3, 1)
        self.optimiser = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.generator, self.nan_at, self.calls = generator, nan_at, 0

    def step(self, step):
        self.calls += 1
        x = torch.randn(8, 3, generator=self.generator) + torch.randn(8, 3)  # both RNGs matter
        loss = ((self.model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        return {"loss": loss.item()}

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])


def run_toy(out, steps=12, interrupt_after=None, **options):
    with engine.start(RunConfig(out=out, checkpoint_every=5, progress=False, **options), "toy") as run:
        toy = Toy(run.generator)
        if interrupt_after is not None:
            step = toy.step
            toy.step = lambda s: (step(s), s + 1 == interrupt_after and os.kill(os.getpid(), signal.SIGINT))[0]
        run.train(toy, steps, log_every=2)
        return toy, run


def without_time(rows):
    return [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    full, _ = run_toy(tmp_path / "full")
    with pytest.raises(Interrupted, match="step 7 of 12"):
        run_toy(tmp_path / "cut", interrupt_after=7)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 7
    resumed, _ = run_toy(tmp_path / "cut", resume=True)
    assert resumed.calls == 12 - 7  # the checkpoint was used, not a rerun from scratch
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert without_time(RunDir(tmp_path / "cut").read_metrics()) == without_time(RunDir(tmp_path / "full").read_metrics())


def test_resume_restores_state_not_only_the_step(tmp_path, monkeypatch):
    run_toy(tmp_path / "full")
    with pytest.raises(Interrupted):
        run_toy(tmp_path / "cut", interrupt_after=4)
    monkeypatch.setattr(Toy, "load_state_dict", lambda self, state: None)  # a trainer that ignores it
    resumed, _ = run_toy(tmp_path / "cut", resume=True)
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["trainer"]["model"]
    assert not torch.equal(resumed.model.weight, full["weight"])


def test_resume_does_not_repeat_logged_steps(tmp_path):
    with engine.start(RunConfig(out=tmp_path / "cut", checkpoint_every=5, progress=False), "toy") as run:
        with pytest.raises(NonFinite):  # a crash at step 7: rows 2, 4, 6 logged, the checkpoint is at 5
            run.train(Toy(run.generator, nan_at=6), 12, log_every=2)
    run_toy(tmp_path / "cut", resume=True)
    assert [r["step"] for r in RunDir(tmp_path / "cut").read_metrics()] == [2, 4, 6, 8, 10, 12]


def test_nan_loss_stops_with_an_error_and_keeps_the_checkpoint(tmp_path):
    with engine.start(RunConfig(out=tmp_path, checkpoint_every=5, progress=False), "toy") as run:
        with pytest.raises(NonFinite, match="step 8: loss = nan"):
            run.train(Toy(run.generator, nan_at=7), 12)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 5


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run_toy(tmp_path / "run")
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a run written by toy; pass --resume .* or --overwrite"):
        run_toy(tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    (tmp_path / "run" / "picture.png").write_bytes(b"old")
    run_toy(tmp_path / "run", steps=3, overwrite=True)
    assert not (tmp_path / "run" / "picture.png").exists()
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 3


def test_resume_refuses_a_run_of_another_kind(tmp_path):
    run_toy(tmp_path / "run")
    with pytest.raises(ValueError, match="holds a run written by toy, not by other"):
        engine.start(RunConfig(out=tmp_path / "run", resume=True), "other")


def test_second_writer_gets_a_clear_error(tmp_path):
    with engine.start(RunConfig(out=tmp_path), "toy"):
        with pytest.raises(RunLocked, match=f"being written by pid {os.getpid()}"):
            engine.start(RunConfig(out=tmp_path, resume=True), "toy")
    engine.start(RunConfig(out=tmp_path, resume=True), "toy").unlock()  # free again once released


def test_stale_temporary_files_are_removed(tmp_path):
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"x" * 100)
    engine.start(RunConfig(out=tmp_path), "toy").unlock()
    assert not stale.exists()


def test_files_take_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda p: p.write_text("a"))
        os.umask(0o077)
        atomic_write(tmp_path / "b.txt", lambda p: p.write_text("b"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600


def test_truncated_checkpoint_names_the_file(tmp_path):
    run_toy(tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="checkpoint.pt is not a readable checkpoint"):
        engine.start(RunConfig(out=tmp_path, resume=True), "toy")


def test_config_from_dict_rebuilds_nested_configs_and_names_bad_keys():
    from dataclasses import dataclass, field
    from pathlib import Path

    from priors3d.runs import config_from_dict

    @dataclass
    class Inner:
        size: tuple[int, int] = (1, 1)

    @dataclass(kw_only=True)
    class Outer(RunConfig):
        inner: Inner = field(default_factory=Inner)

    config = Outer(out=Path("runs/x"), inner=Inner((2, 3)))
    assert config_from_dict(Outer, {"out": "runs/x", "inner": {"size": [2, 3]}}) == config
    with pytest.raises(ValueError, match='config.json does not fit Outer: can not match "sizes"'):
        config_from_dict(Outer, {"out": "runs/x", "sizes": 3}, "config.json")
    with pytest.raises(ValueError, match='wrong value type for field "seed"'):
        config_from_dict(Outer, {"out": "runs/x", "seed": "zero"})
