"""``python scripts/predict.py``: detections drawn on images and written as JSON, one per image."""

from __future__ import annotations

import glob
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from detector.config.schemas import PredictConfig
from detector.datafiles import IMAGE_SUFFIXES
from detector.device import autocast_dtype, select_device
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.eval.predict import Predictor
from detector.export.runtime import is_exported, load_exported
from detector.images import decode_image, draw_boxes, save_png
from detector.interop.weights import load_weights
from detector.models.heads import use_branch
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine


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


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    settings: PredictConfig = OmegaConf.to_object(cfg)
    console = Console()
    images = find_images(settings.source)
    device = select_device(settings.device)
    post = PostProcess(
        conf=settings.conf, iou=settings.iou, max_det=settings.max_det, agnostic=settings.agnostic, multi_label=False
    )
    if is_exported(settings.checkpoint):  # .onnx, OpenVINO .xml or its folder
        model = load_exported(settings.checkpoint)
        names = model.names
    else:
        model, meta = load_weights(settings.checkpoint)
        names = list(meta["names"])
        use_branch(model.head, settings.branch)
    predictor = Predictor(model, device, settings.imgsz, post, autocast_dtype(device, settings.amp, "amp"))
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
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
                {
                    "box": [round(v, 2) for v in b],
                    "score": round(float(s), 4),
                    "class_id": int(c),
                    "class": names[int(c)],
                }
                for b, s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.classes.tolist())
            ],
        }
        write_text_atomic(run_dir / f"{stem}.json", json.dumps(result, indent=2))
        if settings.save_images:
            drawn = draw_boxes(image, det.boxes.numpy(), det.classes.numpy(), names, det.scores.numpy())
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
