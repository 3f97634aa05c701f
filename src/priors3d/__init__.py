"""priors3d: inject 3D priors into neural networks.

Two halves: Vector Neuron layers that make networks SO(3)-equivariant by construction
(:mod:`priors3d.vn`, :mod:`priors3d.pointcloud`, checked with :mod:`priors3d.check`), and
mutual-information gradient shaping of neural fields (:mod:`priors3d.fields`, :mod:`priors3d.shaping`).
Every trainer runs through :mod:`priors3d.engine`. Subpackages load on first use
(``import priors3d; priors3d.vn.VNLinear``), so ``import priors3d`` itself is instant and changes nothing
in the environment.
"""

import importlib
import os

__version__ = "0.1.0"

__all__ = ["check", "efem", "engine", "fields", "metrics", "pointcloud", "policy", "runs", "shaping", "so3",
           "use_huge_pages", "viz", "vn"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_huge_pages(enable: bool = True) -> None:
    """Put large CPU tensors on transparent huge pages (PyTorch's ``THP_MEM_ALLOC_ENABLE``).

    torch reads the switch at its first CPU allocation, so call this before making any tensor (the
    ``priors3d`` command does). With 4 KB pages a paper-size VN-DGCNN training step faults its freshly
    mapped memory in page by page, about 40 times as many faults as with huge pages
    (docs/benchmarks.md). A value already in the environment wins.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1" if enable else "0")
