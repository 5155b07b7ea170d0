"""Prediction on single images: letterbox, a model (PyTorch, fused; or an exported graph's runtime),
decoding, NMS, boxes mapped back to the image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from detector.device import memory_format
from detector.eval.postprocess import PostProcess
from detector.letterbox import letterbox
from detector.models.detector import Decoded, Detector
from detector.types import Detections


class Predictor:
    """A model with letterbox and post-processing: ``image (RGB) -> Detections`` in image pixels.

    ``model`` is a :class:`Detector` (run fused, channels-last where that is faster) or a runtime
    of an exported graph called like :class:`Decoded` (``images -> (boxes, scores)``, e.g.
    :class:`detector.export.onnx.OnnxModel`), which then brings its own input size."""

    def __init__(
        self,
        model: Detector | Callable[[Tensor], tuple[Tensor, Tensor]],
        device: torch.device,
        imgsz: int,
        post: PostProcess,
        amp: torch.dtype | None = None,
    ) -> None:
        """``amp``: autocast dtype of the PyTorch model's forward (None: full precision)."""
        self.post = post.for_branch(model.head.inference) if isinstance(model, Detector) else post
        self.device = device
        self.amp = amp
        self.memory_format = memory_format(device)
        self.torch_model = isinstance(model, Detector)
        if self.torch_model:
            self.model = Decoded(model.fuse().to(device, memory_format=self.memory_format)).eval()
        else:
            self.model = model
            imgsz = int(getattr(model, "imgsz", imgsz))  # an exported graph's own input size
        self.imgsz = imgsz

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        boxed, params = letterbox(image, self.imgsz)
        x = torch.from_numpy(boxed).permute(2, 0, 1)[None].to(self.device).float().div_(255)
        if not self.torch_model:
            out = self.model(x)
            if getattr(self.model, "end2end", False):  # an end-to-end export: top-k rows [B, k, 6]
                det = self.post.rows(
                    out.to(self.device), torch.from_numpy(params)[None].to(self.device), torch.tensor([[h, w]])
                )[0]
                return Detections(det.boxes.cpu(), det.scores.cpu(), det.classes.cpu())
            boxes, scores = out
        else:
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                boxes, scores = self.model(x.contiguous(memory_format=self.memory_format))
            boxes, scores = boxes.float(), scores.float()
        det = self.post(
            boxes.to(self.device),
            scores.to(self.device),
            torch.from_numpy(params)[None].to(self.device),
            torch.tensor([[h, w]]),
        )[0]
        return Detections(det.boxes.cpu(), det.scores.cpu(), det.classes.cpu())
