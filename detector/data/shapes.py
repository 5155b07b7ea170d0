"""The built-in "shapes" dataset: an offline, deterministic, synthetic detection task.

Six classes of flat shapes (filled or outlined, rotated, stretched, coloured) are drawn
over textured, noisy backgrounds with edge-like clutter, and may hide each other. Labels
describe what is visible: every object is rasterised into an id map in drawing order,
its box is the tight box of the pixels it still owns at the end, and it is left out of
the labels when too little of it remains.

``ensure_shapes`` writes the folder (Ultralytics YOLO layout, generated into a temporary
sibling and renamed into place, reused while its generation.json matches) with the
machinery of :mod:`detector.data.generated`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.data import synth
from detector.data.generated import GeneratedDataset, ensure_generated

__all__ = ["DATASET", "FORMAT_VERSION", "SHAPE_NAMES", "ensure_shapes"]

SHAPE_NAMES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star", "hexagon", "cross")
FORMAT_VERSION = 1  # bump whenever the rendering changes, so old folders are regenerated

_REFERENCE_SIZE = 320  # the pixel ranges below are for this image size and scale with imgsz
_SIZE_RANGE = (8.0, 150.0)  # longest side of an object's box, log-uniform
_THICKNESS_RANGE = (2, 4)  # outline thickness, inclusive
_MAX_OBJECTS = 15
_BACKGROUND_ONLY_P = 0.04  # extra chance of an image with no objects
_MIN_VISIBLE_FRACTION = 0.35
_MIN_BOX_SIDE = 3  # px; a smaller visible box is not labelled
_CLUTTER_MIN_SIZE = 32.0  # px; smaller partial outlines would look like whole objects
_MIN_CONTRAST = 60.0  # RGB distance between an object's colour and the background under it


@dataclass(frozen=True)
class Rendered(synth.Rendered):
    """A rendered shapes image: its labels, their rasterisation, and each object's fill style."""

    filled: np.ndarray  # [M] bool, False for an outlined object


# ----------------------------------------------------------------------------- geometry


def _star(inner: float) -> np.ndarray:
    """A five-pointed star whose inner vertices lie at radius ``inner``."""  # [10, 2]
    outer = synth.regular_polygon(5, 1.0, -np.pi / 2)
    between = synth.regular_polygon(5, inner, -np.pi / 2 + np.pi / 5)
    return np.stack([outer, between], axis=1).reshape(10, 2)


def _unit_shape(cls: int, rng: np.random.Generator) -> np.ndarray:
    """The outline of class ``cls`` around the origin, with a random stretch along x."""  # [K, 2]
    if cls == 0:  # circle, a little elliptic at most
        points, aspect = synth.regular_polygon(48), rng.uniform(0.8, 1.0)
    elif cls == 1:  # rectangle, from square to thin bar
        points, aspect = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]), rng.uniform(0.3, 1.0)
    elif cls == 2:  # triangle, with its apex moved sideways
        points, aspect = synth.regular_polygon(3), rng.uniform(0.6, 1.0)
        points[0, 0] += rng.uniform(-0.5, 0.5)
    elif cls == 3:
        points, aspect = _star(rng.uniform(0.38, 0.55)), rng.uniform(0.85, 1.0)
    elif cls == 4:
        points, aspect = synth.regular_polygon(6, phase=rng.uniform(0.0, np.pi / 3)), rng.uniform(0.8, 1.0)
    else:
        points, aspect = synth.cross(rng.uniform(0.18, 0.4)), rng.uniform(0.7, 1.0)
    return points * np.array([aspect, 1.0])


def _scaled(pixels: float, imgsz: int) -> float:
    """A length given at the reference size, scaled to ``imgsz``."""
    return pixels * imgsz / _REFERENCE_SIZE


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """A colour gradient with blotches at two scales and, sometimes, stripes."""  # [H, W, 3] float32 RGB
    coarse = int(rng.integers(2, 6))
    angle = rng.uniform(0.0, 2.0 * np.pi)
    grid = np.linspace(0.0, 1.0, coarse)
    t = np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]  # [c, c]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    start, end = rng.uniform(0.0, 255.0, (2, 3))
    low = start + t[..., None] * (end - start) + rng.standard_normal((coarse, coarse, 3)) * rng.uniform(10.0, 60.0)
    image = cv2.resize(low.astype(np.float32), (imgsz, imgsz), interpolation=cv2.INTER_CUBIC)
    fine = int(rng.integers(6, 17))
    detail = rng.standard_normal((fine, fine, 3), dtype=np.float32) * np.float32(rng.uniform(0.0, 25.0))
    image += cv2.resize(detail, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.35:
        image += _stripes(rng, imgsz)
    return image


def _stripes(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Sine or square-wave stripes at a random angle, frequency and colour."""  # [H, W, 3] float32
    angle, phase = rng.uniform(0.0, np.pi), rng.uniform(0.0, 2.0 * np.pi)
    omega = 2.0 * np.pi * rng.uniform(3.0, 20.0) / imgsz  # radians per pixel across the stripes
    ramp = np.arange(imgsz)
    u, v = omega * np.cos(angle) * ramp, omega * np.sin(angle) * ramp + phase
    # sin(u + v) as a sum of two outer products, so the full grid is never evaluated by sin
    wave = (np.outer(np.cos(v), np.sin(u)) + np.outer(np.sin(v), np.cos(u))).astype(np.float32)  # [H, W]
    if rng.random() < 0.5:
        wave = np.sign(wave)
    colour = (rng.uniform(10.0, 40.0) * rng.uniform(0.3, 1.0, 3)).astype(np.float32)
    return wave[..., None] * colour


def _clutter(image: np.ndarray, rng: np.random.Generator) -> None:
    """Draw grid lines, random lines and partial shape outlines, in place."""
    imgsz = image.shape[0]
    if rng.random() < 0.2:
        step = max(4, round(_scaled(rng.uniform(12.0, 48.0), imgsz)))
        colour = _random_colour(rng)
        for v in range(int(rng.integers(0, step)), imgsz, step):
            cv2.line(image, (v, 0), (v, imgsz - 1), colour, 1)
            cv2.line(image, (0, v), (imgsz - 1, v), colour, 1)
    for _ in range(int(rng.integers(0, 9))):
        ends = synth.fixed_point(rng.uniform(0.0, imgsz, (2, 2)))
        width = max(1, round(_scaled(rng.integers(1, 4), imgsz)))
        cv2.line(image, tuple(ends[0, 0]), tuple(ends[1, 0]), _random_colour(rng), width, cv2.LINE_8, synth.SHIFT)
    for _ in range(int(rng.integers(0, 6))):
        outline = _random_outline(rng, imgsz)
        keep = max(2, int(np.ceil(rng.uniform(0.2, 0.5) * len(outline))) + 1)
        first = int(rng.integers(0, len(outline)))
        arc = np.roll(outline, -first, axis=0)[:keep]
        width, colour = _thickness(rng, imgsz), _random_colour(rng)
        cv2.polylines(image, [synth.fixed_point(arc)], False, colour, width, cv2.LINE_8, synth.SHIFT)


def _random_colour(rng: np.random.Generator) -> list[float]:
    """An RGB colour for cv2 drawing calls."""
    return rng.uniform(0.0, 255.0, 3).tolist()


def _thickness(rng: np.random.Generator, imgsz: int) -> int:
    """A random outline thickness in pixels at ``imgsz``."""
    return max(1, round(_scaled(rng.integers(_THICKNESS_RANGE[0], _THICKNESS_RANGE[1] + 1), imgsz)))


def _random_outline(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """A random shape of random class, rotation and place, big enough that a part of it
    reads as a fragment rather than as a whole small object."""  # [K, 2] px
    cls = int(rng.integers(0, len(SHAPE_NAMES)))
    low, high = _scaled(_CLUTTER_MIN_SIZE, imgsz), _scaled(_SIZE_RANGE[1], imgsz)
    size = synth.log_uniform(rng, low, high)
    return synth.place(_unit_shape(cls, rng), rng.uniform(0.0, 2.0 * np.pi), size, rng.uniform(0.0, imgsz, 2))


# ------------------------------------------------------------------------------ objects


def _rasterise(points: np.ndarray, thickness: int) -> tuple[np.ndarray, int, int]:
    """The mask of a shape (filled when ``thickness`` is 0) in a tight local frame.

    Returns the mask and the image coordinates of its top-left corner.
    """  # mask [h, w] bool
    pad = thickness + 2
    x0, y0 = (int(np.floor(v)) - pad for v in points.min(0))
    x1, y1 = (int(np.ceil(v)) + pad + 1 for v in points.max(0))
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    vertices = synth.fixed_point(points - np.array([x0, y0]))
    if thickness == 0:
        cv2.fillPoly(mask, [vertices], 1, cv2.LINE_8, synth.SHIFT)
    else:
        cv2.polylines(mask, [vertices], True, 1, thickness, cv2.LINE_8, synth.SHIFT)
    return mask.astype(bool), x0, y0


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the mean of the pixels ``under`` it."""  # [3] float32
    candidates = rng.uniform(0.0, 255.0, (6, 3)).astype(np.float32)
    if under.size == 0:
        return candidates[0]
    distance = np.linalg.norm(candidates - under.mean(0), axis=1)
    good = np.flatnonzero(distance >= _MIN_CONTRAST)
    return candidates[good[0] if good.size else int(distance.argmax())]


def _paint(region: np.ndarray, inside: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the masked pixels of ``region`` (a view into the image) with ``colour``,
    sometimes with a linear shading across the object."""
    if rng.random() < 0.5:
        h, w = inside.shape
        gx, gy = rng.uniform(-30.0, 30.0, 2)
        across, down = (np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in (w, h))
        shade = gx * across[None, :] + gy * down[:, None]  # [h, w]
        region[inside] = colour + shade[inside][:, None]
    else:
        region[inside] = colour


def _draw_objects(
    image: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[slice, slice]], np.ndarray, np.ndarray, np.ndarray]:
    """Draw 0-15 objects in sequence, in place, recording who owns each pixel.

    Returns the id map, and per object its clipped region, class, own pixel count and fill flag.
    """
    imgsz = image.shape[0]
    id_map = np.zeros((imgsz, imgsz), dtype=np.uint8)  # [H, W]
    count = 0 if rng.random() < _BACKGROUND_ONLY_P else int(rng.integers(0, _MAX_OBJECTS + 1))
    low, high = (_scaled(v, imgsz) for v in _SIZE_RANGE)
    regions: list[tuple[slice, slice]] = []
    classes, own = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    filled = np.zeros(count, dtype=bool)
    for k in range(count):
        classes[k] = rng.integers(0, len(SHAPE_NAMES))
        size = synth.log_uniform(rng, low, high)
        angle, centre = rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.0, imgsz, 2)
        points = synth.place(_unit_shape(int(classes[k]), rng), angle, size, centre)
        filled[k] = rng.random() < 0.5
        thickness = 0 if filled[k] else _thickness(rng, imgsz)
        mask, x0, y0 = _rasterise(points, thickness)
        own[k] = np.count_nonzero(mask)
        clipped = synth.clip(x0, y0, mask, imgsz)
        if clipped is None:
            regions.append((slice(0, 0), slice(0, 0)))
            continue
        rows, cols, inside = clipped
        regions.append((rows, cols))
        colour = _pick_colour(rng, image[rows, cols][inside])
        _paint(image[rows, cols], inside, colour, rng)
        id_map[rows, cols][inside] = k + 1
    return id_map, regions, classes, own, filled


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sometimes blur, always add gaussian noise, and quantise."""  # [H, W, 3] uint8
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    noise = synth.gaussian_noise(rng, image.shape)
    noise *= np.float32(rng.uniform(2.0, 14.0))
    return cv2.add(image, noise, dtype=cv2.CV_8U)  # rounds and saturates to [0, 255]


def _render(rng: np.random.Generator, imgsz: int) -> Rendered:
    """Render one image and its visible-object labels from ``rng``."""
    image = _background(rng, imgsz)
    _clutter(image, rng)
    id_map, regions, classes, own, filled = _draw_objects(image, rng)
    boxes, kept = synth.visible_boxes(id_map, regions, own, _MIN_VISIBLE_FRACTION, _MIN_BOX_SIDE)
    return Rendered(_finish(image, rng), boxes, classes[kept], id_map, kept + 1, own, filled)


DATASET = GeneratedDataset("shapes", "detector.data.shapes", SHAPE_NAMES, FORMAT_VERSION, _render)


def ensure_shapes(
    root: str | os.PathLike,
    num_train: int = 1000,
    num_val: int = 200,
    imgsz: int = 320,
    seed: int = 0,
) -> Path:
    """Generate the dataset into root unless root/generation.json already records exactly these parameters
    (then reuse it untouched); return the path of root/data.yaml.

    Generation happens in a temporary sibling folder that replaces ``root`` only once it is
    complete. An existing ``root`` is replaced only if it holds nothing but shapes files.
    If the folder was moved since it was made, only its data.yaml is rewritten.
    """
    return ensure_generated(DATASET, root, num_train, num_val, imgsz, seed)
