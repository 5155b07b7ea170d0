"""Letterbox geometry: an image fitted, aspect kept, into the network input and centred on grey, and
the way back for boxes.

An ``h0 x w0`` image becomes an ``imgsz x imgsz`` input in two steps: it is resized to
:func:`fitted_size` (longer side ``imgsz``), then placed centred on a :data:`FILL` canvas, the
top-left padding rounded down (:func:`centred_offset`). :func:`letterbox_params` states the result
as ``x_in = x_orig * scale + pad`` per axis and :func:`undo_letterbox` inverts it for boxes.
The training and validation pipelines do the same with albumentations
(:func:`detector.data.transforms.letterbox_transforms`), so that boxes follow the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

FILL = 114  # the grey of the letterbox padding and of the augmentations' borders


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a square side or of a ``(height, width)`` pair."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def fitted_size(h: int, w: int, size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of an ``h x w`` image resized, aspect kept, to fit ``size`` (a square side
    or ``(height, width)``) touching it: for a square, its longer side becomes ``size``."""
    height, width = _hw(size)
    scale = min(height / h, width / w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def fit_longest_side(image: np.ndarray, size: int | Sequence[int], enlarge: bool = True) -> np.ndarray:
    """``image`` resized to :func:`fitted_size` (area interpolation when its height shrinks, linear
    otherwise); with ``enlarge=False`` an image that already fits ``size`` stays as it is. The same
    array comes back when nothing changes."""
    h, w = image.shape[:2]
    new = fitted_size(h, w, size)
    height, width = _hw(size)
    if new == (h, w) or (not enlarge and h <= height and w <= width):
        return image
    return cv2.resize(image, new[::-1], interpolation=cv2.INTER_AREA if new[0] < h else cv2.INTER_LINEAR)


def centred_offset(inner: Sequence[int], outer: Sequence[int]) -> tuple[int, int]:
    """``(top, left)`` of an ``inner`` ``(h, w)`` centred in ``outer`` ``(H, W)``, rounded down."""
    return (int(outer[0]) - int(inner[0])) // 2, (int(outer[1]) - int(inner[1])) // 2


def place_centred(image: np.ndarray, size: int | Sequence[int], fill: int = FILL) -> np.ndarray:
    """``[H, W, 3]``: ``image`` (at most ``size``) centred on a ``fill`` canvas of ``size``."""
    height, width = _hw(size)
    h, w = image.shape[:2]
    if h > height or w > width:
        raise ValueError(f"a {h}x{w} image does not fit a {height}x{width} canvas")
    canvas = np.full((height, width, *image.shape[2:]), fill, image.dtype)
    top, left = centred_offset((h, w), (height, width))
    canvas[top : top + h, left : left + w] = image
    return canvas


def letterbox_params(orig_size: Sequence[int], loaded_size: Sequence[int], imgsz: int) -> np.ndarray:
    """``[scale_x, scale_y, pad_x, pad_y]`` float32 mapping original-image pixels to letterboxed input
    pixels (``x_in = x_orig * scale_x + pad_x``), for an image resized from ``orig_size`` to
    ``loaded_size`` (both ``(h, w)``) and then centred on an ``imgsz`` square."""
    (h0, w0), (h1, w1) = orig_size, loaded_size
    pad_y, pad_x = centred_offset((h1, w1), (imgsz, imgsz))
    return np.array([w1 / w0, h1 / h0, pad_x, pad_y], dtype=np.float32)


def letterbox(image: np.ndarray, imgsz: int, fill: int = FILL) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as the network sees it, ``[imgsz, imgsz, 3]``, and its :func:`letterbox_params`."""
    fitted = fit_longest_side(image, imgsz)
    return place_centred(fitted, imgsz, fill), letterbox_params(image.shape[:2], fitted.shape[:2], imgsz)


def letterbox_batch(images: Sequence[np.ndarray], imgsz: int, fill: int = FILL) -> tuple[np.ndarray, np.ndarray]:
    """:func:`letterbox` of each of ``images`` (``[H, W, 3]``, any sizes), placed straight into one
    ``[B, imgsz, imgsz, 3]`` array (no canvas per image, no stacking), and their ``[B, 4]`` params."""
    batch = np.full((len(images), imgsz, imgsz, 3), fill, np.uint8)
    params = np.empty((len(images), 4), np.float32)
    for i, image in enumerate(images):
        fitted = fit_longest_side(image, imgsz)
        h, w = fitted.shape[:2]
        top, left = centred_offset((h, w), (imgsz, imgsz))
        batch[i, top : top + h, left : left + w] = fitted
        params[i] = letterbox_params(image.shape[:2], (h, w), imgsz)
    return batch, params


def undo_letterbox(boxes: Tensor, letterbox: Tensor, orig_size: Tensor | None = None) -> Tensor:
    """``[N, 4]`` xyxy input pixels back to the original image, clipped to it when ``orig_size``
    ``(h, w)`` is given; ``letterbox`` is ``[scale_x, scale_y, pad_x, pad_y]``."""
    sx, sy, px, py = letterbox.tolist()
    out = (boxes - boxes.new_tensor([px, py, px, py])) / boxes.new_tensor([sx, sy, sx, sy])
    if orig_size is not None:
        h, w = (float(v) for v in orig_size)
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out
