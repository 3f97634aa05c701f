"""Visuomotor policies: a SIM(3)-equivariant VN policy (EquivAct) and the same head on a plain PointNet.

Both see the observed cloud ``points [B, N, 3]`` with part ``labels [B, N]``, the end-effector ``ee [B, 3]`` and
the gripper state ``gripper [B]`` (1 = closed), and return the end-effector's move ``[B, 3]`` and the gripper's
close logit ``[B]``. Both centre the cloud on its centroid ``c`` and divide by its RMS radius ``s``
(:func:`priors3d.vn.canonicalize`); the end-effector enters as ``(ee − c) / s`` and the predicted move is
multiplied back by ``s``.

:class:`VNPolicy` keeps every vector a vector: per point, the channels ``x̃·[label = k]`` (one per part),
``ẽ`` and ``x̃ − ẽ`` go through VN layers, are pooled, and a VN head outputs the move as one vector channel,
so ``π(g·o) = g·π(o)`` for any rotation, scale and translation ``g`` (the move rotates and scales, it does not
translate); the gripper logit comes from inner products of vector features, which are invariant.
:class:`PointNetPolicy` feeds the same inputs, flattened to numbers, through shared MLPs: invariant to scale
and translation through the normalisation, not to rotation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priors3d.vn import VNLinear, VNLinearLeakyReLU, VNSoftMaxPool, canonicalize


class _Policy(nn.Module):
    """Shared normalisation: subclasses implement ``act(x̃, onehot, ẽ, gripper) -> (move/s [B, 3], logit [B])``."""

    def __init__(self, n_labels: int):
        super().__init__()
        self.n_labels = n_labels

    def forward(self, points: Tensor, labels: Tensor, ee: Tensor, gripper: Tensor) -> tuple[Tensor, Tensor]:
        shapes_ok = points.ndim == 3 and points.shape[-1] == 3 and labels.shape == points.shape[:2]
        if not shapes_ok or ee.shape != (len(points), 3):
            raise ValueError(f"expected points [B, N, 3], labels [B, N], ee [B, 3], got {list(points.shape)}, "
                             f"{list(labels.shape)}, {list(ee.shape)}")
        canonical, c, s = canonicalize(points)
        onehot = F.one_hot(labels, self.n_labels).to(points.dtype)
        move, logit = self.act(canonical, onehot, (ee[:, None] - c) / s, gripper.to(points.dtype))
        return move * s[:, 0], logit

    def act(self, x: Tensor, onehot: Tensor, e: Tensor, gripper: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class VNPolicy(_Policy):
    """EquivAct's policy on a VN-PointNet encoder (``width`` vector channels); see the module docstring."""

    def __init__(self, n_labels: int, width: int = 32):
        super().__init__(n_labels)
        w = width
        self.local = nn.Sequential(VNLinearLeakyReLU(n_labels + 2, w, batchnorm=False),
                                   VNLinearLeakyReLU(w, w, batchnorm=False))
        self.fuse = VNLinearLeakyReLU(2 * w, 2 * w, batchnorm=False)  # each point with the mean of all
        self.pool = VNSoftMaxPool(2 * w)
        self.head = nn.Sequential(VNLinearLeakyReLU(4 * w + 2, w, batchnorm=False),
                                  VNLinearLeakyReLU(w, w, batchnorm=False))
        self.move = VNLinear(w, 1)
        self.pair = VNLinear(w, w)
        self.grip = nn.Sequential(nn.Linear(w + 1, w), nn.ReLU(), nn.Linear(w, 1))

    def act(self, x, onehot, e, gripper):
        """``x [B, N, 3]``, ``onehot [B, N, K]``, ``e [B, 1, 3]``, ``gripper [B]`` → ``move / s [B, 3]``, logit."""
        channels = torch.cat([x.unsqueeze(2) * onehot.unsqueeze(-1), e.expand_as(x).unsqueeze(2),
                              (x - e).unsqueeze(2)], dim=2)  # [B, N, K + 2, 3]
        f = self.local(channels.permute(0, 2, 3, 1))  # [B, w, 3, N]
        f = self.fuse(torch.cat([f, f.mean(-1, keepdim=True).expand_as(f)], 1))
        g = torch.cat([f.mean(-1), self.pool(f), e, e * gripper[:, None, None]], 1)  # [B, 4w + 2, 3]
        h = self.head(g)
        invariant = (h * self.pair(h)).sum(2)  # [B, w]: inner products, rotation-invariant
        return self.move(h)[:, 0], self.grip(torch.cat([invariant, gripper[:, None]], 1))[:, 0]


class PointNetPolicy(_Policy):
    """The same inputs and head shape on a plain PointNet (``width`` scalar channels): rotation-sensitive."""

    def __init__(self, n_labels: int, width: int = 64):
        super().__init__(n_labels)
        w = width
        self.local = nn.Sequential(nn.Linear(n_labels + 6, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU())
        self.fuse = nn.Sequential(nn.Linear(2 * w, 2 * w), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(4 * w + 4, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 4))

    def act(self, x, onehot, e, gripper):
        f = self.local(torch.cat([x, onehot, x - e], -1))  # [B, N, w]
        f = self.fuse(torch.cat([f, f.mean(1, keepdim=True).expand_as(f)], -1))
        out = self.head(torch.cat([f.mean(1), f.amax(1), e[:, 0], gripper[:, None]], 1))
        return out[:, :3], out[:, 3]


def build_policy(encoder: str, n_labels: int, width: int | None = None) -> _Policy:
    """``"vn"`` → :class:`VNPolicy`, ``"pointnet"`` → :class:`PointNetPolicy` (default widths 32 / 64)."""
    policy = {"vn": VNPolicy, "pointnet": PointNetPolicy}.get(encoder)
    if policy is None:
        raise ValueError(f"encoder must be 'vn' or 'pointnet', got {encoder!r}")
    return policy(n_labels, width) if width else policy(n_labels)
