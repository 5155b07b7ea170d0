"""Export a detector to ONNX or TorchScript, and run an exported ONNX file.

The exported graph is the fused model plus decoding: ``images [B, 3, H, W]`` float in [0, 1]
-> ``boxes [B, A, 4]`` xyxy input pixels and ``scores [B, A, C]`` class probabilities. NMS stays
outside (:class:`detector.eval.postprocess.PostProcess`), as for the PyTorch model. An end-to-end
model predicting with its one-to-one branch (YOLO26) ends with its top-k instead: ``detections
[B, max_det, 6]`` rows ``x1, y1, x2, y2, score, class`` sorted by score, no NMS needed (only a
confidence threshold).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from detector.models.detector import Decoded, Detector, EndToEnd
from detector.runs import replace_atomic


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
) -> Path:
    """The fused model as ONNX (opset >= 17), with class names, imgsz and whether it is end-to-end
    (``end2end``, ``max_det``) in its metadata."""
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
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))

    return replace_atomic(Path(path), write)


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


class OnnxModel:
    """An exported ONNX file on onnxruntime, called like :class:`Decoded`: ``images -> (boxes, scores)``;
    an end-to-end export (``end2end``) like :class:`EndToEnd`: ``images -> detections [B, k, 6]``."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=ort.get_available_providers())
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("producer") != "detector":
            raise ValueError(f"{path} was not exported by detector (no 'producer: detector' metadata)")
        self.names: list[str] = json.loads(meta["names"])
        self.imgsz = int(meta["imgsz"])
        self.end2end = meta.get("end2end") == "true"
        batch = self.session.get_inputs()[0].shape[0]
        self.batch: int | None = batch if isinstance(batch, int) else None  # None: a dynamic batch axis
        self.description = f"ONNX Runtime, {self.session.get_providers()[0]}"

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor] | Tensor:
        """Any batch size: a graph exported with a static batch runs it in chunks of that size."""
        x = images.detach().cpu().numpy().astype(np.float32)
        step = self.batch or len(x)
        if len(x) % step:
            raise ValueError(f"this graph takes batches of {step} images (exported without dynamic=true)")
        names = ["detections"] if self.end2end else ["boxes", "scores"]
        parts = [self.session.run(names, {"images": x[i : i + step]}) for i in range(0, len(x), step)]
        outputs = [torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in range(len(names))]
        return outputs[0] if self.end2end else (outputs[0], outputs[1])
