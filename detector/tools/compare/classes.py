"""Classes matched by name: a model trained on a superset of the data's classes is scored on the
data's classes only, its other classes' outputs dropped before NMS (ours and Ultralytics' module)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from detector.errors import ConfigError
from detector.models.detector import Detector


def class_map(model_names: Sequence[str], data_names: Sequence[str], label: str) -> list[int] | None:
    """For each class of the data, the model's class of the same name; ``None`` when they are the
    same list. A model must know every class of the data (one that lacks some is an error: its
    mAP over the data's classes would be meaningless)."""
    model_names, data_names = list(model_names), list(data_names)
    if model_names == data_names:
        return None
    missing = [n for n in data_names if n not in model_names]
    if missing:
        shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
        raise ConfigError(
            f"{label} has no class named {shown} (the data's classes are matched to the model's by name, "
            f"and the model knows {len(model_names)} classes: {', '.join(model_names[:6])}"
            f"{' ...' if len(model_names) > 6 else ''})"
        )
    duplicated = sorted({n for n in data_names if model_names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{label} has several classes named {', '.join(duplicated)}: cannot match by name")
    return [model_names.index(n) for n in data_names]


def _sliced_conv(conv: nn.Conv2d, keep: Sequence[int]) -> nn.Conv2d:
    """A copy of a (1x1, class-output) conv with only the output channels ``keep``, in that order."""
    out = nn.Conv2d(
        conv.in_channels,
        len(keep),
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
    )
    index = torch.as_tensor(list(keep), dtype=torch.long)
    with torch.no_grad():
        out.weight.copy_(conv.weight[index])
        if conv.bias is not None:
            out.bias.copy_(conv.bias[index])
    return out.to(conv.weight.device)


def restrict_classes(model: Detector, keep: Sequence[int]) -> Detector:
    """A copy of ``model`` predicting only its classes ``keep`` (in that order): the last conv of each
    class branch keeps those output channels. Class scores are independent sigmoids, so this equals
    dropping the other classes' scores before NMS."""
    model = copy.deepcopy(model)
    head = model.head
    branches = getattr(head, "cls", None)
    if branches is None or not all(isinstance(b, nn.Sequential) and isinstance(b[-1], nn.Conv2d) for b in branches):
        raise ConfigError(f"cannot match classes by name for a {type(head).__name__} head")
    for branch in [*branches, *(getattr(head, "one2one_cls", None) or ())]:  # an end-to-end head's second too
        branch[-1] = _sliced_conv(branch[-1], keep)
    head.num_classes = len(keep)
    return model.eval()


def restrict_ultralytics_classes(model: nn.Module, keep: Sequence[int], names: Sequence[str]) -> nn.Module | None:
    """The same restriction on a copy of an Ultralytics ``DetectionModel``: the last conv of each
    ``Detect.cv3`` (and ``one2one_cv3``) branch keeps the channels ``keep`` and the head's class count follows. ``None``
    when the head is not laid out that way (then their validator is not run on it)."""
    model = copy.deepcopy(model)
    detect = model.model[-1]
    branches = getattr(detect, "cv3", None)
    if (
        branches is None
        or not all(isinstance(b, nn.Sequential) and isinstance(b[-1], nn.Conv2d) for b in branches)
        or not hasattr(detect, "reg_max")
    ):
        return None
    for branch in [*branches, *(getattr(detect, "one2one_cv3", None) or ())]:  # YOLO26's second branch too
        branch[-1] = _sliced_conv(branch[-1], keep)
    detect.nc = len(keep)
    detect.no = len(keep) + 4 * detect.reg_max
    model.nc = len(keep)
    if isinstance(getattr(model, "yaml", None), dict):
        model.yaml["nc"] = len(keep)
    model.names = dict(enumerate(names))
    return model.eval()
