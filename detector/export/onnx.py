"""Export a detector to ONNX or TorchScript, and run an exported ONNX file.

The exported graph is the fused model plus decoding: ``images [B, 3, H, W]`` float in [0, 1]
-> ``boxes [B, A, 4]`` xyxy input pixels and ``scores [B, A, C]`` class probabilities. NMS stays
outside (:class:`detector.eval.postprocess.PostProcess`), as for the PyTorch model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from detector.models.detector import Decoded, Detector
from detector.runs import replace_atomic


def export_onnx(
    model: Detector, path: Path, imgsz: int, names: list[str], dynamic: bool = False, opset: int = 17
) -> Path:
    """The fused model as ONNX (opset >= 17), with class names and imgsz in its metadata."""
    import onnx

    if opset < 17:
        raise ValueError(f"opset {opset} is too old: 17 or newer")
    wrapper = Decoded(copy.deepcopy(model).fuse()).eval()
    dummy = torch.zeros(1, 3, imgsz, imgsz)
    axes = {"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}} if dynamic else None

    def write(tmp: Path) -> None:
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(tmp),
            dynamo=False,
            input_names=["images"],
            output_names=["boxes", "scores"],
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        graph = onnx.load(str(tmp))
        for key, value in (("names", json.dumps(list(names))), ("imgsz", str(imgsz)), ("producer", "detector")):
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))

    return replace_atomic(Path(path), write)


def export_torchscript(model: Detector, path: Path, imgsz: int, names: list[str]) -> Path:
    """The fused model traced to TorchScript, with class names and imgsz as extra files."""
    wrapper = Decoded(copy.deepcopy(model).fuse()).eval()
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, torch.zeros(1, 3, imgsz, imgsz), strict=False)
    extra = {"names.json": json.dumps(list(names)), "imgsz": str(imgsz)}
    return replace_atomic(Path(path), lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))


class OnnxModel:
    """An exported ONNX file on onnxruntime, called like :class:`Decoded`: ``images -> (boxes, scores)``."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=ort.get_available_providers())
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("producer") != "detector":
            raise ValueError(f"{path} was not exported by detector (no 'producer: detector' metadata)")
        self.names: list[str] = json.loads(meta["names"])
        self.imgsz = int(meta["imgsz"])

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        boxes, scores = self.session.run(["boxes", "scores"], {"images": images.cpu().numpy().astype(np.float32)})
        return torch.from_numpy(boxes), torch.from_numpy(scores)
