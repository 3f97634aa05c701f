"""priors3d: inject 3D priors into neural networks.

Two halves: Vector Neuron layers that make networks SO(3)-equivariant by construction
(:mod:`priors3d.vn`, :mod:`priors3d.pointcloud`), and mutual-information gradient shaping of
neural fields (:mod:`priors3d.fields`, :mod:`priors3d.shaping`).
"""

import os

# Large CPU tensors on transparent huge pages: PyTorch's own switch, which torch reads at its first
# CPU allocation, so it takes effect when priors3d is imported before any tensor is made. With 4 KB
# pages a training step faults in its freshly mapped memory page by page: about 5.4 million page
# faults per paper-size VN-DGCNN step, 40 times as many as with huge pages (docs/benchmarks.md).
# THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
