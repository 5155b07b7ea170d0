"""Model surgery before training: weights copied from another model where names and shapes fit
(``train.init``), layers frozen (``train.freeze``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def copy_fitting(model: nn.Module, source: nn.Module) -> tuple[int, list[str]]:
    """Copy every tensor of ``source`` whose name and shape fit into ``model``; returns how many were
    copied and the names of ``model``'s tensors left as they were (a class-count change leaves the
    class outputs freshly initialised)."""
    own = model.state_dict()
    fitting = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return len(fitting), sorted(set(own) - set(fitting))


def layer_names(model: nn.Module) -> list[str]:
    """Layers in forward order for ``train.freeze=N``: the backbone's stem and each element of its
    stages (the Ultralytics layer order for CSPDarknet), the neck's blocks, the head."""
    names = []
    backbone = model.backbone
    if hasattr(backbone, "stem") and hasattr(backbone, "stages"):
        names.append("backbone.stem.")
        for i, stage in enumerate(backbone.stages):
            names += [f"backbone.stages.{i}.{j}." for j in range(len(stage))]
    else:
        names.append("backbone.")
    names += [f"neck.{name}." for name, _ in model.neck.named_children()]
    return names + ["head."]


def freeze(model: nn.Module, spec: int | Sequence[str] | None) -> None:
    """Stop gradients of the first ``spec`` layers (:func:`layer_names`), or of every parameter whose
    name starts with one of the prefixes ``spec`` lists. None, 0 or an empty list freeze nothing."""
    if spec is None or spec == [] or spec == 0:
        return
    prefixes = layer_names(model)[: int(spec)] if isinstance(spec, int) else [str(p) for p in spec]
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)
