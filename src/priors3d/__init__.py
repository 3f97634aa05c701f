"""priors3d: inject 3D priors into neural networks.

Two halves: Vector Neuron layers that make networks SO(3)-equivariant by construction
(:mod:`priors3d.vn`, :mod:`priors3d.pointcloud`), and mutual-information gradient shaping of
neural fields (:mod:`priors3d.fields`, :mod:`priors3d.shaping`).
"""

__version__ = "0.1.0"
