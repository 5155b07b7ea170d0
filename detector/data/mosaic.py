"""The YOLO mosaic: four images around a random point of a ``2 imgsz`` canvas, the canvas transformed
by the random affine, and its central ``imgsz`` square kept, all in one resampling.

Ultralytics (and ``albumentations.Mosaic`` followed by ``albumentations.Affine`` and a crop) paint
the whole ``2 imgsz`` canvas, warp all of it and throw three quarters away. Here no canvas is
painted: each image is resampled once, straight from the file's resolution into the part of the
output where it lands. Without rotation and shear (the YOLO default) that is a ``cv2.resize`` of
the visible part of each image; with them, a ``cv2.warpAffine`` of the part of the canvas the output
sees. The result is the picture the canvas warp gives, placed within half a pixel (each image's
position and size are rounded to whole output pixels, one rounding shared by the two sides of each
seam); the boxes are mapped by the very transform the pixels went through, so labels stay exact.

The random affine is the ``affine`` node of the augment config (an ``albumentations.Affine``): the
same scale, translation, rotation and shear ranges serve samples with and without mosaic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from detector.letterbox import FILL, fitted_size

Cell = tuple[
    np.ndarray, np.ndarray, np.ndarray
]  # image [H, W, 3] uint8 (any resolution), boxes [N, 4] xyxy px, classes [N]


@dataclass(frozen=True)
class AffineDraw:
    """One draw of the random affine, from canvas to output pixels (continuous coordinates):
    ``x_out = linear @ (x - (imgsz, imgsz)) + (imgsz / 2, imgsz / 2) + shift``: about the canvas's
    centre, which lands on the output's centre, then shifted."""

    linear: np.ndarray  # [2, 2]
    shift: np.ndarray  # [2] pixels (x, y)

    @property
    def axis_aligned(self) -> bool:
        return self.linear[0, 1] == 0.0 and self.linear[1, 0] == 0.0


IDENTITY = AffineDraw(np.eye(2), np.zeros(2))


def check_affine(affine: A.Affine | None) -> None:
    """Refuse the ``albumentations.Affine`` settings the mosaic cannot honour (with one line naming them)."""
    if affine is None:
        return
    if not isinstance(affine, A.Affine):
        raise ValueError(
            f"augment.affine must be an albumentations.Affine to combine with the mosaic, got {type(affine).__name__}"
        )
    if affine.fit_output:
        raise ValueError("augment.affine.fit_output=true cannot be combined with the mosaic (its output is imgsz)")
    if affine.border_mode != cv2.BORDER_CONSTANT:
        raise ValueError(
            "augment.affine.border_mode must be cv2.BORDER_CONSTANT (0) with the mosaic: "
            "outside the four images the canvas is filled"
        )


def draw_affine(affine: A.Affine | None, size: int, rng: np.random.Generator) -> AffineDraw:
    """Draw scale, rotation, shear and translation from the ranges of ``affine`` (applied with its
    probability ``p``); translation is a fraction of the output ``size`` (as Ultralytics')."""
    if affine is None or rng.random() >= affine.p:
        return IDENTITY

    def uniform(bounds: Sequence[float] | float) -> float:
        if isinstance(bounds, (int, float)):
            return float(bounds)
        return float(rng.uniform(bounds[0], bounds[1]))

    def scale_of(bounds: Sequence[float] | float) -> float:
        if isinstance(bounds, (int, float)) or not affine.balanced_scale:
            return uniform(bounds)
        low, high = bounds  # balanced (albumentations' rule): shrinking and enlarging equally likely
        sides = ([(low, 1.0)] if low < 1.0 else []) + ([(1.0, high)] if high > 1.0 else [])
        return uniform(sides[int(rng.integers(len(sides)))]) if sides else 1.0

    sx = scale_of(affine.scale["x"])
    sy = sx if affine.keep_ratio else scale_of(affine.scale["y"])
    angle = math.radians(uniform(affine.rotate))
    shx, shy = math.radians(uniform(affine.shear["x"])), math.radians(uniform(affine.shear["y"]))
    if affine.translate_px is not None:
        shift = np.array([uniform(affine.translate_px["x"]), uniform(affine.translate_px["y"])])
    else:
        shift = np.array([uniform(affine.translate_percent["x"]), uniform(affine.translate_percent["y"])]) * size
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])
    shear = np.array([[1.0, math.tan(shx)], [math.tan(shy), 1.0]])
    linear = shear @ rotation @ np.diag([sx, sy])
    if angle == 0.0 and shx == 0.0 and shy == 0.0:
        linear = np.diag([sx, sy])  # exactly diagonal: the resize path
    return AffineDraw(linear, shift)


class Mosaic:
    """Four images around a random centre of a ``2 imgsz`` canvas, transformed and cropped to
    ``imgsz`` in one resampling (see the module docstring).

    ``p``: probability per sample (otherwise the sample is letterboxed alone); ``center_range``:
    where on the canvas (as a fraction of its side, per axis) the four images meet; ``fill``: the
    grey of the canvas outside the images; ``interpolation``: the OpenCV resampling (linear, as
    Ultralytics' warp: zoomed-out samples keep the pixel-level texture and noise that validation
    images have). Images come at any resolution: each is placed as if resized to longer side
    ``imgsz``, and resampled only once, into the output.
    """

    def __init__(
        self,
        p: float = 1.0,
        center_range: Sequence[float] = (0.25, 0.75),
        fill: float = FILL,
        interpolation: int = cv2.INTER_LINEAR,
    ) -> None:
        low, high = (float(v) for v in center_range)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mosaic p must be in [0, 1], got {p}")
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"mosaic center_range must be 0 <= low <= high <= 1, got {list(center_range)}")
        self.p = float(p)
        self.center_range = (low, high)
        self.fill = fill
        self.interpolation = int(interpolation)

    def __call__(
        self,
        cells: Sequence[Cell],
        size: int,
        affine: AffineDraw,
        rng: np.random.Generator,
        min_visibility: float,
        min_size: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``size x size`` output of four ``cells`` (top-left, top-right, bottom-left,
        bottom-right) and their boxes in it. As in Ultralytics, boxes are first clipped to the canvas;
        those keeping less than ``min_visibility`` of that area in the output, or narrower / lower
        than ``min_size`` pixels, are dropped."""
        if len(cells) != 4:
            raise ValueError(f"a mosaic needs 4 images, got {len(cells)}")
        low, high = self.center_range
        xc, yc = (int(rng.uniform(low * 2 * size, high * 2 * size)) for _ in range(2))
        out = np.full((size, size, 3), self.fill, dtype=np.uint8)
        if affine.axis_aligned:
            boxes, classes, areas = self._resize_cells(out, cells, size, xc, yc, affine)
        else:
            boxes, classes, areas = self._warp_canvas(out, cells, size, xc, yc, affine)
        np.clip(boxes, 0, size, out=boxes)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = (w >= min_size) & (h >= min_size) & (w * h >= min_visibility * areas) & (w > 0) & (h > 0)
        return out, boxes[keep].astype(np.float32), classes[keep]

    # ------------------------------------------------------------------ axis-aligned: one resize per image

    def _resize_cells(
        self, out: np.ndarray, cells: Sequence[Cell], size: int, xc: int, yc: int, affine: AffineDraw
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ax, ay = affine.linear[0, 0], affine.linear[1, 1]
        # where the images meet, in output pixels: one rounding shared by both sides of each seam
        seam_x = round(ax * (xc - size) + size / 2 + affine.shift[0])
        seam_y = round(ay * (yc - size) + size / 2 + affine.shift[1])
        all_boxes, all_classes, all_areas = [], [], []
        for k, (image, boxes, classes) in enumerate(cells):
            h, w = image.shape[:2]
            fh, fw = fitted_size(h, w, size)
            right, below = k in (1, 3), k in (2, 3)  # which side of each seam the image lies on
            span_x = _span(w, fw / w, ax, seam_x, right, canvas=(2 * size - xc) if right else xc, out=size)
            span_y = _span(h, fh / h, ay, seam_y, below, canvas=(2 * size - yc) if below else yc, out=size)
            if span_x is None or span_y is None:
                continue
            (u0, u1, d0x, d1x), (v0, v1, d0y, d1y) = span_x, span_y
            self._paste(out, image[v0:v1, u0:u1], d0x, d0y, d1x - d0x, d1y - d0y)
            if len(boxes):
                rx, ry = (d1x - d0x) / (u1 - u0), (d1y - d0y) / (v1 - v0)
                src = boxes.astype(np.float64)
                # the part on the canvas, in source pixels (the image may reach beyond the canvas's edge)
                cx0, cx1 = (0.0, (2 * size - xc) * w / fw) if right else (w - xc * w / fw, float(w))
                cy0, cy1 = (0.0, (2 * size - yc) * h / fh) if below else (h - yc * h / fh, float(h))
                on_canvas = np.clip(src, [cx0, cy0, cx0, cy0], [cx1, cy1, cx1, cy1])
                area = (on_canvas[:, 2] - on_canvas[:, 0]) * (on_canvas[:, 3] - on_canvas[:, 1]) * rx * ry
                clipped = np.clip(src, [u0, v0, u0, v0], [u1, v1, u1, v1])
                mapped = (clipped - [u0, v0, u0, v0]) * [rx, ry, rx, ry] + [d0x, d0y, d0x, d0y]
                all_boxes.append(mapped)
                all_classes.append(classes)
                all_areas.append(area)
        return _joined(all_boxes, all_classes, all_areas)

    def _paste(self, out: np.ndarray, src: np.ndarray, x0: int, y0: int, width: int, height: int) -> None:
        """Resize ``src`` to ``width x height`` and write it at ``(x0, y0)`` of ``out`` (clipped), with
        the same interpolation whether it enlarges or shrinks, as a warp would."""
        flags = self.interpolation
        size = out.shape[0]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + width, size), min(y0 + height, size)
        if cx1 <= cx0 or cy1 <= cy0:
            return
        if (cx0, cy0, cx1, cy1) == (x0, y0, x0 + width, y0 + height):  # entirely inside: resize in place
            target = out[cy0:cy1, cx0:cx1]
            if src.shape[:2] == (height, width):
                target[...] = src
            else:
                resized = cv2.resize(src, (width, height), dst=target, interpolation=flags)
                if resized is not target:  # OpenCV did not write into the view: copy
                    target[...] = resized
            return
        resized = cv2.resize(src, (width, height), interpolation=flags) if src.shape[:2] != (height, width) else src
        out[cy0:cy1, cx0:cx1] = resized[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]

    # ------------------------------------------------------------------ general: one warp of the canvas window

    def _warp_canvas(
        self, out: np.ndarray, cells: Sequence[Cell], size: int, xc: int, yc: int, affine: AffineDraw
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        linear = affine.linear
        offset = np.array([size / 2, size / 2]) + affine.shift - linear @ np.array([size, size])  # x_out = L x + offset
        # the part of the canvas the output sees (continuous coordinates), a pixel of margin for interpolation
        inverse = np.linalg.inv(linear)
        corners = (inverse @ (np.array([[0, 0], [size, 0], [0, size], [size, size]]) - offset).T).T
        wx0, wy0 = (max(0, math.floor(v) - 1) for v in corners.min(0))
        wx1, wy1 = (min(2 * size, math.ceil(v) + 1) for v in corners.max(0))
        all_boxes, all_classes, all_areas = [], [], []
        window = None
        if wx1 > wx0 and wy1 > wy0:
            window = np.full((wy1 - wy0, wx1 - wx0, 3), self.fill, dtype=np.uint8)
        for k, (image, boxes, classes) in enumerate(cells):
            h, w = image.shape[:2]
            fh, fw = fitted_size(h, w, size)
            px = xc if k in (1, 3) else xc - fw
            py = yc if k in (2, 3) else yc - fh
            visible = (max(px, 0), max(py, 0), min(px + fw, 2 * size), min(py + fh, 2 * size))  # on the canvas
            if window is not None:
                ix0, iy0 = max(visible[0], wx0), max(visible[1], wy0)
                ix1, iy1 = min(visible[2], wx1), min(visible[3], wy1)
                if ix1 > ix0 and iy1 > iy0:
                    fitted = (
                        image if (fh, fw) == (h, w) else cv2.resize(image, (fw, fh), interpolation=self.interpolation)
                    )
                    window[iy0 - wy0 : iy1 - wy0, ix0 - wx0 : ix1 - wx0] = fitted[
                        iy0 - py : iy1 - py, ix0 - px : ix1 - px
                    ]
            if len(boxes):
                canvas = boxes.astype(np.float64) * [fw / w, fh / h, fw / w, fh / h] + [px, py, px, py]
                clipped = np.clip(canvas, visible[:2] * 2, visible[2:] * 2)  # the part on the canvas
                quads = _corners(clipped) @ linear.T + offset  # [N, 4, 2] in output pixels, before the crop
                area = np.prod(quads.max(1) - quads.min(1), axis=1)
                extent = visible_extent(quads, size)
                extent[(clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])] = 0.0  # off the canvas
                all_boxes.append(extent)
                all_classes.append(classes)
                all_areas.append(area)
        if window is not None:
            # pixel centres: x_out + 0.5 = L (x_win + w0 + 0.5) + offset
            matrix = np.concatenate([linear, (linear @ (np.array([wx0, wy0]) + 0.5) + offset - 0.5)[:, None]], axis=1)
            cv2.warpAffine(
                window,
                matrix,
                (size, size),
                dst=out,
                flags=self.interpolation,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(self.fill,) * 3,
            )
        return _joined(all_boxes, all_classes, all_areas)


def _span(
    length: int, fit: float, zoom: float, seam: int, after: bool, canvas: int, out: int
) -> tuple[int, int, int, int] | None:
    """Along one axis: the source pixels ``[s0, s1)`` of an image of ``length`` pixels that land in the
    output, and the output pixels ``[d0, d1)`` they are resized to, or None if none land. ``d0`` and
    ``d1`` may reach a pixel outside ``[0, out)`` (the caller clips).

    The image is resized by ``fit`` (to its longer side ``imgsz``) onto the canvas, which the affine
    scales by ``zoom``. It lies ``after`` the seam (its first pixel at output coordinate ``seam``) or
    before it (its last pixel there): on both sides of a seam the images meet at the same pixel. The
    canvas ends ``canvas`` fitted pixels away from the seam on the image's side."""
    ratio = fit * zoom  # output pixels per source pixel
    anchor = 0.0 if after else float(length)

    def to_out(u: float) -> float:
        return seam + (u - anchor) * ratio

    def to_src(x: float) -> float:
        return anchor + (x - seam) / ratio

    reach = canvas / fit  # source pixels from the seam to the canvas edge
    canvas_lo, canvas_hi = (0.0, reach) if after else (length - reach, float(length))
    s0 = max(0, math.floor(to_src(0.0)), round(canvas_lo))
    s1 = min(length, math.ceil(to_src(float(out))), round(canvas_hi))
    if s1 <= s0:
        return None
    d0, d1 = round(to_out(s0)), round(to_out(s1))
    if d1 <= d0:
        return None
    return s0, s1, d0, d1


def _corners(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy -> ``[N, 4, 2]`` corners, in order around each box."""
    x1, y1, x2, y2 = boxes.T
    return np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1), np.stack([x1, y2], 1)], 1)


def visible_extent(corners: np.ndarray, size: float) -> np.ndarray:
    """``[N, 4]`` xyxy: the box around the part of each convex quadrilateral (``corners [N, 4, 2]``,
    in order around it) inside the square ``[0, size]^2``; all zeros where none of it is inside.

    A transformed box is a parallelogram; clipping its corners' box to the image would keep parts
    of the image that the object never reaches (a rotated box across a corner of the image). The
    extent of the visible part is the extent of three kinds of points: its corners inside the
    square, the crossings of its edges with the square's sides, and the square's corners inside it.
    """
    n = len(corners)
    if n == 0:
        return np.zeros((0, 4))
    a, b = corners, np.roll(corners, -1, axis=1)  # each edge a -> b
    points, valid = [a], [np.all((a >= 0) & (a <= size), axis=-1)]
    for axis in (0, 1):
        for bound in (0.0, float(size)):
            d = b[..., axis] - a[..., axis]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (bound - a[..., axis]) / d
                crossing = a + t[..., None] * (b - a)
            crossing[..., axis] = bound
            other = crossing[..., 1 - axis]
            points.append(crossing)
            valid.append((d != 0) & (t >= 0) & (t <= 1) & (other >= 0) & (other <= size))
    square = np.array([[0.0, 0.0], [size, 0.0], [size, size], [0.0, size]])
    edge = b - a  # [N, 4, 2]
    rel = square[None, None] - a[:, :, None]  # [N, 4 edges, 4 square corners, 2]
    cross = edge[:, :, None, 0] * rel[..., 1] - edge[:, :, None, 1] * rel[..., 0]
    inside = np.all(cross > 0, axis=1) | np.all(cross < 0, axis=1)  # [N, 4 square corners]; none in a flat one
    points.append(np.broadcast_to(square, (n, 4, 2)))
    valid.append(inside)
    pts, ok = np.concatenate(points, axis=1), np.concatenate(valid, axis=1)  # [N, K, 2], [N, K]
    low = np.where(ok[..., None], pts, np.inf).min(1)
    high = np.where(ok[..., None], pts, -np.inf).max(1)
    boxes = np.concatenate([low, high], axis=1)
    boxes[~ok.any(1)] = 0.0
    return boxes


def _joined(boxes: list[np.ndarray], classes: list[np.ndarray], areas: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(boxes), np.concatenate(classes).astype(np.int64), np.concatenate(areas)
