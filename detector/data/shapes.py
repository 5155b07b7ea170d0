"""The built-in "shapes" dataset: an offline, deterministic, synthetic detection task.

Six classes of flat shapes (filled or outlined, rotated, stretched, coloured) are drawn
over textured, noisy backgrounds with edge-like clutter, and may hide each other. Labels
describe what is visible: every object is rasterised into an id map in drawing order,
its box is the tight box of the pixels it still owns at the end, and it is left out of
the labels when too little of it remains.

The folder follows the Ultralytics YOLO layout::

    <root>/data.yaml              path, train, val, names
    <root>/images/{train,val}/000000.jpg
    <root>/labels/{train,val}/000000.txt   "<class> <cx> <cy> <w> <h>", normalised, 6 decimals
    <root>/generation.json        the parameters (and format version) that made the folder

``ensure_shapes`` generates into a temporary sibling folder and renames it into place,
so a crash never leaves a folder that looks complete; a folder whose generation.json
records the same parameters is reused untouched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import NormalDist
from typing import NamedTuple

import cv2
import numpy as np
import yaml

from detector.runs import write_text_atomic

__all__ = ["FORMAT_VERSION", "SHAPE_NAMES", "ensure_shapes"]

log = logging.getLogger(__name__)

SHAPE_NAMES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star", "hexagon", "cross")
FORMAT_VERSION = 1  # bump whenever the rendering changes, so old folders are regenerated

_SPLITS: tuple[tuple[str, int], ...] = (("train", 0), ("val", 1))
_REFERENCE_SIZE = 320  # the pixel ranges below are for this image size and scale with imgsz
_SIZE_RANGE = (8.0, 150.0)  # longest side of an object's box, log-uniform
_THICKNESS_RANGE = (2, 4)  # outline thickness, inclusive
_MAX_OBJECTS = 15
_BACKGROUND_ONLY_P = 0.04  # extra chance of an image with no objects
_MIN_VISIBLE_FRACTION = 0.35
_MIN_BOX_SIDE = 3  # px; a smaller visible box is not labelled
_CLUTTER_MIN_SIZE = 32.0  # px; smaller partial outlines would look like whole objects
_MIN_CONTRAST = 60.0  # RGB distance between an object's colour and the background under it
_SHIFT = 4  # fixed-point bits for cv2 drawing: vertices keep 1/16 px precision
_ONE = 1 << _SHIFT
_IMAGE_EXT = ".jpg"
_JPEG_QUALITY = 95
_MAX_THREADS = 4
_MIN_IMAGES_FOR_THREADS = 64
_CHUNK = 32
_ROOT_ENTRIES = frozenset({"data.yaml", "images", "labels", "generation.json"})


class Rendered(NamedTuple):
    """One rendered image with its labels and the rasterisation they were read from."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] int64 xyxy pixels, x2/y2 exclusive (tight box of visible pixels)
    classes: np.ndarray  # [N] int64 class ids into SHAPE_NAMES
    id_map: np.ndarray  # [H, W] uint8: 0 background, k = k-th drawn object (1-based)
    ids: np.ndarray  # [N] int64 id of each labelled object in id_map
    own_pixels: np.ndarray  # [M] int64 pixels of each drawn object alone (unoccluded, unclipped)
    filled: np.ndarray  # [M] bool, False for an outlined object


# ----------------------------------------------------------------------------- geometry


def _regular_polygon(corners: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    """Vertices of a regular polygon around the origin."""  # [K, 2]
    angles = phase + 2.0 * np.pi * np.arange(corners) / corners
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(inner: float) -> np.ndarray:
    """A five-pointed star whose inner vertices lie at radius ``inner``."""  # [10, 2]
    outer = _regular_polygon(5, 1.0, -np.pi / 2)
    between = _regular_polygon(5, inner, -np.pi / 2 + np.pi / 5)
    return np.stack([outer, between], axis=1).reshape(10, 2)


def _cross(half_width: float) -> np.ndarray:
    """A plus sign with arms of half-width ``half_width`` reaching to +-1."""  # [12, 2]
    w = half_width
    return np.array(
        [[w, 1], [w, w], [1, w], [1, -w], [w, -w], [w, -1], [-w, -1], [-w, -w], [-1, -w], [-1, w], [-w, w], [-w, 1]],
        dtype=np.float64,
    )


def _unit_shape(cls: int, rng: np.random.Generator) -> np.ndarray:
    """The outline of class ``cls`` around the origin, with a random stretch along x."""  # [K, 2]
    if cls == 0:  # circle, a little elliptic at most
        points, aspect = _regular_polygon(48), rng.uniform(0.8, 1.0)
    elif cls == 1:  # rectangle, from square to thin bar
        points, aspect = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]), rng.uniform(0.3, 1.0)
    elif cls == 2:  # triangle, with its apex moved sideways
        points, aspect = _regular_polygon(3), rng.uniform(0.6, 1.0)
        points[0, 0] += rng.uniform(-0.5, 0.5)
    elif cls == 3:
        points, aspect = _star(rng.uniform(0.38, 0.55)), rng.uniform(0.85, 1.0)
    elif cls == 4:
        points, aspect = _regular_polygon(6, phase=rng.uniform(0.0, np.pi / 3)), rng.uniform(0.8, 1.0)
    else:
        points, aspect = _cross(rng.uniform(0.18, 0.4)), rng.uniform(0.7, 1.0)
    return points * np.array([aspect, 1.0])


def _place(points: np.ndarray, angle: float, size: float, centre: np.ndarray) -> np.ndarray:
    """Rotate, scale so the box's longest side is ``size``, and move to ``centre``."""  # [K, 2] px
    c, s = np.cos(angle), np.sin(angle)
    turned = points @ np.array([[c, s], [-s, c]])
    extent = float((turned.max(0) - turned.min(0)).max())
    turned = turned - (turned.max(0) + turned.min(0)) / 2.0
    return turned * (size / extent) + centre


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates to cv2's fixed-point vertices (``shift=_SHIFT``)."""  # [K, 1, 2] int32
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


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
        ends = _fixed_point(rng.uniform(0.0, imgsz, (2, 2)))
        width = max(1, round(_scaled(rng.integers(1, 4), imgsz)))
        cv2.line(image, tuple(ends[0, 0]), tuple(ends[1, 0]), _random_colour(rng), width, cv2.LINE_8, _SHIFT)
    for _ in range(int(rng.integers(0, 6))):
        outline = _random_outline(rng, imgsz)
        keep = max(2, int(np.ceil(rng.uniform(0.2, 0.5) * len(outline))) + 1)
        first = int(rng.integers(0, len(outline)))
        arc = np.roll(outline, -first, axis=0)[:keep]
        width, colour = _thickness(rng, imgsz), _random_colour(rng)
        cv2.polylines(image, [_fixed_point(arc)], False, colour, width, cv2.LINE_8, _SHIFT)


def _random_colour(rng: np.random.Generator) -> list[float]:
    """An RGB colour for cv2 drawing calls."""
    return rng.uniform(0.0, 255.0, 3).tolist()


def _thickness(rng: np.random.Generator, imgsz: int) -> int:
    """A random outline thickness in pixels at ``imgsz``."""
    return max(1, round(_scaled(rng.integers(_THICKNESS_RANGE[0], _THICKNESS_RANGE[1] + 1), imgsz)))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A size between ``low`` and ``high``, as many small ones as big ones per octave."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _random_outline(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """A random shape of random class, rotation and place, big enough that a part of it
    reads as a fragment rather than as a whole small object."""  # [K, 2] px
    cls = int(rng.integers(0, len(SHAPE_NAMES)))
    low, high = _scaled(_CLUTTER_MIN_SIZE, imgsz), _scaled(_SIZE_RANGE[1], imgsz)
    size = _log_uniform(rng, low, high)
    return _place(_unit_shape(cls, rng), rng.uniform(0.0, 2.0 * np.pi), size, rng.uniform(0.0, imgsz, 2))


# ------------------------------------------------------------------------------ objects


def _rasterise(points: np.ndarray, thickness: int) -> tuple[np.ndarray, int, int]:
    """The mask of a shape (filled when ``thickness`` is 0) in a tight local frame.

    Returns the mask and the image coordinates of its top-left corner.
    """  # mask [h, w] bool
    pad = thickness + 2
    x0, y0 = (int(np.floor(v)) - pad for v in points.min(0))
    x1, y1 = (int(np.ceil(v)) + pad + 1 for v in points.max(0))
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    vertices = _fixed_point(points - np.array([x0, y0]))
    if thickness == 0:
        cv2.fillPoly(mask, [vertices], 1, cv2.LINE_8, _SHIFT)
    else:
        cv2.polylines(mask, [vertices], True, 1, thickness, cv2.LINE_8, _SHIFT)
    return mask.astype(bool), x0, y0


def _clip(x0: int, y0: int, mask: np.ndarray, imgsz: int) -> tuple[slice, slice, np.ndarray] | None:
    """The image slices a local mask covers and the part of the mask inside the image."""
    h, w = mask.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, imgsz), min(y0 + h, imgsz)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    inside = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return slice(iy0, iy1), slice(ix0, ix1), inside


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
        size = _log_uniform(rng, low, high)
        angle, centre = rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.0, imgsz, 2)
        points = _place(_unit_shape(int(classes[k]), rng), angle, size, centre)
        filled[k] = rng.random() < 0.5
        thickness = 0 if filled[k] else _thickness(rng, imgsz)
        mask, x0, y0 = _rasterise(points, thickness)
        own[k] = np.count_nonzero(mask)
        clipped = _clip(x0, y0, mask, imgsz)
        if clipped is None:
            regions.append((slice(0, 0), slice(0, 0)))
            continue
        rows, cols, inside = clipped
        regions.append((rows, cols))
        colour = _pick_colour(rng, image[rows, cols][inside])
        _paint(image[rows, cols], inside, colour, rng)
        id_map[rows, cols][inside] = k + 1
    return id_map, regions, classes, own, filled


def _visible_boxes(
    id_map: np.ndarray, regions: list[tuple[slice, slice]], own: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes of the pixels each object still owns; too-hidden objects are left out.

    Returns the boxes (xyxy, x2/y2 exclusive) and the 0-based indices of the kept objects.
    """  # [N, 4] int64, [N] int64
    boxes: list[list[int]] = []
    kept: list[int] = []
    for k, (rows, cols) in enumerate(regions):
        visible = id_map[rows, cols] == k + 1  # [h, w]
        if own[k] == 0 or np.count_nonzero(visible) < _MIN_VISIBLE_FRACTION * own[k]:
            continue
        ys, xs = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
        x1, y1 = cols.start + int(xs[0]), rows.start + int(ys[0])
        x2, y2 = cols.start + int(xs[-1]) + 1, rows.start + int(ys[-1]) + 1
        if x2 - x1 < _MIN_BOX_SIDE or y2 - y1 < _MIN_BOX_SIDE:
            continue
        boxes.append([x1, y1, x2, y2])
        kept.append(k)
    return np.array(boxes, dtype=np.int64).reshape(-1, 4), np.array(kept, dtype=np.int64)


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sometimes blur, always add gaussian noise, and quantise."""  # [H, W, 3] uint8
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    noise = cv2.LUT(np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape), _gaussian_table())
    noise *= np.float32(rng.uniform(2.0, 14.0))
    return cv2.add(image, noise, dtype=cv2.CV_8U)  # rounds and saturates to [0, 255]


def _gaussian_table() -> np.ndarray:
    """Standard-normal quantiles at the centres of 256 equal-probability bins.

    Looking random bytes up in it gives gaussian noise several times faster than sampling it.
    """  # [256] float32
    normal = NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)


def _render(rng: np.random.Generator, imgsz: int) -> Rendered:
    """Render one image and its visible-object labels from ``rng``."""
    image = _background(rng, imgsz)
    _clutter(image, rng)
    id_map, regions, classes, own, filled = _draw_objects(image, rng)
    boxes, kept = _visible_boxes(id_map, regions, own)
    return Rendered(_finish(image, rng), boxes, classes[kept], id_map, kept + 1, own, filled)


def _label_text(boxes: np.ndarray, classes: np.ndarray, imgsz: int) -> str:
    """YOLO label lines for pixel boxes: ``<class> <cx> <cy> <w> <h>`` normalised."""
    lines = []
    for (x1, y1, x2, y2), cls in zip(boxes.tolist(), classes.tolist()):
        cx, cy, w, h = (x1 + x2) / 2 / imgsz, (y1 + y2) / 2 / imgsz, (x2 - x1) / imgsz, (y2 - y1) / imgsz
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


# ------------------------------------------------------------------------------ writing


def _image_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The generator for one image: independent of every other image and of global state."""
    return np.random.default_rng([seed, split_id, index])


def _write_images(root: Path, split: str, split_id: int, indices: range, seed: int, imgsz: int) -> None:
    """Render and write the images and label files of one split for ``indices``."""
    for index in indices:
        rendered = _render(_image_rng(seed, split_id, index), imgsz)
        bgr = cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR)  # cv2 writes BGR
        ok, encoded = cv2.imencode(_IMAGE_EXT, bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode shapes image {split}/{index:06d}{_IMAGE_EXT}")
        (root / "images" / split / f"{index:06d}{_IMAGE_EXT}").write_bytes(encoded.tobytes())
        label = _label_text(rendered.boxes, rendered.classes, imgsz)
        (root / "labels" / split / f"{index:06d}.txt").write_text(label)


def _worker_count(total: int) -> int:
    """Threads to use: cv2 and numpy release the GIL for the heavy work, so threads scale."""
    if total < _MIN_IMAGES_FOR_THREADS:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_MAX_THREADS, cpus))


def _generate(root: Path, counts: dict[str, int], seed: int, imgsz: int) -> None:
    """Write every split's images and labels under ``root`` (which must not exist yet)."""
    jobs: list[tuple[str, int, range]] = []
    for split, split_id in _SPLITS:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        jobs += [(split, split_id, range(i, min(i + _CHUNK, counts[split]))) for i in range(0, counts[split], _CHUNK)]
    workers = _worker_count(sum(counts.values()))
    if workers == 1:
        for split, split_id, indices in jobs:
            _write_images(root, split, split_id, indices, seed, imgsz)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shapes") as pool:
        futures = [pool.submit(_write_images, root, *job, seed, imgsz) for job in jobs]
        for future in futures:
            future.result()


def _data_yaml(root: Path) -> str:
    """The Ultralytics data.yaml text for a shapes folder that lives (or will live) at ``root``."""
    content = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(SHAPE_NAMES)),
    }
    return yaml.safe_dump(content, sort_keys=False)


def _record(num_train: int, num_val: int, imgsz: int, seed: int) -> dict[str, object]:
    """What generation.json holds: everything that decides the folder's content."""
    return {
        "generator": "detector.data.shapes",
        "format_version": FORMAT_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "imgsz": imgsz,
        "seed": seed,
        "names": list(SHAPE_NAMES),
        "image_ext": _IMAGE_EXT,
    }


def _count_files(folder: Path, suffix: str) -> int:
    """Number of files in ``folder`` ending with ``suffix`` (-1 when it is not a folder)."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(suffix) and e.is_file())
    except OSError:
        return -1


def _is_current(root: Path, record: dict[str, object]) -> bool:
    """True when ``root`` is a complete folder made with exactly ``record``."""
    try:
        found = json.loads((root / "generation.json").read_text())
    except (OSError, ValueError):
        return False
    if found != record or not (root / "data.yaml").is_file():
        return False
    for split, _ in _SPLITS:
        expected = record[f"num_{split}"]
        images = _count_files(root / "images" / split, _IMAGE_EXT)
        labels = _count_files(root / "labels" / split, ".txt")
        if images != expected or labels != expected:
            return False
    return True


def _check_replaceable(root: Path) -> None:
    """Refuse to replace anything that is not (the remains of) a shapes folder."""
    if not root.exists():
        return
    if not root.is_dir():
        raise NotADirectoryError(f"shapes dataset root {root} exists and is not a folder")
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _ROOT_ENTRIES and not p.name.endswith(".cache"))
    if foreign:
        raise FileExistsError(
            f"refusing to replace {root}: it holds entries the shapes generator did not write "
            f"({', '.join(foreign[:5])}); point ensure_shapes at an empty or new folder"
        )


def _install(staging: Path, root: Path, record: dict[str, object]) -> None:
    """Move the finished ``staging`` folder to ``root``, replacing an old folder there."""
    if _is_current(root, record):  # another process finished the same folder meanwhile
        shutil.rmtree(staging)
        return
    old: Path | None = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(root, old)
    try:
        os.rename(staging, root)
    except OSError:
        if old is not None and not root.exists():
            os.rename(old, root)
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _check_params(num_train: int, num_val: int, imgsz: int, seed: int) -> None:
    """One clear error for an argument that cannot make a dataset."""
    checks = (("num_train", num_train, 1), ("num_val", num_val, 1), ("imgsz", imgsz, 32), ("seed", seed, 0))
    for name, value, least in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"ensure_shapes: {name} must be an integer >= {least}, got {value!r}")


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
    _check_params(num_train, num_val, imgsz, seed)
    num_train, num_val, imgsz, seed = int(num_train), int(num_val), int(imgsz), int(seed)
    root = Path(root).expanduser().resolve()
    record = _record(num_train, num_val, imgsz, seed)
    data_yaml = root / "data.yaml"
    if _is_current(root, record):
        if data_yaml.read_text() != _data_yaml(root):
            write_text_atomic(data_yaml, _data_yaml(root))
        log.debug("reusing shapes dataset at %s", root)
        return data_yaml
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        log.debug("generating shapes dataset %s into %s", record, staging)
        _generate(staging, {"train": num_train, "val": num_val}, seed, imgsz)
        (staging / "data.yaml").write_text(_data_yaml(root))
        (staging / "generation.json").write_text(json.dumps(record, indent=2) + "\n")  # last: marks it complete
        _install(staging, root, record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_yaml
