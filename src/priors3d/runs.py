"""Run directories: seed, config, git commit, metrics and checkpoints, written atomically.

A run directory holds ``config.json`` (the config dataclass, the seed, the git commit and the
command line), ``metrics.jsonl`` (one JSON object per evaluation), ``checkpoint.pt`` and PNG
pictures. Every file is written to a temporary name in the same folder and then renamed, so an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


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


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
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


class RunDir:
    """A run directory: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and pictures."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def write_config(self, config: Any, seed: int) -> None:
        save_json(self.path("config.json"), {
            "config": config, "seed": seed, "git_commit": git_commit(), "argv": sys.argv,
        })

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (the whole file is rewritten atomically)."""
        lines = self.read_metrics() + [record]
        text = "".join(json.dumps(r, default=_json_default) + "\n" for r in lines)
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
        return torch.load(path, map_location="cpu", weights_only=False)
