"""An exported model by its path: an ``.onnx`` file on ONNX Runtime, or an OpenVINO IR (its ``.xml``,
or the folder holding it) on OpenVINO. What the commands that take a checkpoint call when they are
given an export instead."""

from __future__ import annotations

from pathlib import Path

from detector.errors import ConfigError
from detector.export.onnx import OnnxModel, OnnxRuntimeConfig
from detector.export.openvino import OpenVinoModel


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` names an exported model rather than a checkpoint: a ``.onnx`` or ``.xml``
    path (existing or not), or a folder (a checkpoint is a file)."""
    path = Path(path).expanduser()
    return path.suffix.lower() in {".onnx", ".xml"} or path.is_dir()


def load_exported(
    path: str | Path,
    throughput: bool | None = False,
    bf16: bool = False,
    onnxruntime: OnnxRuntimeConfig | None = None,
) -> OnnxModel | OpenVinoModel:
    """The runtime of an exported model (see :func:`is_exported`); ``throughput``: an OpenVINO model
    compiled for many images at once (evaluation) rather than for one image's latency, or None for
    both as the call needs (:class:`~detector.export.openvino.OpenVinoModel`); ``bf16``: an
    OpenVINO model computing its float parts in bf16 (an ONNX model refuses it); ``onnxruntime``:
    an ONNX model's session settings (default :class:`OnnxRuntimeConfig`'s)."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ConfigError(f"ONNX model not found: {path}")
        if bf16:
            raise ConfigError(f"amp=true: {path} runs on onnxruntime in float32 (bf16 applies to OpenVINO IRs and .pt)")
        try:
            return OnnxModel(path, onnxruntime)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    return OpenVinoModel(path, throughput=throughput, bf16=bf16)
