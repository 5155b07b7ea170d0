"""Export a detector to ONNX or TorchScript, and run an exported ONNX file.

The exported graph is the fused model plus decoding: ``images [B, 3, H, W]`` float in [0, 1]
-> ``boxes [B, A, 4]`` xyxy input pixels and ``scores [B, A, C]`` class probabilities. NMS stays
outside (:class:`detector.eval.postprocess.PostProcess`), as for the PyTorch model. An end-to-end
model predicting with its one-to-one branch (YOLO26) ends with its top-k instead: ``detections
[B, max_det, 6]`` rows ``x1, y1, x2, y2, score, class`` sorted by score, no NMS needed (only a
confidence threshold).

:class:`OnnxModel` runs such a file on onnxruntime with the session settings of
:class:`detector.config.schemas.OnnxRuntimeConfig` (:func:`session_options`).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from detector.config.schemas import OnnxRuntimeConfig
from detector.errors import ConfigError
from detector.models.detector import Decoded, Detector, EndToEnd
from detector.runs import replace_atomic

if TYPE_CHECKING:
    import onnx
    import onnxruntime


def exported(model: Detector, max_det: int = 300) -> Decoded | EndToEnd:
    """What an export holds: a fused copy of ``model`` with its decoding, and for an end-to-end
    model (head predicting with its one-to-one branch) the top-k of ``max_det`` rows."""
    fused = copy.deepcopy(model).fuse()
    if getattr(fused.head, "inference", None) == "one2one":
        return EndToEnd(fused, max_det).eval()
    return Decoded(fused).eval()


def output_names(module: Decoded | EndToEnd) -> list[str]:
    return ["detections"] if isinstance(module, EndToEnd) else ["boxes", "scores"]


def export_onnx(
    model: Detector,
    path: Path,
    imgsz: int,
    names: list[str],
    dynamic: bool = False,
    opset: int = 17,
    max_det: int = 300,
    simplify: bool = False,
) -> Path:
    """The fused model as ONNX (opset >= 17), with class names, imgsz and whether it is end-to-end
    (``end2end``, ``max_det``) in its metadata. ``simplify``: the graph passed through onnxslim
    (:func:`simplified`)."""
    import onnx

    if opset < 17:
        raise ValueError(f"opset {opset} is too old: 17 or newer")
    wrapper = exported(model, max_det)
    outputs = output_names(wrapper)
    dummy = torch.zeros(1, 3, imgsz, imgsz)
    axes = {name: {0: "batch"} for name in ("images", *outputs)} if dynamic else None
    metadata = {"names": json.dumps(list(names)), "imgsz": str(imgsz), "producer": "detector"}
    if isinstance(wrapper, EndToEnd):
        metadata.update(end2end="true", max_det=str(wrapper.max_det))

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the top-k's k = min(max_det, anchors) is a constant of the input size
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            export_graph(tmp)

    def export_graph(tmp: Path) -> None:
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(tmp),
            dynamo=False,
            input_names=["images"],
            output_names=outputs,
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        graph = onnx.load(str(tmp))
        if simplify:
            graph = simplified(graph)
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))

    return replace_atomic(Path(path), write)


def simplified(graph: onnx.ModelProto) -> onnx.ModelProto:
    """``graph`` simplified by onnxslim: constants folded, the shape arithmetic of a fixed input size
    computed, identical subgraphs merged (yolov8n: 420 nodes -> 237), the same outputs."""
    try:
        import onnxslim
    except ImportError as err:
        raise ImportError("simplify=true needs onnxslim: pip install onnxslim (or the export extra)") from err
    return onnxslim.slim(graph)


def export_torchscript(model: Detector, path: Path, imgsz: int, names: list[str], max_det: int = 300) -> Path:
    """The fused model traced to TorchScript, with class names, imgsz and ``end2end`` as extra files
    (an end-to-end model returns its ``[B, max_det, 6]`` detections)."""
    wrapper = exported(model, max_det)
    with torch.no_grad(), warnings.catch_warnings():  # the top-k's k is a constant of the input size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, torch.zeros(1, 3, imgsz, imgsz), strict=False)
    end2end = isinstance(wrapper, EndToEnd)
    extra = {"names.json": json.dumps(list(names)), "imgsz": str(imgsz), "end2end": str(end2end).lower()}
    return replace_atomic(Path(path), lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))


def session_options(settings: OnnxRuntimeConfig) -> onnxruntime.SessionOptions:
    """onnxruntime's ``SessionOptions`` for ``settings``: graph optimisation level, intra-op threads,
    execution mode and its inter-op threads, and whether idle intra-op threads spin."""
    import onnxruntime as ort

    levels = {
        "disable": "ORT_DISABLE_ALL",
        "basic": "ORT_ENABLE_BASIC",
        "extended": "ORT_ENABLE_EXTENDED",
        "layout": "ORT_ENABLE_LAYOUT",
        "all": "ORT_ENABLE_ALL",
    }
    optimization = _value(settings.optimization)
    level = getattr(ort.GraphOptimizationLevel, levels[optimization], None)
    if level is None:  # the layout level came with newer releases
        raise ConfigError(f"onnxruntime.optimization={optimization} needs a newer onnxruntime than {ort.__version__}")
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_threads
    parallel = _value(settings.execution) == "parallel"
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    return options


def _value(option: object) -> str:
    """An enum option's value, or a plain string as it is."""
    return str(getattr(option, "value", option))


class OnnxModel:
    """An exported ONNX file on onnxruntime, called like :class:`Decoded`: ``images -> (boxes, scores)``;
    an end-to-end export (``end2end``) like :class:`EndToEnd`: ``images -> detections [B, k, 6]``.
    ``settings``: the session's (:func:`session_options`; default :class:`OnnxRuntimeConfig`'s)."""

    def __init__(self, path: str | Path, settings: OnnxRuntimeConfig | None = None) -> None:
        import onnxruntime as ort

        self.settings = settings if settings is not None else OnnxRuntimeConfig()
        self.session = ort.InferenceSession(
            str(path), session_options(self.settings), providers=ort.get_available_providers()
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("producer") != "detector":
            raise ValueError(f"{path} was not exported by detector (no 'producer: detector' metadata)")
        self.names: list[str] = json.loads(meta["names"])
        self.imgsz = int(meta["imgsz"])
        self.end2end = meta.get("end2end") == "true"
        self.outputs = ["detections"] if self.end2end else ["boxes", "scores"]
        batch = self.session.get_inputs()[0].shape[0]
        self.batch: int | None = batch if isinstance(batch, int) else None  # None: a dynamic batch axis
        self.description = f"ONNX Runtime, {self.session.get_providers()[0]}"

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor] | Tensor:
        """``images [B, 3, imgsz, imgsz]`` float32; a graph exported with a fixed batch size runs them in
        chunks of that size (the last one padded with zeros, its extra rows dropped). A contiguous
        float32 CPU tensor goes to onnxruntime as it is, without a copy; the outputs come back
        without one too."""
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        chunk = self.batch or len(array)
        outputs = [self._run(array[i : i + chunk], chunk) for i in range(0, len(array), chunk)]
        joined = [o[0] if len(outputs) == 1 else np.concatenate(o) for o in zip(*outputs)]
        if self.end2end:
            return torch.from_numpy(joined[0])
        return torch.from_numpy(joined[0]), torch.from_numpy(joined[1])

    def _run(self, array: np.ndarray, size: int) -> list[np.ndarray]:
        n = len(array)
        if n < size:
            array = np.concatenate([array, np.zeros((size - n, *array.shape[1:]), array.dtype)])
        return [out[:n] for out in self.session.run(self.outputs, {"images": array})]
