"""Pictures: boxes drawn on images, image grids."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from detector.runs import write_atomic


def class_color(c: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((c * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    names: Sequence[str],
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of ``image`` ([H, W, 3] uint8 RGB) with ``boxes`` ([N, 4] xyxy pixels) and labels."""
    out = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(out.shape[:2]) / 400))
    scale = max(0.35, max(out.shape[:2]) / 1600)
    for k, (box, c) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1))):
        color = class_color(int(c))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = names[int(c)] if 0 <= int(c) < len(names) else str(int(c))
        if scores is not None:
            label += f" {float(scores[k]):.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def image_grid(images: Sequence[np.ndarray], columns: int | None = None, gap: int = 4) -> np.ndarray:
    """Tile equally sized ``[H, W, 3]`` images into one image, row by row, white gaps between."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    cols = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return grid


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB image as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    return write_atomic(path, lambda f: f.write(encoded.tobytes()))
