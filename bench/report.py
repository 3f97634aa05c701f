"""Write one benchmark's Markdown section into a shared docs file, leaving the others alone."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from priors3d.runs import atomic_write  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def machine() -> str:
    """One line naming the machine a figure was measured on, with the load at that moment."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}; "
            f"load average {load:.1f} when this line was written (above ~{torch.get_num_threads()}: other "
            f"processes shared the cores and times are pessimistic)")


def write_section(doc: str, name: str, markdown: str) -> Path:
    """Replace the section ``name`` of ``docs/<doc>`` (or append it) with ``markdown``."""
    path = DOCS / doc
    text = path.read_text() if path.exists() else f"# {doc.removesuffix('.md').capitalize()}\n"
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    return atomic_write(path, lambda p: p.write_text(text))
