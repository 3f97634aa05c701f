"""The JacobiNeRF objective: ``L = L_photo + lambda * L_MI + gamma * mean((||J|| - 1)^2)``.

``L_MI`` is InfoNCE on Jacobian cosines: for an anchor ``i`` with positives ``P(i)`` and every
other pixel ``A(i) = {j != i}`` of the batch,

    L_MI = mean_i mean_{p in P(i)} -log( exp(c_ip / tau) / sum_{a in A(i)} exp(c_ia / tau) ),

with ``c_ij = |cos(J_i, J_j)|`` (the absolute value by default, as in the reference code: a
Jacobian and its negative resonate equally). Anchors without positives do not count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def jacobian_cosines(jacobians: Tensor, absolute: bool = True, eps: float = 1e-12) -> Tensor:
    """``[N, P] -> [N, N]`` cosine (absolute by default) between every two Jacobians."""
    if jacobians.ndim != 2:
        raise ValueError(f"jacobians must be [N, P], got {list(jacobians.shape)}")
    unit = F.normalize(jacobians, dim=-1, eps=eps)
    cos = unit @ unit.T
    return cos.abs() if absolute else cos


def info_nce(cosines: Tensor, positives: Tensor, temperature: float = 1.0) -> Tensor:
    """InfoNCE of anchor-positive against anchor-all similarities (the module docstring's ``L_MI``).

    Args:
        cosines: ``[N, N]`` similarities.
        positives: ``[N, N]`` bool positive pairs (the diagonal is ignored).

    Returns:
        scalar; 0 when no anchor has a positive.
    """
    if cosines.ndim != 2 or cosines.shape[0] != cosines.shape[1] or positives.shape != cosines.shape:
        raise ValueError(f"cosines and positives must both be [N, N], got {list(cosines.shape)} "
                         f"and {list(positives.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    eye = torch.eye(cosines.shape[0], dtype=torch.bool, device=cosines.device)
    logits = (cosines / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = positives & ~eye
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return cosines.sum() * 0.0
    return (-(log_prob.masked_fill(~positives, 0.0)).sum(dim=1)[anchors] / counts[anchors]).mean()


def norm_penalty(jacobians: Tensor) -> Tensor:
    """``mean((||J_i|| - 1)^2)`` over the rows of ``jacobians [N, P]``."""
    return ((jacobians.norm(dim=-1) - 1.0) ** 2).mean()


def shaping_loss(photo: Tensor, jacobians: Tensor, positives: Tensor, lam: float = 1e-2, gamma: float = 1e-2,
                 temperature: float = 1.0, absolute: bool = True) -> dict[str, Tensor]:
    """The total objective and its parts: ``loss``, ``photo``, ``mi``, ``norm`` (all scalars)."""
    mi = info_nce(jacobian_cosines(jacobians, absolute), positives, temperature)
    norm = norm_penalty(jacobians)
    return {"loss": photo + lam * mi + gamma * norm, "photo": photo, "mi": mi, "norm": norm}
