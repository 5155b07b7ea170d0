"""``python scripts/predict.py``: detections drawn on images and written as JSON, one per image."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig
from rich.console import Console

from detector.config import ConfigError
from detector.data.dataset import fit_longest_side, fitted_size
from detector.data.sources import IMAGE_SUFFIXES
from detector.data.transforms import build_val_pipeline, letterbox_params
from detector.device import autocast_dtype, memory_format, select_device
from detector.eval.plots import draw_boxes, save_png
from detector.eval.postprocess import Detections, PostProcess
from detector.export.onnx import Decoded, OnnxModel
from detector.runs import make_run_dir, write_text_atomic
from detector.train.checkpoint import load_checkpoint


def find_images(source: str) -> list[Path]:
    """An image file, every image in a folder (recursively), or the matches of a glob."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not found:
        raise ConfigError(f"source={source}: no image file, folder or glob match")
    return found


def decode_image(path: Path) -> np.ndarray | None:
    """``[H, W, 3]`` uint8 RGB of any image OpenCV reads (grey, RGBA and 16-bit converted), or None."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class Predictor:
    """A checkpoint (PyTorch, fused) or an exported ``.onnx`` file, with letterbox and post-processing."""

    def __init__(
        self, checkpoint: str, device: torch.device, imgsz: int, post: PostProcess, amp: torch.dtype | None = None
    ) -> None:
        """``amp``: autocast dtype of the PyTorch model's forward (None: full precision)."""
        self.post = post
        self.device = device
        self.amp = amp
        self.memory_format = memory_format(device)
        if Path(checkpoint).suffix.lower() == ".onnx":
            self.model = OnnxModel(checkpoint)
            self.names, self.imgsz = self.model.names, self.model.imgsz  # the graph's own input size
        else:
            model, meta = load_checkpoint(checkpoint)
            self.model = Decoded(model.fuse().to(device, memory_format=self.memory_format)).eval()
            self.names, self.imgsz = meta["names"], imgsz
        self.letterbox = build_val_pipeline(self.imgsz)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        fitted = fit_longest_side(image, self.imgsz)
        boxed = self.letterbox(fitted, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), seed=0).image
        x = torch.from_numpy(boxed).permute(2, 0, 1)[None].to(self.device).float().div_(255)
        if isinstance(self.model, OnnxModel):
            boxes, scores = self.model(x)
        else:
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                boxes, scores = self.model(x.contiguous(memory_format=self.memory_format))
            boxes, scores = boxes.float(), scores.float()
        letterbox = torch.from_numpy(letterbox_params((h, w), fitted_size(h, w, self.imgsz), self.imgsz))[None]
        det = self.post(boxes.to(self.device), scores.to(self.device), letterbox.to(self.device), torch.tensor([[h, w]]))[0]
        return Detections(det.boxes.cpu(), det.scores.cpu(), det.classes.cpu())


def run(cfg: DictConfig) -> Path:
    console = Console()
    images = find_images(cfg.source)
    device = select_device(cfg.device)
    post = PostProcess(conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det, agnostic=cfg.agnostic, multi_label=False)
    predictor = Predictor(cfg.checkpoint, device, cfg.imgsz, post, autocast_dtype(device, bool(cfg.amp), "amp"))
    run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok)
    used: set[str] = set()
    done = skipped = 0
    for path in images:
        image = decode_image(path)
        if image is None:
            console.print(f"[yellow]skipped {path}: not an image OpenCV can read[/yellow]")
            skipped += 1
            continue
        det = predictor(image)
        stem = unique_stem(path, used)
        result = {
            "image": str(path),
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "detections": [
                {"box": [round(v, 2) for v in b], "score": round(float(s), 4), "class_id": int(c),
                 "class": predictor.names[int(c)]}
                for b, s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.classes.tolist())
            ],
        }
        write_text_atomic(run_dir / f"{stem}.json", json.dumps(result, indent=2))
        if cfg.save_images:
            drawn = draw_boxes(image, det.boxes.numpy(), det.classes.numpy(), predictor.names, det.scores.numpy())
            save_png(run_dir / f"{stem}.png", drawn)
        console.print(f"{path}: {len(det)} detections")
        done += 1
    console.print(f"{done} images predicted, {skipped} skipped -> {run_dir}")
    return run_dir


def unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem
