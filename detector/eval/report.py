"""What an evaluation leaves behind: the per-class table, ``metrics.json``, the COCO files and the plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from detector.data.dataset import read_image
from detector.data.index import SplitIndex
from detector.errors import ConfigError
from detector.eval.coco import EvalResult
from detector.eval.plots import confusion_matrix, plot_confusion_matrix, pr_curves
from detector.images import draw_boxes, image_grid, save_png
from detector.letterbox import fit_longest_side, place_centred
from detector.runs import write_text_atomic


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation was run with, recorded in ``metrics.json`` (Ultralytics' validation defaults)."""

    checkpoint: str
    split: str = "val"
    imgsz: int = 640
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    agnostic: bool = False
    branch: str = "one2many"  # the head branch scored (one2one: an end-to-end head's top-k, no NMS)


def check_names(model_names: list[str], data_names: list[str], checkpoint: str) -> None:
    if list(model_names) != list(data_names):
        raise ConfigError(
            f"{checkpoint} was trained on classes {model_names[:6]}{'...' if len(model_names) > 6 else ''}, "
            f"the data has {data_names[:6]}{'...' if len(data_names) > 6 else ''}: they must be the same, in order"
        )


def results_table(result: EvalResult, index: SplitIndex) -> Table:
    m = result.scores.metrics
    title = f"mAP50-95 {m['mAP50-95']:.4f}  mAP50 {m['mAP50']:.4f}  mAP75 {m['mAP75']:.4f}  AR100 {m['AR100']:.4f}"
    table = Table(title=title, title_justify="left", min_width=len(title))  # as wide as its title: one line
    for column in ("class", "images", "instances", "AP50-95"):
        table.add_column(column, justify="left" if column == "class" else "right")
    counts = np.bincount(index.classes[~index.crowd], minlength=len(index.names))
    per_image = [set(classes.tolist()) for _, classes in index.truth()]
    table.add_row("all", f"{len(index)}", f"{index.instances}", f"{m['mAP50-95']:.4f}")
    for c, name in enumerate(index.names):
        images = sum(c in s for s in per_image)
        ap = result.scores.per_class.get(name, float("nan"))
        table.add_row(name, f"{images}", f"{int(counts[c])}", "-" if np.isnan(ap) else f"{ap:.4f}")
    return table


def write_outputs(
    run_dir: Path,
    result: EvalResult,
    index: SplitIndex,
    settings: EvalSettings,
    plots: bool = True,
    others: dict[str, EvalResult] | None = None,
) -> None:
    """``metrics.json``, ``predictions.json``, ``ground_truth.json`` and, with ``plots``, the PR curves,
    the confusion matrix and ``<split>_predictions.png`` (the first 16 images, truth and detections).
    ``others``: the other branches of an end-to-end head, by name, whose metrics ``metrics.json``
    also holds (under ``branches``, beside the main one's)."""
    metrics = {
        **result.scores.metrics,
        "per_class_AP50-95": result.scores.per_class,
        "speed_ms_per_image": result.speed,
        "settings": asdict(settings),
        "images": len(index),
        "instances": index.instances,
    }
    if others:
        metrics["branches"] = {
            name: {**r.scores.metrics, "speed_ms_per_image": r.speed}
            for name, r in {settings.branch: result, **others}.items()
        }
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    write_text_atomic(run_dir / "predictions.json", json.dumps(result.predictions))
    write_text_atomic(run_dir / "ground_truth.json", json.dumps(result.ground_truth))
    if not plots:
        return
    pr_curves(result.scores.precision, index.names, run_dir / "pr_curves.png")
    truth = index.truth()
    matrix = confusion_matrix(result.detections, truth, len(index.names), conf=0.25, iou=0.45)
    plot_confusion_matrix(matrix, index.names, run_dir / "confusion_matrix.png")
    tiles = []
    for i in range(min(16, len(index))):
        image = read_image(index.path(i))
        det, (boxes, classes) = result.detections[i], truth[i]
        keep = (det.scores > 0.25).numpy()
        image = draw_boxes(image, boxes, classes, index.names, ghost=True)
        image = draw_boxes(
            image, det.boxes.numpy()[keep], det.classes.numpy()[keep], index.names, det.scores.numpy()[keep]
        )
        tiles.append(letterboxed(image, 320))
    save_png(run_dir / f"{settings.split}_predictions.png", image_grid(tiles))


def letterboxed(image: np.ndarray, size: int) -> np.ndarray:
    """The image fitted into a white ``size x size`` tile, for grids."""
    return place_centred(fit_longest_side(image, size), size, fill=255)
