"""Prediction on images: letterbox, a model (PyTorch, fused; or an exported graph's runtime),
decoding, NMS (or an end-to-end model's top-k), boxes mapped back to each image. Several images go
through one forward (:meth:`Predictor.predict`); one image is a batch of one (``predictor(image)``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from detector.device import compile_model, memory_format
from detector.eval.postprocess import PostProcess
from detector.letterbox import letterbox_batch
from detector.models.detector import Decoded, Detector
from detector.types import Detections


class Predictor:
    """A model with letterbox and post-processing: ``images (RGB) -> Detections`` in image pixels.

    ``model`` is a :class:`Detector` (run fused, channels-last where that is faster) or a runtime
    of an exported graph called like :class:`Decoded` (``images -> (boxes, scores)``, e.g.
    :class:`detector.export.onnx.OnnxModel`; with ``end2end`` true, ``images -> [B, k, 6]`` rows),
    which then brings its own input size when it has an ``imgsz`` attribute."""

    def __init__(
        self,
        model: Detector | Callable[[Tensor], tuple[Tensor, Tensor] | Tensor],
        device: torch.device,
        imgsz: int,
        post: PostProcess,
        amp: torch.dtype | None = None,
        compile: bool = False,
    ) -> None:
        """``amp``: autocast dtype of the PyTorch model's forward (None: full precision). ``compile``:
        the PyTorch model under ``torch.compile`` (:func:`detector.device.compile_model`: each new
        batch size or input size compiles first)."""
        self.device = device
        self.amp = amp
        self.memory_format = memory_format(device)
        self.torch_model = isinstance(model, Detector)
        # the branch an end-to-end PyTorch model predicts with decides top-k or NMS; a runtime says end2end
        self.branch: str | None = model.head.inference if isinstance(model, Detector) else None
        if compile and not isinstance(model, Detector):
            raise ValueError("compile applies to a PyTorch Detector, not to an exported graph's runtime")
        if isinstance(model, Detector):
            self.model = Decoded(model.fuse().to(device, memory_format=self.memory_format)).eval()
            if compile:
                self.model = compile_model(self.model, device)
        else:
            self.model = model
            imgsz = int(getattr(model, "imgsz", imgsz))  # an exported graph's own input size
        self.imgsz = imgsz
        self.post = self.settings(post)

    def settings(self, post: PostProcess) -> PostProcess:
        """``post`` as this model applies it: the top-k for a PyTorch model predicting with an
        end-to-end head's one-to-one branch, NMS otherwise."""
        return post.for_branch(self.branch) if self.branch is not None else post

    def __call__(self, image: np.ndarray) -> Detections:
        """One ``[H, W, 3]`` uint8 RGB image."""
        return self.predict([image])[0]

    @torch.no_grad()
    def predict(
        self, images: Sequence[np.ndarray], post: PostProcess | None = None, imgsz: int | None = None
    ) -> list[Detections]:
        """``images`` (each ``[H, W, 3]`` uint8 RGB, any sizes) letterboxed to one ``imgsz`` square
        and predicted in one forward; detections in each image's pixels, on the CPU. ``post`` and
        ``imgsz`` replace the predictor's own for this call (a runtime keeps its own input size)."""
        if not images:
            return []
        post = self.post if post is None else self.settings(post)
        size = imgsz if imgsz is not None and self.torch_model else self.imgsz
        boxed, params = letterbox_batch(images, size)  # [B, S, S, 3] uint8, [B, 4]
        letter = torch.from_numpy(params).to(self.device)  # [B, 4] scale_x, scale_y, pad_x, pad_y
        sizes = torch.tensor([image.shape[:2] for image in images])  # [B, 2] height, width
        if not self.torch_model:
            out = self.model(torch.from_numpy(runtime_input(boxed)))
            if getattr(self.model, "end2end", False):  # an end-to-end export: top-k rows [B, k, 6]
                return _on_cpu(post.rows(out.to(self.device), letter, sizes))
            boxes, scores = out
        else:
            # uint8 to the device, then to float there; channels-last strides on the way (the permute)
            x = torch.from_numpy(boxed).to(self.device).permute(0, 3, 1, 2).float().div_(255)  # [B, 3, S, S]
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                boxes, scores = self.model(x.contiguous(memory_format=self.memory_format))
            boxes, scores = boxes.float(), scores.float()
        return _on_cpu(post(boxes.to(self.device), scores.to(self.device), letter, sizes))


def runtime_input(boxed: np.ndarray) -> np.ndarray:
    """``[B, 3, S, S]`` float32 in [0, 1], contiguous, from letterboxed ``[B, S, S, 3]`` uint8: what an
    exported graph's runtime takes, in one pass of numpy (the same values as PyTorch's ``/ 255``, and no
    intra-op thread pool woken for a copy)."""
    out = np.empty((boxed.shape[0], boxed.shape[3], *boxed.shape[1:3]), np.float32)
    np.divide(boxed.transpose(0, 3, 1, 2), np.float32(255), out=out)
    return out


def _on_cpu(detections: list[Detections]) -> list[Detections]:
    return [Detections(d.boxes.cpu(), d.scores.cpu(), d.classes.cpu()) for d in detections]
