"""Every training command, cut by SIGINT after k steps and resumed, ends bit-identical to the run that
was never cut: same trainer state (parameters, optimiser, generators) and the same metric rows.

Each case is ``run(out, resume) -> None``: one small run of the command into ``out``; the harness
interrupts it with a real SIGINT after ``k`` steps, resumes it, and counts the steps the resumed
process runs (so a trainer that ignores the checkpoint and starts again fails even though a seeded
rerun from scratch would end in the same state).
"""

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from priors3d import engine
from priors3d.engine import Interrupted
from priors3d.runs import RunDir


@dataclass
class Case:
    run: Callable[[Path, bool], None]
    steps: int
    cut: int


CASES: dict[str, Callable[[Path], Case]] = {}
"""Command name -> factory(tmp_path) building any inputs (a fitted field, a data cache) and the case."""


def case(name):
    def register(factory):
        CASES[name] = factory
        return factory
    return register


def equal(a, b, where="state"):
    """Recursive exact equality of checkpoint states; returns the first differing path or None."""
    if isinstance(a, torch.Tensor):
        return None if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else where
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return where
        return next((d for k in a if (d := equal(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return where
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := equal(x, y, f"{where}[{i}]"))), None)
    return None if a == b else where


def untimed(rows):
    return [{k: v for k, v in r.items() if not k.endswith(("time_s", "seconds"))} for r in rows]


class StepCounter:
    """Wraps ``Run.train``: counts trainer steps and sends SIGINT after step ``cut`` (when set)."""

    def __init__(self, monkeypatch, cut=None):
        self.calls, original = 0, engine.Run.train

        def train(run, trainer, steps, **kwargs):
            step = trainer.step

            def counted(i):
                result = step(i)
                self.calls += 1
                if cut is not None and i + 1 == cut:
                    os.kill(os.getpid(), signal.SIGINT)
                return result
            trainer.step = counted
            return original(run, trainer, steps, **kwargs)
        monkeypatch.setattr(engine.Run, "train", train)


@pytest.mark.parametrize("name", sorted(CASES))
def test_cut_and_resumed_run_is_bit_identical(name, tmp_path, monkeypatch):
    spec = CASES[name](tmp_path)
    with monkeypatch.context() as m:
        spec.run(tmp_path / "full", False)
    with monkeypatch.context() as m:
        StepCounter(m, cut=spec.cut)
        with pytest.raises(Interrupted):
            spec.run(tmp_path / "cut", False)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == spec.cut
    with monkeypatch.context() as m:
        counter = StepCounter(m)
        spec.run(tmp_path / "cut", True)
    assert counter.calls == spec.steps - spec.cut, "the resumed run did not start from the checkpoint"
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert full["step"] == cut["step"] == spec.steps
    assert equal(full["trainer"], cut["trainer"], "trainer") is None
    assert untimed(RunDir(tmp_path / "cut").read_metrics()) == untimed(RunDir(tmp_path / "full").read_metrics())


# --- cases ---------------------------------------------------------------------------------------
# Each command's small run. Keep them to a few seconds each.
