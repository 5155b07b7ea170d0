"""Images in and out: the one decoder of image files, boxes drawn on images, image grids, PNG files
(written atomically) from arrays and from matplotlib figures. Arrays are ``[H, W, 3]`` uint8 RGB."""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.runs import write_atomic


def decode_image(source: str | Path | bytes | np.ndarray) -> np.ndarray | None:
    """``[H, W, 3]`` uint8 RGB of a file path or encoded bytes in any format OpenCV reads (grey,
    RGBA and 16-bit images converted), decoded straight to RGB; None when it cannot be decoded."""
    if isinstance(source, (str, Path)):
        return cv2.imread(str(source), cv2.IMREAD_COLOR_RGB)
    data = np.frombuffer(source, np.uint8) if isinstance(source, bytes) else source
    return cv2.imdecode(data, cv2.IMREAD_COLOR_RGB) if data.size else None


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
    ghost: bool = False,
) -> np.ndarray:
    """A copy of ``image`` ([H, W, 3] uint8 RGB) with ``boxes`` ([N, 4] xyxy pixels) and labels.
    ``ghost`` draws thin white boxes without labels (ground truth under predictions)."""
    out = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(out.shape[:2]) / 400))
    scale = max(0.35, max(out.shape[:2]) / 1600)
    for k, (box, c) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1))):
        color = class_color(int(c))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if ghost:
            cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), 1, cv2.LINE_AA)
            continue
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = names[int(c)] if 0 <= int(c) < len(names) else str(int(c))
        if scores is not None:
            label += f" {float(scores[k]):.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(
            out, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
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


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure as PNG (tight layout), atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, lambda f: f.write(buffer.getvalue()))
