"""The prediction figure: the latency of one in-memory image through ``scripts/predict.py``'s
predictor and through ``YOLO.predict``, with the same weights and settings."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.checkpoint import load_checkpoint
from detector.config.schemas import BenchPredictConfig
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.eval.predict import Predictor
from detector.images import decode_image
from detector.interop import ultralytics as ul
from detector.tools.benchmark.figure import Figure, device_label
from detector.tools.benchmark.weights import Reference
from detector.tools.timing import Alternate, seconds_per_call


def our_predictor(
    checkpoint: Path, device: torch.device, imgsz: int, post: PostProcess, dtype: torch.dtype | None = None
) -> Predictor:
    """What ``scripts/predict.py`` runs per image: letterbox, fused model (autocast to ``dtype`` if
    given: its ``amp=true``), decoding, NMS, boxes mapped back to the image (returned on the CPU)."""
    model, _ = load_checkpoint(checkpoint)
    return Predictor(model, device, imgsz, post, dtype)


def detections_count(result: Any) -> int:
    """Number of detections in our :class:`Detections` or an Ultralytics ``Results``."""
    boxes = getattr(result, "boxes", None)
    if boxes is not None and not isinstance(boxes, torch.Tensor):
        return len(boxes)
    return len(result)


def image_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image as RGB (what our predictor takes) and BGR (what Ultralytics takes from arrays)."""
    rgb = decode_image(path)
    if rgb is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return rgb, np.ascontiguousarray(rgb[..., ::-1])


def predict_image(run_dir: Path, imgsz: int, seed: int) -> Path:
    """A generated shapes image of ``imgsz x imgsz`` pixels, kept in the run directory as ``predict.jpg``."""
    from detector.data.shapes import ensure_shapes

    with tempfile.TemporaryDirectory(prefix="shapes-") as tmp:
        data_yaml = ensure_shapes(Path(tmp) / "shapes", num_train=1, num_val=1, imgsz=imgsz, seed=seed)
        image = next((data_yaml.parent / "images" / "val").iterdir())
        target = run_dir / f"predict{image.suffix}"
        shutil.copyfile(image, target)
    return target


def measure(
    c: BenchPredictConfig,
    post: PostProcess,
    reference: Reference,
    checkpoint: Path,
    device: torch.device,
    run_dir: Path,
    seed: int,
    turns: Alternate,
    our_dtype: torch.dtype | None = None,
) -> Figure:
    """Milliseconds per prediction, the mean of ``c.calls`` calls per repeat. ``checkpoint``: the
    reference weights as a checkpoint of ours; ``our_dtype``: ours autocasts to it, theirs not."""
    path = Path(c.image).expanduser() if c.image else predict_image(run_dir, c.imgsz, seed)
    try:
        rgb, bgr = image_pair(path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"predict.image={path}: {err}") from err
    ours = our_predictor(checkpoint, device, c.imgsz, post, our_dtype)
    theirs = ul.predictor(
        reference.arch, reference.theirs(), device, c.imgsz, post, run_dir / "ultralytics" / "predict"
    )
    results = turns(
        lambda: 1000.0 * seconds_per_call(lambda: ours(rgb), c.calls),
        lambda: 1000.0 * seconds_per_call(lambda: theirs(bgr), c.calls),
    )
    detections = {"ours": detections_count(ours(rgb)), "ultralytics": detections_count(theirs(bgr))}
    return Figure(
        "predict",
        device_label(device, our_dtype),
        f"prediction latency of one {rgb.shape[1]}x{rgb.shape[0]} image: letterbox, fused forward, NMS (imgsz {c.imgsz})",
        "ms",
        "lower",
        results["ours"],
        results["ultralytics"],
        settings={
            "image": str(path),
            "imgsz": c.imgsz,
            "calls_per_repeat": c.calls,
            "conf": post.conf,
            "iou": post.iou,
            "max_det": post.max_det,
        },
        notes={"detections": detections},
    )
