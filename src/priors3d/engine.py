"""The one training loop of priors3d: every trainer (point clouds, occupancy, NeRF and Gaussian fits,
JacobiNeRF and InfoGaussian shaping) runs through :func:`train`.

A trainer is an object with ``step(step) -> {name: float}`` (one unit of work: an iteration or an
epoch) and ``state_dict()`` / ``load_state_dict(state)`` (everything it needs to continue: model,
optimiser, scheduler, its own generators). The engine owns the rest:

- the run directory (:class:`Run`): one writer at a time, never replacing a run unless told
  (``--resume`` continues it, ``--overwrite`` replaces it), ``config.json`` with the command's kind;
- seeding, thread count, and resuming from the latest checkpoint: the trainer's state, the global
  random states, the step and the training time, so a run cut after ``k`` steps and resumed ends
  bit-identical to the run that was never cut;
- atomic checkpoints every ``checkpoint_every`` steps, at the end, and on SIGINT/SIGTERM (the step in
  progress finishes, the checkpoint is written and :class:`Interrupted` is raised: one line, no
  traceback, from the CLI; a second signal stops at once, keeping the last checkpoint);
- the progress bar, metric rows in ``metrics.jsonl`` (with the training time, evaluation excluded),
  evaluation hooks, and a check that every reported number is finite (a NaN or Inf loss stops the run
  with an error, never trains on).
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm import tqdm

from priors3d.runs import RunDir, seed_everything

__all__ = ["CommandConfig", "Interrupted", "NonFinite", "Run", "RunConfig", "Trainer", "resolve_device",
           "set_threads", "start"]


@dataclass(kw_only=True)
class CommandConfig:
    """Options every command shares."""

    threads: int | None = None
    """torch CPU threads (None: torch's default); 1 is fastest on a machine shared with other jobs."""
    progress: bool = True
    """Show progress bars."""


@dataclass(kw_only=True)
class RunConfig(CommandConfig):
    """Options every command that writes a training run shares."""

    out: Path
    """Run directory."""
    seed: int = 0
    resume: bool = False
    """Continue the run in ``out`` from its last checkpoint (a fresh run when there is none)."""
    overwrite: bool = False
    """Replace a run that already exists in ``out`` (without it, an existing run is never touched)."""
    device: str = "cpu"
    """cpu, or auto / cuda / cuda:1 for the commands that support a GPU (point clouds)."""
    checkpoint_every: int = 100
    """Write a checkpoint every this many steps (and at the end)."""


class Trainer(Protocol):
    """What a training command gives :func:`train`."""

    def step(self, step: int) -> dict[str, float]:
        """Run training step ``step`` (0-based); return the numbers to log (a ``loss`` among them)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the steps run so far."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""


class NonFinite(ValueError):
    """A step reported a NaN or infinite number: the run stops instead of training on."""


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads`` when ``threads`` is given (must be positive)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


class Run(RunDir):
    """A run directory being written by one command (see :func:`start`)."""

    def __init__(self, config: RunConfig, kind: str, writer: bool = True):
        super().__init__(config.out, create=writer)
        self.config, self.kind_name, self.writer = config, kind, writer
        self.generator = seed_everything(config.seed)
        self.checkpoint: dict[str, Any] | None = None
        self.train_time = 0.0
        """Seconds trained so far (evaluation excluded), resumed from the checkpoint; a trainer's step may read it
        (a schedule over a time budget)."""

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    # --- training ----------------------------------------------------------------------------------
    def train(self, trainer: Trainer, steps: int, *, log_every: int = 1, eval_every: int = 0,
              evaluate: Callable[[int], dict[str, Any]] | None = None,
              on_log: Callable[[list[dict[str, Any]]], None] | None = None,
              time_budget_s: float | None = None, desc: str = "train") -> dict[str, Any]:
        """Run ``trainer`` from the checkpoint (or step 0) to ``steps``; returns ``{step, train_time_s}``.

        A row ``{step, train_time_s, **trainer.step(...)}`` is logged every ``log_every`` steps and
        after the last; ``evaluate(step)`` is merged into the row every ``eval_every`` steps before the
        last (the caller evaluates the final state itself). ``on_log(rows)`` sees every row so far after
        each logged one (curves, CSV). ``time_budget_s`` stops early once training has run that long.
        """
        step, self.train_time = 0, 0.0
        if self.checkpoint is not None:
            trainer.load_state_dict(self.checkpoint["trainer"])
            _set_random_states(self.checkpoint["random"])
            step, self.train_time = self.checkpoint["step"], self.checkpoint["train_time_s"]
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= step] if self.writer else []

        def save() -> None:
            if self.writer:
                self.save_checkpoint({"kind": self.kind_name, "trainer": trainer.state_dict(), "step": step,
                                      "train_time_s": self.train_time, "steps": steps, "random": _random_states()})

        stop = _StopOnSignal()
        bar = tqdm(total=steps, initial=step, desc=desc, dynamic_ncols=True, disable=not self.config.progress)
        try:
            with stop:
                if self.writer:
                    self.write_metrics(rows)  # after a resume: the rows past the checkpoint go
                while step < steps and (time_budget_s is None or self.train_time < time_budget_s):
                    start = time.perf_counter()
                    numbers = trainer.step(step)
                    _check_finite(numbers, step + 1, self.path("checkpoint.pt"))
                    step += 1
                    self.train_time += time.perf_counter() - start
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in numbers.items()}, refresh=False)
                    last = step == steps
                    if step % log_every == 0 or last:
                        row = {"step": step, "train_time_s": self.train_time, **numbers}
                        if evaluate is not None and eval_every and step % eval_every == 0 and not last:
                            row |= evaluate(step)
                        rows.append(row)
                        if self.writer:
                            self.write_metrics(rows)
                        if on_log is not None:
                            on_log(rows)
                    if step % self.config.checkpoint_every == 0 or stop.requested:
                        save()
                    if stop.requested:
                        raise Interrupted(f"stopped by {stop.requested} at step {step} of {steps}; checkpoint "
                                          f"saved in {self.root} (continue with --resume)")
        finally:
            bar.close()
        save()
        return {"step": step, "train_time_s": self.train_time}


def resolve_device(device: str, supported: tuple[str, ...] = ("cpu",)) -> torch.device:
    """``auto`` -> cuda when available and supported, else cpu; any other device must be ``supported``."""
    if device == "auto":
        device = "cuda" if "cuda" in supported and torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}") from None
    if resolved.type not in supported:
        raise ValueError(f"this command runs on {' or '.join(supported)}, got device {device!r}")
    return resolved


def start(config: RunConfig, kind: str, writer: bool = True) -> Run:
    """Open ``config.out`` for a ``kind`` command (``"field fit"``, ``"pointcloud train"``, ...).

    Takes the write lock, seeds everything from ``config.seed``, sets the thread count and then:
    with ``resume``, loads the last checkpoint into ``run.checkpoint`` (None when there is none);
    with ``overwrite``, deletes what a previous run left; otherwise refuses a directory that already
    holds a run. A fresh run gets ``config.json``. ``writer=False`` (other ranks of a data-parallel
    run) only reads.
    """
    if config.checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {config.checkpoint_every}")
    if config.resume and config.overwrite:
        raise ValueError("choose one of resume and overwrite")
    set_threads(config.threads)
    run = Run(config, kind, writer)
    if not writer:
        run.checkpoint = run.load_checkpoint() if config.resume else None
        return run
    run.lock()
    try:
        existing = run.path("config.json").is_file() or run.path("checkpoint.pt").is_file()
        if existing:
            found = run.kind() if run.path("config.json").is_file() else None
            if config.overwrite:
                _clear(run.root)
            elif not config.resume:
                raise ValueError(f"{run.root} already holds a run written by {found or 'priors3d'}; pass --resume "
                                 f"to continue it or --overwrite to replace it")
            elif found != kind:
                raise ValueError(f"{run.root} holds a run written by {found or 'an unknown command'}, not by "
                                 f"{kind}; choose another --out")
        if config.resume and existing:
            run.checkpoint = run.load_checkpoint()
            if run.checkpoint is not None and "trainer" not in run.checkpoint:
                raise ValueError(f"{run.path('checkpoint.pt')} was not written by this priors3d version's "
                                 f"engine; start a new run with --overwrite")
        else:
            run.write_config(config, config.seed, kind)
            run.path("metrics.jsonl").unlink(missing_ok=True)
    except BaseException:
        run.unlock()
        raise
    return run


def _clear(root: Path) -> None:
    """Remove everything in ``root`` but the lock."""
    for entry in root.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _check_finite(numbers: dict[str, float], step: int, checkpoint: Path) -> None:
    bad = {k: v for k, v in numbers.items() if isinstance(v, (int, float)) and not math.isfinite(v)}
    if bad:
        raise NonFinite(f"step {step}: {', '.join(f'{k} = {v}' for k, v in bad.items())}; the run stops here "
                        f"(the last checkpoint, if any, is {checkpoint}). Check the data and cameras for NaN/Inf "
                        f"or lower the learning rate")


def _random_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


class _StopOnSignal:
    """While active, SIGINT/SIGTERM set ``requested`` (the loop then stops cleanly); a second one raises
    KeyboardInterrupt at once. Only in the main thread (signal handlers can only be set there)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
