"""Checkpoints of the Vector Neurons authors' VN-DGCNN (github.com/FlyingGiraffe/vnn) in our models.

Their classifier (``models/vn_dgcnn_cls.py``) and part model (``models/vn_dgcnn_partseg.py``) are
:class:`VNDGCNNCls` and :class:`VNDGCNNSeg` in the reference configuration: mean pooling over
neighbours, one frame per point, the reference heads. Their keys map onto ours by a table of prefixes;
each EdgeConv's feature and direction maps stack into the one weight of :class:`priors3d.vn.VNEdgeConv`.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from priors3d.vn import VNBatchNorm

from .vn_dgcnn import VNDGCNNCls, VNDGCNNSeg

_FRAME = [("invariant.frame_mlp.0.", "std_feature.vn1."), ("invariant.frame_mlp.1.", "std_feature.vn2."),
          ("invariant.frame_mlp.2.", "std_feature.vn_lin.")]
OFFICIAL_PREFIXES = {
    "cls": [*((f"edge_convs.{i}.", f"conv{i + 1}.") for i in range(4)), *_FRAME, ("head.1.", "linear1."),
            ("head.2.", "bn1."), ("head.5.", "linear2."), ("head.6.", "bn2."), ("head.9.", "linear3.")],
    "partseg": [("edge_convs.0.pool.0.", "conv2."), ("edge_convs.0.", "conv1."), ("edge_convs.1.pool.0.", "conv4."),
                ("edge_convs.1.", "conv3."), ("edge_convs.2.", "conv5."), *_FRAME, ("head.embed.0.", "conv7.0."),
                ("head.embed.1.", "conv7.1."), ("head.mlp.0.", "conv8.0."), ("head.mlp.1.", "conv8.1."),
                ("head.mlp.4.", "conv9.0."), ("head.mlp.5.", "conv9.1."), ("head.mlp.8.", "conv10.0."),
                ("head.mlp.9.", "conv10.1."), ("head.mlp.11.", "conv11.")],
}
"""Per task, (our key prefix, theirs), first match wins; then our ``.norm.`` is their ``.batchnorm.``."""
_ALIASES = {f"bn{i}.": f"conv{i}.1." for i in range(7, 11)}  # their part model registers these twice


def _rename(key: str, prefixes) -> str:
    """``key`` with the first matching ``old`` prefix of ``prefixes`` ``(old, new)`` replaced by ``new``."""
    return next((new + key[len(old):] for old, new in prefixes if key.startswith(old)), key)


def official_keys(key: str, task: str) -> list[str]:
    """The official key(s) of our tensor ``key``: two (feature, direction maps) for an EdgeConv's weight."""
    name = _rename(key, OFFICIAL_PREFIXES[task]).replace(".norm.", ".batchnorm.")
    if re.fullmatch(r"edge_convs\.\d+\.weight", key):
        return [name.replace(".weight", ".map_to_feat.weight"), name.replace(".weight", ".map_to_dir.weight")]
    return [name]


def from_official(state_dict: dict[str, Tensor], task: str, exact_eps: bool = False,
                  k: int | None = None) -> nn.Module:
    """Our model, in eval mode, holding an official VN-DGCNN state dict (their key names, e.g.
    ``conv1.map_to_feat.weight``, ``conv1.batchnorm.bn.running_mean``, ``std_feature.vn1...``, ``linear1.weight``).

    ``task``: ``"cls"`` (:class:`VNDGCNNCls`, classes from ``linear3.weight``, ``k`` default 20) or ``"partseg"``
    (``"seg"`` too; :class:`VNDGCNNSeg` taking ``points [B, N, 3]`` and the category one-hot ``[B, K]``, K and the
    parts from ``conv7.0.weight`` and ``conv11.weight``, ``k`` default 40). ``exact_eps`` makes every VN batch
    norm take ``‖v‖ + 1e-6`` as theirs does (default ``sqrt(‖v‖² + 1e-12)``: about 1e-5 relative from their
    outputs). Missing, unknown or mis-shaped keys raise one ValueError naming them.
    """
    task = {"seg": "partseg"}.get(task, task)
    if task not in OFFICIAL_PREFIXES:
        raise ValueError(f"task must be 'cls' or 'partseg', got {task!r}")
    state = {_rename(key.removeprefix("module."), _ALIASES.items()): value for key, value in state_dict.items()}

    def size(key: str, dim: int, default: int) -> int:
        return state[key].shape[dim] if key in state and state[key].ndim > dim else default

    options = dict(pooling="mean", frame="point", reference_head=True)
    if task == "cls":
        model = VNDGCNNCls(size("linear3.weight", 0, 40), k=k or 20, **options)
    else:
        model = VNDGCNNSeg(size("conv7.0.weight", 1, 16), size("conv11.weight", 0, 50), k=k or 40, **options)
    own, shapes = model.state_dict(), {}                    # shapes: official key -> the shape we expect
    for key, target in own.items():
        names = official_keys(key, task)
        for name in names:
            shapes[name] = target.shape if len(names) == 1 else (target.shape[0] // 2, *target.shape[1:])
    missing, unknown = sorted(shapes.keys() - state.keys()), sorted(state.keys() - shapes.keys())
    resized = [f"{name} {list(state[name].shape)} (expected {list(shape)})" for name, shape in shapes.items()
               if name in state and state[name].shape not in (shape, (*shape, 1))]  # Conv1d weights: [O, I, 1]
    if missing or unknown or resized:
        found = [f"{len(keys)} {what}: {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}" for what, keys in
                 (("missing", missing), ("unknown", unknown), ("of the wrong shape", resized)) if keys]
        raise ValueError(f"not a state dict of the official VN-DGCNN {task} model (FlyingGiraffe/vnn): "
                         + "; ".join(found))
    model.load_state_dict({key: torch.cat([state[name].reshape(-1) for name in official_keys(key, task)]).view(
        target.shape) for key, target in own.items()})
    for module in model.modules():
        if isinstance(module, VNBatchNorm):
            module.exact_eps = exact_eps
    return model.eval()
