"""Export a detector to an OpenVINO IR (``.xml`` + ``.bin``), and run one on OpenVINO's CPU plugin.

The IR holds the same graph as the ONNX export (:mod:`detector.export.onnx`, converted by
``openvino.convert_model``): ``images [B, 3, H, W]`` float in [0, 1] -> ``boxes [B, A, 4]`` and
``scores [B, A, C]``, or an end-to-end model's ``detections [B, max_det, 6]``. Its ``rt_info``
under ``detector`` says what it is (class names, imgsz, end-to-end and max_det, weight precision,
INT8 settings), so the ``.xml`` and its ``.bin`` are all a later run needs.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detector.errors import ConfigError
from detector.export.onnx import export_onnx
from detector.export.signal_stack import kept_signal_stack
from detector.models.detector import Detector

RT_INFO = "detector"  # the IR's rt_info section our metadata lives in


def require(module: str, option: str) -> ModuleType:
    """``import module``, or a one-line :class:`ConfigError` saying that ``option`` needs it and the
    pip command (the ``openvino`` extra installs openvino, nncf and onnx)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f'{option} needs the {module} package ({err.msg}): pip install {module} (or pip install -e ".[openvino]")'
        ) from err


def to_openvino(model: Detector, imgsz: int, names: list[str], dynamic: bool = False, max_det: int = 300) -> Any:
    """The fused model with its decoding as an ``openvino.Model`` (the ONNX export's graph, input
    ``[1 | ?, 3, imgsz, imgsz]``: ``dynamic`` gives a dynamic batch axis)."""
    ov = require("openvino", "format=openvino")
    require("onnx", "format=openvino")  # the IR is converted from the ONNX export
    with tempfile.TemporaryDirectory(prefix="detector-openvino-") as tmp:
        onnx_file = export_onnx(model, Path(tmp) / "model.onnx", imgsz, names, dynamic, 17, max_det)
        return ov.convert_model(str(onnx_file))


def set_metadata(ov_model: Any, metadata: Mapping[str, Any]) -> None:
    """Write ``metadata`` (strings, numbers, bools or JSON-able values) into the model's rt_info."""
    for key, value in metadata.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            text = json.dumps(value)
        ov_model.set_rt_info(text, [RT_INFO, key])


def save_ir(ov_model: Any, path: Path, half: bool = False) -> Path:
    """Write ``path`` (``.xml``) and its ``.bin``, weights as fp16 when ``half``. Both are written in
    a temporary folder beside them and moved into place, the ``.bin`` first: a reader never meets
    a half-written file."""
    ov = require("openvino", "format=openvino")
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR is a .xml file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.stem}."))
    try:
        ov.save_model(ov_model, str(tmp / path.name), compress_to_fp16=half)
        os.replace(tmp / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def export_openvino(
    model: Detector,
    path: Path,
    imgsz: int,
    names: list[str],
    dynamic: bool = False,
    half: bool = False,
    max_det: int = 300,
) -> Path:
    """The fused model as an OpenVINO IR at ``path`` (``.xml`` + ``.bin``), float32 weights or fp16
    (``half``), with its metadata. For INT8 see :func:`detector.export.quantize.quantize_int8`."""
    ov_model = to_openvino(model, imgsz, names, dynamic, max_det)
    set_metadata(ov_model, export_metadata(ov_model, names, imgsz, max_det, "fp16" if half else "fp32"))
    return save_ir(ov_model, path, half)


def export_metadata(ov_model: Any, names: list[str], imgsz: int, max_det: int, precision: str) -> dict[str, Any]:
    end2end = [o.get_any_name() for o in ov_model.outputs] == ["detections"]
    metadata: dict[str, Any] = {"producer": "detector", "names": list(names), "imgsz": imgsz, "end2end": end2end}
    if end2end:
        metadata["max_det"] = max_det
    metadata["precision"] = precision
    return metadata


@dataclass(frozen=True)
class IrMetadata:
    """What an IR's rt_info says about it."""

    names: list[str]
    imgsz: int
    end2end: bool
    precision: str  # fp32 | fp16 | int8 (the weights)
    extra: dict[str, str]  # every other key, as written (max_det, the INT8 settings, ...)


def read_metadata(ov_model: Any, path: Path) -> IrMetadata:
    """The rt_info of an IR we wrote; a :class:`ConfigError` when it is not ours."""

    def get(key: str) -> str | None:
        return ov_model.get_rt_info([RT_INFO, key]).astype(str) if ov_model.has_rt_info([RT_INFO, key]) else None

    if get("producer") != "detector":
        raise ConfigError(f"{path} was not exported by detector (no 'detector' metadata in its rt_info)")
    known = {"producer", "names", "imgsz", "end2end", "precision"}
    extra = {str(k): v.astype(str) for k, v in ov_model.get_rt_info()[RT_INFO].items() if k not in known}
    try:
        names, imgsz = json.loads(get("names") or ""), int(get("imgsz") or "")
    except ValueError as err:
        raise ConfigError(f"{path}: its 'detector' metadata has no readable names and imgsz ({err})") from err
    return IrMetadata(names, imgsz, get("end2end") == "true", get("precision") or "fp32", extra)


def find_ir(path: str | Path) -> Path:
    """The ``.xml`` that ``path`` names (the file, or the only ``.xml`` in a folder), checked to have
    its ``.bin`` beside it; one-line :class:`ConfigError` otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise ConfigError(
                f"{path} is a folder with no .xml file: give a checkpoint file (.pt), an .onnx, or an "
                "OpenVINO .xml or the folder holding it"
            )
        if len(found) > 1:
            listed = ", ".join(p.name for p in found)
            raise ConfigError(f"{path} holds {len(found)} .xml files ({listed}): give the one to use")
        path = found[0]
    if path.suffix.lower() != ".xml":
        raise ConfigError(f"{path}: an OpenVINO model is a .xml file (with its .bin) or the folder holding them")
    if not path.is_file():
        raise ConfigError(f"OpenVINO model not found: {path}")
    if not path.with_suffix(".bin").is_file():
        raise ConfigError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing beside it")
    return path


class OpenVinoModel:
    """An exported OpenVINO IR on the CPU, called like :class:`detector.models.detector.Decoded`:
    ``images [B, 3, H, W] -> (boxes, scores)``; an end-to-end export (``end2end``) like
    :class:`~detector.models.detector.EndToEnd`: ``images -> detections [B, k, 6]``.

    ``throughput=False`` (one image at a time): compiled with the LATENCY hint, one inference
    request. ``throughput=True`` (evaluation): the THROUGHPUT hint, which lets the plugin run
    several streams; a batch is split into single images (or the static batch the IR was exported
    with) that run in parallel requests, one per stream. ``throughput=None`` (prediction,
    ``detector.load``): LATENCY for one image, and the first call with several images also compiles
    a THROUGHPUT copy that runs them as ``True`` does (measured 1.7x the images/s of one
    LATENCY request on a batch of 8, yolov8n at 640 on 2 cores). All compute in float32
    (``INFERENCE_PRECISION_HINT f32``): on CPUs with bf16 (AMX) the plugin would otherwise run a
    float model in bf16. ``bf16=True`` asks for that (``amp=true``: faster where the CPU computes
    bf16 natively, boxes a fraction of a pixel off). An INT8 model runs its quantized layers in
    int8 either way; ``bf16`` applies to what it keeps in float.
    """

    def __init__(self, path: str | Path, throughput: bool | None = False, bf16: bool = False) -> None:
        ov = require("openvino", "an OpenVINO model (.xml)")
        xml = find_ir(path)
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{xml}: OpenVINO cannot read it ({first})") from err
        self.path = xml
        self.metadata = read_metadata(model, xml)
        self.names = self.metadata.names
        self.imgsz = self.metadata.imgsz
        self.end2end = self.metadata.end2end
        batch = model.inputs[0].get_partial_shape()[0]
        self.batch: int | None = None if batch.is_dynamic else batch.get_length()  # None: any batch
        self.throughput = throughput
        hint = "THROUGHPUT" if throughput else "LATENCY"
        precision = "bf16" if bf16 else "f32"
        self._compile = kept_signal_stack()(  # the plugin loads with the first compile: see signal_stack.py
            lambda hint: core.compile_model(
                model, "CPU", {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
            )
        )
        self._queue_of = ov.AsyncInferQueue
        self.compiled = self._compile(hint)
        self.output_names = ["detections"] if self.end2end else ["boxes", "scores"]
        self.request = self.compiled.create_infer_request()
        self.queue = ov.AsyncInferQueue(self.compiled) if throughput else None
        computes = f", computing in {precision}" if bf16 else ""
        hints = "LATENCY hint for one image, THROUGHPUT for several" if throughput is None else f"{hint} hint"
        self.description = f"OpenVINO CPU, {self.metadata.precision}{computes}, {hints}, {self.streams} stream(s)"

    @property
    def streams(self) -> int:
        """The CPU streams the plugin chose for this hint."""
        return int(self.compiled.get_property("NUM_STREAMS"))

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor] | Tensor:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)  # [B, 3, H, W]
        if len(x) == 0:
            raise ValueError("an empty batch")
        if self.throughput is None and self.queue is None and len(x) > (self.batch or 1):
            self.queue = self._queue_of(self._compile("THROUGHPUT"))  # several images from now on
        step = self.batch or (1 if self.queue is not None else len(x))
        if len(x) % step:
            raise ValueError(f"{self.path} takes batches of {step} images (exported without dynamic=true)")
        chunks = [x[i : i + step] for i in range(0, len(x), step)]
        parts = self._run_parallel(chunks) if self.queue is not None and len(chunks) > 1 else self._run(chunks)
        outputs = [torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in range(len(self.output_names))]
        return outputs[0] if self.end2end else (outputs[0], outputs[1])

    def _run(self, chunks: list[np.ndarray]) -> list[list[np.ndarray]]:
        parts = []
        for chunk in chunks:
            self.request.infer({0: chunk})
            parts.append([self.request.get_tensor(name).data.copy() for name in self.output_names])
        return parts

    def _run_parallel(self, chunks: list[np.ndarray]) -> list[list[np.ndarray]]:
        parts: list[list[np.ndarray]] = [[] for _ in chunks]

        def done(request: Any, i: int) -> None:
            parts[i] = [request.get_tensor(name).data.copy() for name in self.output_names]

        self.queue.set_callback(done)  # type: ignore[union-attr]
        for i, chunk in enumerate(chunks):
            self.queue.start_async({0: chunk}, i)  # type: ignore[union-attr]
        self.queue.wait_all()  # type: ignore[union-attr]
        return parts
