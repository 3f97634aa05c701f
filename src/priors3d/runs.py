"""Run directories: config, metrics, checkpoints and pictures, written atomically, one writer at a time.

A run directory holds ``config.json`` (the command's kind, its config dataclass, the seed, the git
commit and the command line), ``metrics.jsonl`` (one JSON object per logged step), ``checkpoint.pt``
and PNG pictures. Every file is written to a temporary name in the same folder and renamed, so an
interrupted run never leaves a half-written file behind; files take the user's umask. A command that
writes a run holds ``.lock`` (an advisory ``flock``), so a second writer gets a clear error.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import dacite
import numpy as np
import torch

__all__ = ["RunDir", "RunLocked", "atomic_write", "config_from_dict", "git_commit", "load_torch", "open_run",
           "save_figure", "save_json", "save_torch", "seed_everything"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def git_commit() -> str | None:
    """The current git commit of the source tree, or None outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` (atomic on POSIX).

    The file gets the permissions a plain ``open`` would give it (``0o666`` less the umask), not the
    ``0o600`` of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` ``obj`` atomically (checkpoints)."""
    return atomic_write(path, lambda p: torch.save(obj, p))


def load_torch(path: str | os.PathLike) -> Any:
    """``torch.load`` a checkpoint on the CPU; a file that is not one raises a ValueError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable checkpoint (truncated or not written by torch.save): "
                         f"{error}") from None


def save_figure(path: str | os.PathLike, fig) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.generic, torch.Tensor)):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def config_from_dict(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Rebuild the dataclass ``cls`` from its JSON form (nested dataclasses, paths, tuples; with dacite).

    Unknown keys and values of the wrong type raise a ValueError naming them and ``where`` they came from.
    """
    try:
        return dacite.from_dict(cls, values, config=dacite.Config(strict=True, cast=[Path, tuple]))
    except dacite.DaciteError as error:
        raise ValueError(f"{where} does not fit {cls.__name__}: {error}") from None


class RunLocked(RuntimeError):
    """Another process is writing the run directory."""


class RunDir:
    """A run directory: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and pictures."""

    def __init__(self, root: str | os.PathLike, create: bool = True):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self._lock: int | None = None

    def path(self, name: str) -> Path:
        return self.root / name

    # --- one writer --------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the run's write lock (raise ``RunLocked`` if another process holds it) and remove the
        temporary files that a killed writer left behind."""
        fd = os.open(self.path(".lock"), os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLocked(f"{self.root} is being written by {holder}; wait for it to finish or choose "
                            f"another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._lock = fd
        for stale in self.root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing releases the flock
            self._lock = None

    # --- files -------------------------------------------------------------------------------------
    def write_config(self, config: Any, seed: int, kind: str | None = None) -> None:
        save_json(self.path("config.json"), {
            "kind": kind, "config": config, "seed": seed, "git_commit": git_commit(), "argv": sys.argv,
        })

    def read_config(self) -> dict[str, Any]:
        """``config.json`` as written by ``write_config``."""
        path = self.path("config.json")
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: expected a run directory written by a priors3d command")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None

    def kind(self) -> str | None:
        """The command that wrote the run (``field fit``, ``pointcloud train``, ...), from ``config.json``."""
        return self.read_config().get("kind")

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """``metrics.jsonl``: one JSON object per record, the whole file written atomically."""
        text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
        atomic_write(self.path("metrics.jsonl"), lambda p: p.write_text(text))

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path("metrics.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def save_checkpoint(self, state: dict[str, Any], name: str = "checkpoint.pt") -> Path:
        return save_torch(self.path(name), state)

    def load_checkpoint(self, name: str = "checkpoint.pt") -> dict[str, Any] | None:
        """The saved checkpoint, or None when there is none (a fresh run)."""
        path = self.path(name)
        if not path.exists():
            return None
        return load_torch(path)


def open_run(path: str | os.PathLike, kinds: str | tuple[str, ...], command: str) -> RunDir:
    """An existing run directory written by a command of one of ``kinds``, for reading.

    Raises FileNotFoundError for a path that is not a run (creating nothing) and ValueError for a run
    of another kind; both messages name the path and what ``command`` expected.
    """
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    root = Path(path)
    if not root.is_dir() or not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root} is not a run directory (no config.json); '{command}' expects a run "
                                f"written by {' or '.join(kinds)}")
    run = RunDir(root, create=False)
    kind = run.kind()
    if kind not in kinds:
        raise ValueError(f"{root} was written by {kind or 'an unknown command'}; '{command}' expects a run "
                         f"written by {' or '.join(kinds)}")
    return run
