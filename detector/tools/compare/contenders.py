"""The contenders of a comparison: what the user named (one of our checkpoints, an Ultralytics
checkpoint read without unpickling code, an Ultralytics YAML name, one of our model configs, or an
exported model), each loaded as our model and, for Ultralytics models, also as their own module; an
exported model (``.onnx``, OpenVINO ``.xml`` or its folder) as its runtime."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.errors import ConfigError
from detector.export.runtime import is_exported, load_exported
from detector.interop import ultralytics as ul
from detector.interop import ultralytics_weights as ulw
from detector.models.detector import Detector

# Ultralytics model YAML names our zoo mirrors layer for layer (an untrained baseline each)
ULTRALYTICS_YAML = re.compile(r"^(yolov8|yolo11|yolo26)([nsmlx])\.ya?ml$")

KIND_OURS = "ours"
KIND_OURS_UNTRAINED = "ours (untrained)"
KIND_ULTRALYTICS = "ultralytics"
KIND_ULTRALYTICS_UNTRAINED = "ultralytics (untrained yaml)"
KIND_EXPORTED = "exported"


@dataclass
class Contender:
    """One model to compare, as given: all of its classes, eval mode, on the CPU."""

    label: str  # what was asked for: a path or a name
    kind: str  # one of the KIND_* values
    model: Detector | None  # ours, or our import of an Ultralytics model; None for an exported model
    names: list[str]  # the model's class names, in class-index order
    ultralytics: nn.Module | None = None  # their DetectionModel, for their validator and their latency
    notes: list[str] = field(default_factory=list)
    exported: Any = None  # an exported model's runtime (OnnxModel, OpenVinoModel), compiled for throughput


def model_config_names() -> list[str]:
    """Our model config names (``configs/model/*.yaml``)."""
    from detector.config import CONFIG_DIR

    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def load_contender(spec: str, data_names: Sequence[str], seed: int = 0) -> Contender:
    """A contender from what the user wrote: one of our checkpoints, an Ultralytics checkpoint (read
    without unpickling code), an Ultralytics YAML name such as ``yolov8n.yaml`` (an untrained
    baseline, built for the data's classes), one of our model config names (untrained, likewise) or
    an exported model (``.onnx``, OpenVINO ``.xml`` or the folder holding it).

    Untrained models are initialised after ``torch.manual_seed(seed)``. Mistakes raise
    :class:`ConfigError` with one line.
    """
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    match = ULTRALYTICS_YAML.match(path.name)
    if match and not path.is_file():
        return _ultralytics_baseline(spec, match.group(1), match.group(2), list(data_names), seed)
    if spec in model_config_names():
        from detector.models.zoo import build_model

        torch.manual_seed(seed)
        model = build_model(spec, num_classes=len(data_names)).eval()
        return Contender(spec, KIND_OURS_UNTRAINED, model, list(data_names), notes=["untrained (random weights)"])
    if is_exported(path):
        runtime = load_exported(path, throughput=True)
        if list(runtime.names) != list(data_names):
            raise ConfigError(
                f"models: {spec} has classes {runtime.names[:6]}{' ...' if len(runtime.names) > 6 else ''}: an "
                "exported model is compared on data with exactly its classes, in its order (its outputs cannot be "
                "restricted to a subset as a checkpoint's are)"
            )
        return Contender(spec, KIND_EXPORTED, None, list(runtime.names), exported=runtime, notes=[runtime.description])
    if path.suffix.lower() in {".yaml", ".yml"}:
        raise ConfigError(
            f"models: {spec} is not an Ultralytics model name this project mirrors "
            "(yolov8n.yaml ... yolov8x.yaml, yolo11n.yaml ... yolo11x.yaml)"
        )
    if path.suffix.lower() != ".pt" and not path.is_file():
        raise ConfigError(
            f"models: unknown model {spec!r}: give a checkpoint path (.pt), an exported .onnx or .xml, an Ultralytics YAML name "
            f"(yolov8n.yaml, yolo11s.yaml, ...) or one of our model configs: {', '.join(model_config_names())}"
        )
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path} (compare.py never downloads weights)")
    return _checkpoint_contender(path)


def _checkpoint_contender(path: Path) -> Contender:
    from detector.checkpoint import FORMAT, load_checkpoint, read_checkpoint

    try:
        ours = read_checkpoint(path).get("format") == FORMAT
    except ConfigError:
        ours = False
    if ours:
        model, meta = load_checkpoint(path)
        return Contender(str(path), KIND_OURS, model.eval(), list(meta["names"]))
    try:
        checkpoint = ulw.read(path)
    except (ConfigError, ValueError, OSError, RuntimeError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path} is neither a detector checkpoint nor an Ultralytics detection checkpoint ({_one_line(err)})"
        ) from err
    model = ulw.to_detector(checkpoint).eval()
    theirs = ul.ultralytics_model(checkpoint).eval()
    return Contender(str(path), KIND_ULTRALYTICS, model, list(checkpoint.names), theirs)


def with_ultralytics_module(c: Contender, arch: str) -> Contender:
    """``c``, our model of architecture ``arch`` (``yolov8n``, ...), with Ultralytics' ``DetectionModel``
    of ``<arch>.yaml`` carrying the same weights (copied by position), so that their validator and
    their module's latency measure it too; without it (a note says why) when the weights do not line up."""
    try:
        theirs = ul.model_from_yaml(arch, len(c.names), weights=c.model.state_dict(), names=c.names)
    except (ConfigError, FileNotFoundError) as err:
        c.notes.append(f"no Ultralytics module: the weights do not line up with their {arch}.yaml ({_one_line(err)})")
        return c
    c.ultralytics = theirs.eval()
    c.notes.append(f"Ultralytics' validator and module: their {arch}.yaml with these weights (copied by position)")
    return c


def _ultralytics_baseline(spec: str, family: str, scale: str, names: list[str], seed: int) -> Contender:
    """Ultralytics' own model from its YAML (offline, random weights) and ours with its tensors."""
    from detector.models.zoo import build_model

    torch.manual_seed(seed)
    theirs = ul.model_from_yaml(f"{family}{scale}", len(names), names=names).eval()
    ours = build_model(f"{family}{scale}", num_classes=len(names))
    ulw.copy_by_position(ours, theirs.state_dict())
    return Contender(spec, KIND_ULTRALYTICS_UNTRAINED, ours.eval(), names, theirs, ["untrained (random weights)"])


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
