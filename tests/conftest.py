import os

import torch

# Two cores on the reference machine, and pytest-xdist runs two workers: one thread each.
torch.set_num_threads(int(os.environ.get("PRIORS3D_TEST_THREADS", "1")))
