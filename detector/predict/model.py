"""The Python entry to prediction: ``model = detector.load("best.pt")`` then
``model.predict(source)`` (a list of :class:`Results`) or ``model.stream(source)`` (one at a time)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detector.config.schemas import OnnxRuntimeConfig
from detector.device import autocast_dtype, select_device
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.eval.predict import Predictor
from detector.export.runtime import is_exported, load_exported
from detector.interop.weights import load_weights
from detector.models.detector import Detector
from detector.models.heads import use_branch
from detector.predict.results import Results
from detector.predict.sources import Channels, Frame, Sources, Unreadable, open_sources
from detector.predict.tiling import PredictBatch, check_tiling, predict_tiled
from detector.types import Detections

DEFAULT_IMGSZ = 640


def load(
    weights: str | Path,
    device: str | torch.device = "auto",
    *,
    imgsz: int | None = None,
    branch: str | None = None,
    amp: bool = False,
    onnxruntime: OnnxRuntimeConfig | None = None,
    compile: bool = False,
) -> Model:
    """A :class:`Model` from a file: one of our checkpoints (``.pt``), an Ultralytics detection
    ``.pt`` (read through the restricted unpickler, never executed), or an ONNX file written by
    ``scripts/export.py``, or an OpenVINO IR it wrote (the ``.xml`` or its folder). ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``. ``imgsz``: the
    default input size of :meth:`Model.predict` (640; an ONNX file's is the size it was exported at).
    ``branch``: ``one2one`` or ``one2many`` for an end-to-end model (YOLO26; None: its own choice).
    ``amp``: autocast inference (bf16 / fp16 on CUDA, bf16 on a CPU with native bf16); an OpenVINO
    IR computes its float parts in bf16 (the CPU must have native bf16); an ONNX file refuses it.
    ``onnxruntime``: an ONNX file's session settings (threads, spinning, graph optimisation; default
    :class:`OnnxRuntimeConfig`'s). ``compile``: a PyTorch model runs under ``torch.compile`` (each new
    batch size or ``imgsz`` compiles first, minutes on a CPU; not for an ONNX file)."""
    path = Path(weights).expanduser()
    if is_exported(path) and path.suffix.lower() != ".onnx":  # an OpenVINO IR (.xml or its folder)
        if compile or branch is not None:
            raise ConfigError(
                f"{'compile=true' if compile else f'branch={branch}'} applies to PyTorch checkpoints: an exported "
                "OpenVINO model runs as it was exported (scripts/export.py branch=...)"
            )
        bf16 = autocast_dtype(torch.device("cpu"), amp, "amp") is not None
        runtime = load_exported(path, throughput=None, bf16=bf16)  # LATENCY for one image, THROUGHPUT for batches
        return Model(runtime, runtime.names, device, imgsz=imgsz)
    if path.suffix.lower() == ".onnx":
        if compile:
            raise ConfigError(
                "compile=true applies to PyTorch checkpoints: an exported .onnx runs on onnxruntime, "
                "which optimises its graph itself (onnxruntime.*)"
            )
        if branch is not None:
            raise ConfigError(
                f"branch={branch}: an exported model predicts with the branch it was exported with "
                "(scripts/export.py branch=...)"
            )
        runtime = load_exported(path, bf16=amp, onnxruntime=onnxruntime)
        return Model(runtime, runtime.names, device, imgsz=imgsz)
    model, meta = load_weights(path)
    use_branch(model.head, branch)
    return Model(model, list(meta["names"]), device, imgsz=imgsz, amp=amp, compile=compile)


class Model:
    """A detector ready to predict: a PyTorch :class:`Detector` (run fused) or an exported graph's
    runtime (:class:`OnnxModel`, or any callable ``images [B, 3, S, S] in [0, 1] -> (boxes [B, A, 4]
    xyxy input pixels, scores [B, A, C])``), with its class names."""

    def __init__(
        self,
        runtime: Detector | Callable[[Tensor], Any],
        names: Sequence[str],
        device: str | torch.device = "auto",
        *,
        imgsz: int | None = None,
        amp: bool = False,
        compile: bool = False,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else select_device(str(device))
        self.names = list(names)
        own = getattr(runtime, "imgsz", None) if not isinstance(runtime, Detector) else None
        if own is not None and imgsz is not None and int(imgsz) != int(own):
            raise ConfigError(f"imgsz={imgsz}: this exported model takes {own} x {own} inputs (export again at imgsz)")
        post = PostProcess(conf=0.25, multi_label=False)
        amp_dtype = autocast_dtype(self.device, amp, "amp")
        size = int(imgsz or own or DEFAULT_IMGSZ)
        self.predictor = Predictor(runtime, self.device, size, post, amp_dtype, compile)

    @property
    def imgsz(self) -> int:
        """The input size predictions use unless told otherwise."""
        return self.predictor.imgsz

    def predict(self, source: Any, **settings: Any) -> list[Results]:
        """Every result of :meth:`stream` in a list. For long videos and streams use :meth:`stream`,
        which holds one batch of frames at a time."""
        return list(self.stream(source, **settings))

    __call__ = predict

    def stream(
        self,
        source: Any,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        agnostic: bool = False,
        imgsz: int | None = None,
        channels: Channels = "rgb",
        batch: int = 8,
        vid_stride: int = 1,
        tile: int | None = None,
        tile_overlap: float = 0.2,
        tile_full: bool = False,
        on_skip: Callable[[str], object] | None = None,
    ) -> Iterator[Results]:
        """:class:`Results` of each image and video frame of ``source``, in order.

        ``source``: an image, video or folder path, a glob, a stream URL, a camera index, a numpy
        array, a PIL image, or a list of these (see :func:`open_sources`). Arrays are ``[H, W, 3]``
        uint8 in ``channels`` order: ``rgb`` (the default) or ``bgr`` (what ``cv2.imread`` returns).
        ``conf``, ``iou``, ``max_det``, ``agnostic``: the kept detections (NMS per class unless
        ``agnostic``; an end-to-end model's one-to-one branch takes its top ``max_det`` instead).
        ``batch`` images (or tiles) go through the model together; ``vid_stride`` keeps every n-th
        video frame. ``tile``: cut each image into ``tile`` x ``tile`` windows overlapping by
        ``tile_overlap`` of a tile, each predicted at ``imgsz``, duplicates merged
        (:mod:`detector.predict.tiling`); ``tile_full`` adds the whole image as one more window.
        Unreadable files are skipped and reported to ``on_skip`` (default: a warning)."""
        post = PostProcess(conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, multi_label=False)
        size = self._size(imgsz)
        if int(batch) < 1:
            raise ConfigError(f"batch={batch}: at least 1")
        if tile is not None:
            check_tiling(int(tile), float(tile_overlap))
        sources = open_sources(source, channels, vid_stride)  # checked now, read as the results are taken

        def predict(images: Sequence[np.ndarray]) -> list[Detections]:
            return self.predictor.predict(images, post, size)

        frames = _frames(sources, on_skip or _warn)
        if tile is None:
            return self._batched(frames, predict, int(batch))
        tiling = dict(tile=int(tile), overlap=float(tile_overlap), full=tile_full, batch=int(batch))
        return self._tiled(frames, predict, tiling, max_det, agnostic)

    def _batched(self, frames: Iterator[Frame], predict: PredictBatch, batch: int) -> Iterator[Results]:
        pending: list[Frame] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) == batch:
                yield from self._results(pending, predict)
                pending = []
        yield from self._results(pending, predict)

    def _results(self, frames: list[Frame], predict: PredictBatch) -> Iterator[Results]:
        for frame, det in zip(frames, predict([f.image for f in frames])):
            yield Results.of(frame, det, self.names)

    def _tiled(
        self, frames: Iterator[Frame], predict: PredictBatch, tiling: dict[str, Any], max_det: int, agnostic: bool
    ) -> Iterator[Results]:
        for frame in frames:
            det = predict_tiled(predict, frame.image, **tiling, max_det=max_det, agnostic=agnostic)
            yield Results.of(frame, det, self.names)

    def _size(self, imgsz: int | None) -> int:
        if imgsz is None:
            return self.imgsz
        if not self.predictor.torch_model and int(imgsz) != self.imgsz:
            raise ConfigError(f"imgsz={imgsz}: this exported model takes {self.imgsz} x {self.imgsz} inputs")
        return int(imgsz)


def _frames(sources: Sources, on_skip: Callable[[str], object]) -> Iterator[Frame]:
    for source in sources:
        try:
            yield from source.frames()
        except Unreadable as err:
            on_skip(str(err))


def _warn(message: str) -> None:
    warnings.warn(f"skipped {message}", stacklevel=3)
