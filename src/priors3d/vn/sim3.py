"""SIM(3): make a rotation-equivariant network translation- and scale-equivariant or -invariant.

A VN network is equivariant to rotations only. Centring the input on its centroid ``c`` and dividing
by a scale statistic ``s`` (both move with the input) gives a canonical input; restoring ``s`` and
``c`` on the output gives the transformation back, as equivariant shape priors (EFEM, EquivAct) do.
For ``x ↦ s'·x R + t``: invariant outputs stay fixed, ``vectors`` scale by ``s'`` and rotate, and
``points`` follow the whole similarity.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn


def centroid(points: Tensor) -> Tensor:
    """Mean of ``points [B, N, 3]`` → ``[B, 1, 3]``."""
    return points.mean(1, keepdim=True)


def scale_statistic(centred: Tensor, kind: Literal["rms", "max"] = "rms", eps: float = 1e-12) -> Tensor:
    """Scale of centred points ``[B, N, 3]`` → ``[B, 1, 1]``: RMS distance or max distance to the centre."""
    dist2 = (centred * centred).sum(-1)
    if kind == "rms":
        return (dist2.mean(1) + eps).sqrt().view(-1, 1, 1)
    if kind == "max":
        return (dist2.amax(1) + eps).sqrt().view(-1, 1, 1)
    raise ValueError(f"scale statistic must be 'rms' or 'max', got {kind!r}")


def canonicalize(points: Tensor, kind: Literal["rms", "max"] = "rms") -> tuple[Tensor, Tensor, Tensor]:
    """``points [B, N, 3]`` → ``((points − c) / s, c [B, 1, 3], s [B, 1, 1])``."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"expected points [B, N, 3], got {list(points.shape)}")
    c = centroid(points)
    s = scale_statistic(points - c, kind)
    return (points - c) / s, c, s


class Sim3Wrapper(nn.Module):
    """Wrap a rotation-equivariant ``net`` taking points ``[B, N, 3]`` to handle translation and scale.

    ``output`` says what the net returns: ``"invariant"`` (returned as is: SIM(3)-invariant),
    ``"vectors"`` (``[B, M, 3]``, multiplied by ``s``: scale-equivariant, translation-invariant, e.g.
    latent vectors or directions), ``"points"`` (``[B, M, 3]``, mapped back as ``s·y + c``: fully
    SIM(3)-equivariant).
    """

    def __init__(self, net: nn.Module, output: Literal["invariant", "vectors", "points"] = "invariant",
                 scale: Literal["rms", "max"] = "rms"):
        super().__init__()
        if output not in ("invariant", "vectors", "points"):
            raise ValueError(f"output must be 'invariant', 'vectors' or 'points', got {output!r}")
        self.net, self.output, self.scale = net, output, scale

    def forward(self, points: Tensor) -> Tensor:
        canonical, c, s = canonicalize(points, self.scale)
        y = self.net(canonical)
        if self.output == "invariant":
            return y
        if y.ndim != 3 or y.shape[-1] != 3:
            raise ValueError(f"output={self.output!r} needs the net to return [B, M, 3], got {list(y.shape)}")
        return y * s if self.output == "vectors" else y * s + c
