"""The weights both sides of the benchmark get, on our model and on Ultralytics' twin of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from detector.checkpoint import save_checkpoint
from detector.config.models import model_config
from detector.errors import ConfigError
from detector.eval.report import check_names
from detector.interop import ultralytics as ul
from detector.interop.weights import load_weights
from detector.models import Detector, build_model


@dataclass
class Reference:
    """The architecture both libraries build, the class names and one set of weights for both."""

    arch: str  # yolov8n-x, yolo11n-x
    names: list[str]
    weights: dict[str, torch.Tensor]  # our state_dict keys; line up one to one with Ultralytics'
    described: str  # one line: what the weights are

    def ours(self) -> Detector:
        model = build_model(self.arch, num_classes=len(self.names))
        model.load_state_dict(self.weights)
        return model

    def theirs(self) -> nn.Module:
        """Ultralytics' ``DetectionModel`` of ``<arch>.yaml`` carrying the weights and the names."""
        return their_model(self.arch, len(self.names), self.weights, self.names)

    def write_checkpoint(self, path: Path) -> Path:
        """The weights as a checkpoint of ours (what our predictor loads)."""
        return save_checkpoint(path, self.ours(), model_config(self.arch, len(self.names)), self.names)


def their_model(
    arch: str, num_classes: int, weights: dict[str, torch.Tensor] | None = None, names: list[str] | None = None
) -> nn.Module:
    try:
        return ul.model_from_yaml(arch, num_classes, weights, names)
    except FileNotFoundError as err:
        raise ConfigError(
            f"arch={arch}: Ultralytics has no {arch}.yaml; benchmark a model both libraries build (yolov8n-x, yolo11n-x)"
        ) from err


def reference_weights(arch: str, checkpoint: str | None, seed: int, data_names: list[str]) -> Reference:
    """The weights both sides get, the class names, and a line that says what they are.

    Without ``checkpoint``: Ultralytics' initialisation of ``<arch>.yaml`` (seeded), copied onto
    ours by position. With it: the checkpoint's weights (it must hold the architecture ``arch``
    names, since Ultralytics builds that from its own YAML)."""
    if checkpoint:
        model, meta = load_weights(checkpoint)
        names = list(meta["names"])
        check_names(names, data_names, checkpoint)
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        described = f"checkpoint {checkpoint}, the same on both sides"
    else:
        names = list(data_names)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            theirs = their_model(arch, len(names))
        keys = build_model(arch, num_classes=len(names)).state_dict().keys()
        weights = dict(zip(keys, (t.detach().clone() for t in theirs.state_dict().values())))
        described = f"untrained: Ultralytics' initialisation of {arch}.yaml (seed {seed}), the same on both sides"
    reference = Reference(arch, names, weights, described)
    try:
        reference.ours()
        their_model(arch, len(names), weights)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"the weights do not fit arch={arch} on both sides: {str(err).splitlines()[0]}") from err
    return reference
