"""The built-in "crowd" dataset: many small objects over photographic-like textured backgrounds.

Where ``shapes`` draws 0-15 medium and large flat shapes, ``crowd`` stresses small-object
detection: five classes (disc, ring, square, triangle, cross) of 4-24 px (longest side, at
512 px; lengths scale with imgsz), 20-80 per image in clusters (some images sparse, 0-10),
touching and partly hiding each other. Colours come from a per-image palette shared by every
class and by the clutter, so colour never gives the class away. Backgrounds are procedural:
a colour gradient, multi-octave value noise, blurred colour blobs, and fine clutter that
resembles objects without being one (specks below the smallest object size, short strokes,
open arcs, thin bars); then uneven lighting, sometimes slight defocus, and sensor noise.

Objects and clutter are drawn anti-aliased (rasterised at 4x and area-averaged). Labels
describe what is visible: an object owns the pixels it covers by at least half, later
objects taking pixels from earlier ones; its box is the tight box of the pixels it still owns,
and it is left out when less than half of its pixels remain or its box is thinner than 2 px.

``ensure_crowd`` writes the folder (Ultralytics YOLO layout, generated into a temporary
sibling and renamed into place, reused while its generation.json matches) with the machinery
of :mod:`detector.data.generated`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from detector.data import synth
from detector.data.generated import GeneratedDataset, ensure_generated

__all__ = ["CROWD_NAMES", "DATASET", "FORMAT_VERSION", "ensure_crowd"]

CROWD_NAMES: tuple[str, ...] = ("disc", "ring", "square", "triangle", "cross")
FORMAT_VERSION = 1  # bump whenever the rendering changes, so old folders are regenerated

_REFERENCE_SIZE = 512  # the pixel lengths below are for this image size and scale with imgsz
_SIZE_RANGE = (4.0, 24.0)  # longest side of an object's box, log-uniform
_CLASS_MIN_SIZE = (4.0, 6.0, 4.0, 5.0, 5.0)  # px: a smaller ring, triangle or cross is not recognisable
_CROWD_COUNT = (20, 80)  # objects drawn in a crowded image, inclusive
_SPARSE_P = 0.15  # chance of a sparse image instead
_SPARSE_COUNT = (0, 10)
_MAX_OVERLAP = 0.3  # a new object is moved (up to _PLACE_TRIES times) while more of it covers others
_PLACE_TRIES = 4
_MIN_VISIBLE_FRACTION = 0.5
_MIN_BOX_SIDE = 2  # px (not scaled); a thinner visible box is not labelled
_OWNED = 128  # coverage (of 255) from which a pixel belongs to an object
_MIN_CONTRAST = 45.0  # RGB distance between an object's colour and the background under it
_SUPERSAMPLE = 4
_MIN_IMGSZ = 256  # below this the smallest objects would be under 2 px


def _scaled(pixels: float, imgsz: int) -> float:
    """A length given at the reference size, scaled to ``imgsz``."""
    return pixels * imgsz / _REFERENCE_SIZE


# ------------------------------------------------------------------------- anti-aliasing


def _coverage(
    points: np.ndarray, thickness: float = 0.0, closed: bool = True, hole: np.ndarray | None = None
) -> tuple[np.ndarray, int, int]:
    """How much of each pixel a shape covers (0-255), in a tight local frame: the polygon
    ``points`` filled (``thickness`` 0) or stroked ``thickness`` px wide, with ``hole`` cleared.

    Returns the coverage and the image coordinates of its top-left corner.
    """  # [h, w] uint8
    pad = int(np.ceil(thickness / 2.0)) + 1
    x0, y0 = (int(np.floor(v)) - pad for v in points.min(0))
    x1, y1 = (int(np.ceil(v)) + pad + 1 for v in points.max(0))
    fine = np.zeros(((y1 - y0) * _SUPERSAMPLE, (x1 - x0) * _SUPERSAMPLE), dtype=np.uint8)
    origin = np.array([x0, y0], dtype=np.float64)

    def to_fine(p: np.ndarray) -> np.ndarray:  # pixel k spans [k, k + 1); cv2's pixel centres are integers
        return synth.fixed_point((p - origin) * _SUPERSAMPLE - 0.5)

    if thickness == 0:
        cv2.fillPoly(fine, [to_fine(points)], 255, cv2.LINE_8, synth.SHIFT)
    else:
        width = max(1, round(thickness * _SUPERSAMPLE))
        cv2.polylines(fine, [to_fine(points)], closed, 255, width, cv2.LINE_8, synth.SHIFT)
    if hole is not None:
        cv2.fillPoly(fine, [to_fine(hole)], 0, cv2.LINE_8, synth.SHIFT)
    return cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA), x0, y0


def _blend(region: np.ndarray, cover: np.ndarray, colour: np.ndarray, strength: float = 1.0) -> None:
    """Lay ``colour`` ([3] or [h, w, 3]) over ``region`` (a view into the image) in proportion to ``cover``."""
    alpha = cover.astype(np.float32)[..., None] * np.float32(strength / 255.0)
    region += alpha * (colour - region)


def _stamp(
    image: np.ndarray, points: np.ndarray, colour: np.ndarray, strength: float = 1.0, thickness: float = 0.0
) -> None:
    """Draw a fill or open stroke of ``points`` anti-aliased into ``image``, without labelling it."""
    cover, x0, y0 = _coverage(points, thickness, closed=False)
    clipped = synth.clip(x0, y0, cover, image.shape[0])
    if clipped is not None:
        rows, cols, inside = clipped
        _blend(image[rows, cols], inside, colour, strength)


# --------------------------------------------------------------------------- background


def _palette(rng: np.random.Generator) -> np.ndarray:
    """3-6 colours that the image's objects and clutter share."""  # [P, 3] float32
    return rng.uniform(0.0, 255.0, (int(rng.integers(3, 7)), 3)).astype(np.float32)


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """A colour gradient, multi-octave value noise and blurred colour blobs."""  # [H, W, 3] float32 RGB
    start, end = rng.uniform(20.0, 235.0, (2, 3)).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.linspace(0.0, 1.0, imgsz, dtype=np.float32)
    t = np.float32(np.cos(angle)) * ramp[None, :] + np.float32(np.sin(angle)) * ramp[:, None]  # [H, W]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = start + t[..., None] * (end - start)
    direction = (1.0 + rng.uniform(-0.6, 0.6, 3)).astype(np.float32)  # mostly brightness, a little hue
    image += _fractal_noise(rng, imgsz)[..., None] * (np.float32(rng.uniform(12.0, 45.0)) * direction)
    tint = rng.standard_normal((3, 3, 3), dtype=np.float32) * np.float32(rng.uniform(5.0, 25.0))
    image += cv2.resize(tint, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC)
    _blobs(image, rng)
    if rng.random() < 0.7:
        image += _grain(rng, imgsz)[..., None] * np.float32(rng.uniform(4.0, 16.0))
    return image


def _fractal_noise(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Value noise summed over octaves of doubling frequency, sometimes ridged, standardised."""  # [H, W] float32
    cells = int(rng.integers(2, 5))
    persistence = np.float32(rng.uniform(0.45, 0.8))
    noise = np.zeros((imgsz, imgsz), dtype=np.float32)
    weight = np.float32(1.0)
    while cells <= imgsz // 4:
        grid = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
        noise += cv2.resize(grid, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC) * weight
        cells, weight = cells * 2, weight * persistence
    if rng.random() < 0.3:  # ridged: thin dark or bright veins where the noise crosses zero
        noise = np.abs(noise)
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def _grain(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Fine texture at the objects' scale: blurred noise like sand, or smeared along one
    direction like fabric or wood grain; standardised."""  # [H, W] float32
    noise = synth.gaussian_noise(rng, (imgsz, imgsz))
    if rng.random() < 0.5:
        noise = cv2.GaussianBlur(noise, (0, 0), _scaled(rng.uniform(0.7, 1.6), imgsz))
    else:
        length = max(3, round(_scaled(rng.uniform(5.0, 15.0), imgsz)))
        kernel = np.zeros((length, length), dtype=np.float32)
        turn = rng.uniform(0.0, np.pi)
        half = (length - 1) / 2.0
        ends = np.array([[-np.cos(turn), -np.sin(turn)], [np.cos(turn), np.sin(turn)]]) * half + half
        cv2.line(kernel, *(tuple(int(v) for v in np.round(end)) for end in ends), 1.0, 1)
        noise = cv2.filter2D(noise, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def _blobs(image: np.ndarray, rng: np.random.Generator) -> None:
    """Out-of-focus colour blobs: ellipses drawn at a quarter of the size, blurred, laid over ``image``."""
    imgsz = image.shape[0]
    small = max(8, imgsz // 4)
    colours = np.zeros((small, small, 3), dtype=np.float32)
    weight = np.zeros((small, small), dtype=np.float32)
    for _ in range(int(rng.integers(2, 12))):
        centre = tuple(int(v) for v in rng.integers(0, small, 2))
        axes = tuple(int(v) for v in rng.uniform(0.03, 0.25, 2) * small + 1)
        angle, colour = rng.uniform(0.0, 180.0), rng.uniform(0.0, 255.0, 3).tolist()
        cv2.ellipse(colours, centre, axes, angle, 0.0, 360.0, colour, -1)
        cv2.ellipse(weight, centre, axes, angle, 0.0, 360.0, 1.0, -1)
    sigma = rng.uniform(1.0, 5.0)
    colours, weight = (cv2.GaussianBlur(a, (0, 0), sigma) for a in (colours, weight))
    opacity = np.float32(rng.uniform(0.3, 0.85))
    colours, weight = (cv2.resize(a, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR) for a in (colours, weight))
    image += opacity * (colours - weight[..., None] * image)  # colours is already weighted


def _clutter(image: np.ndarray, rng: np.random.Generator, palette: np.ndarray) -> None:
    """Fine clutter in the objects' colours that is no object: specks smaller than the smallest
    object, short strokes, open arcs (not rings) and thin bars (not squares); in place."""
    imgsz = image.shape[0]
    specks = int(rng.integers(20, 400))
    ys, xs = rng.integers(0, imgsz, (2, specks))
    alpha = rng.uniform(0.4, 1.0, (specks, 1)).astype(np.float32)
    image[ys, xs] += alpha * (_clutter_colours(rng, palette, specks) - image[ys, xs])
    for _ in range(int(rng.integers(5, 60))):  # strokes: grass, twigs, scratches
        start = rng.uniform(0.0, imgsz, 2)
        direction, length = rng.uniform(0.0, 2.0 * np.pi), _scaled(rng.uniform(4.0, 22.0), imgsz)
        end = start + length * np.array([np.cos(direction), np.sin(direction)])
        width = _scaled(rng.uniform(0.7, 1.8), imgsz)
        _stamp(image, np.stack([start, end]), _clutter_colours(rng, palette, 1)[0], rng.uniform(0.4, 1.0), width)
    for _ in range(int(rng.integers(0, 16))):  # open arcs: at most 2/3 of a circle
        extent = rng.uniform(0.3, 0.65) * 2.0 * np.pi
        turn = rng.uniform(0.0, 2.0 * np.pi) + np.linspace(0.0, extent, 16)
        radius = _scaled(rng.uniform(2.5, 10.0), imgsz)
        arc = rng.uniform(0.0, imgsz, 2) + radius * np.stack([np.cos(turn), np.sin(turn)], axis=1)
        width = _scaled(rng.uniform(0.9, 2.0), imgsz)
        _stamp(image, arc, _clutter_colours(rng, palette, 1)[0], rng.uniform(0.6, 1.0), width)
    for _ in range(int(rng.integers(0, 16))):  # thin bars: a quarter as wide as long, or thinner
        bar = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]) * np.array([rng.uniform(0.1, 0.28), 1.0])
        size = _scaled(synth.log_uniform(rng, 6.0, _SIZE_RANGE[1]), imgsz)
        points = synth.place(bar, rng.uniform(0.0, 2.0 * np.pi), size, rng.uniform(0.0, imgsz, 2))
        _stamp(image, points, _clutter_colours(rng, palette, 1)[0], rng.uniform(0.6, 1.0))


def _clutter_colours(rng: np.random.Generator, palette: np.ndarray, count: int) -> np.ndarray:
    """``count`` colours: half from the palette (jittered), half anything."""  # [count, 3] float32
    own = palette[rng.integers(0, len(palette), count)] + rng.uniform(-20.0, 20.0, (count, 3)).astype(np.float32)
    other = rng.uniform(0.0, 255.0, (count, 3)).astype(np.float32)
    return np.where(rng.random((count, 1)) < 0.5, own, other).astype(np.float32)


# ------------------------------------------------------------------------------ objects


def _object_outline(cls: int, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """The outline of class ``cls`` around the origin, and for a ring the inner radius as a
    fraction of the outer one."""  # [K, 2]
    if cls == 0:  # disc, a little elliptic at most
        return synth.regular_polygon(32) * np.array([rng.uniform(0.85, 1.0), 1.0]), None
    if cls == 1:  # ring
        return synth.regular_polygon(32) * np.array([rng.uniform(0.85, 1.0), 1.0]), rng.uniform(0.45, 0.62)
    if cls == 2:  # square
        return np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]) * np.array(
            [rng.uniform(0.85, 1.0), 1.0]
        ), None
    if cls == 3:  # triangle, its apex a little off centre
        points = synth.regular_polygon(3) * np.array([rng.uniform(0.8, 1.0), 1.0])
        points[0, 0] += rng.uniform(-0.2, 0.2)
        return points, None
    return synth.cross(rng.uniform(0.2, 0.32)), None  # plus sign; rotated, sometimes an x


def _object_coverage(
    cls: int, rng: np.random.Generator, size: float, centre: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """The anti-aliased coverage of one object of class ``cls`` (see :func:`_coverage`)."""
    outline, inner = _object_outline(cls, rng)
    points = synth.place(outline, rng.uniform(0.0, 2.0 * np.pi), size, centre)
    hole = None
    if inner is not None:
        middle = (points.max(0) + points.min(0)) / 2.0
        hole = middle + (points - middle) * inner
    return _coverage(points, hole=hole)


def _centres(rng: np.random.Generator, count: int, imgsz: int) -> np.ndarray:
    """Where ``count`` objects go: around 1-4 cluster centres, or anywhere."""  # [count, 2] px
    clusters = rng.uniform(0.0, imgsz, (int(rng.integers(1, 5)), 2))
    spread = _scaled(rng.uniform(30.0, 90.0), imgsz)
    near = clusters[rng.integers(0, len(clusters), count)] + rng.standard_normal((count, 2)) * spread
    anywhere = rng.uniform(0.0, imgsz, (count, 2))
    return np.where(rng.random((count, 1)) < rng.uniform(0.2, 0.85), near, anywhere)


def _pick_colour(rng: np.random.Generator, palette: np.ndarray, under: np.ndarray) -> np.ndarray:
    """A palette colour (jittered) that stands out from the mean of the pixels ``under`` it."""  # [3] float32
    candidates = palette[rng.permutation(len(palette))] + rng.uniform(-15.0, 15.0, (len(palette), 3)).astype(np.float32)
    if under.size == 0:
        return candidates[0]
    distance = np.linalg.norm(candidates - under.mean(0), axis=1)
    good = np.flatnonzero(distance >= _MIN_CONTRAST)
    return candidates[good[0] if good.size else int(distance.argmax())]


def _object_count(rng: np.random.Generator) -> int:
    """How many objects an image gets: a crowd, or now and then a sparse scene."""
    low, high = _SPARSE_COUNT if rng.random() < _SPARSE_P else _CROWD_COUNT
    return int(rng.integers(low, high + 1))


def _draw_objects(
    image: np.ndarray, rng: np.random.Generator, palette: np.ndarray
) -> tuple[np.ndarray, list[tuple[slice, slice]], np.ndarray, np.ndarray]:
    """Draw the objects in sequence, in place, recording who owns each pixel.

    An object that would cover others by more than ``_MAX_OVERLAP`` of its pixels is moved, up
    to ``_PLACE_TRIES`` times (the last place is kept), so crowds touch and overlap without
    burying each other. Returns the id map, and per object its clipped region, class and own
    pixel count.
    """
    imgsz = image.shape[0]
    id_map = np.zeros((imgsz, imgsz), dtype=np.uint8)  # [H, W]
    count = _object_count(rng)
    centres = _centres(rng, count * _PLACE_TRIES, imgsz).reshape(count, _PLACE_TRIES, 2)
    classes = rng.integers(0, len(CROWD_NAMES), count)
    shadow = rng.uniform(0.0, 0.45) if rng.random() < 0.5 else 0.0  # lit from one side: soft drop shadows
    offset = rng.standard_normal(2) * _scaled(0.8, imgsz)
    regions: list[tuple[slice, slice]] = []
    own = np.zeros(count, dtype=np.int64)
    for k in range(count):
        low = max(_CLASS_MIN_SIZE[classes[k]], _SIZE_RANGE[0])
        size = _scaled(synth.log_uniform(rng, low, _SIZE_RANGE[1]), imgsz)
        for centre in centres[k]:
            cover, x0, y0 = _object_coverage(int(classes[k]), rng, size, centre)
            clipped = synth.clip(x0, y0, cover, imgsz)
            if clipped is None:
                continue
            rows, cols, inside = clipped
            owned = inside >= _OWNED
            if np.count_nonzero(id_map[rows, cols][owned]) <= _MAX_OVERLAP * np.count_nonzero(owned):
                break
        own[k] = np.count_nonzero(cover >= _OWNED)
        if clipped is None:
            regions.append((slice(0, 0), slice(0, 0)))
            continue
        rows, cols, inside = clipped
        regions.append((rows, cols))
        if shadow > 0.0:
            _shade(image, inside, rows, cols, offset, shadow)
        colour = _pick_colour(rng, palette, image[rows, cols][inside >= _OWNED])
        gx, gy = rng.uniform(-25.0, 25.0, 2)  # a little shading across the object
        across, down = (np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in (inside.shape[1], inside.shape[0]))
        shade = np.float32(gx) * across[None, :] + np.float32(gy) * down[:, None]  # [h, w]
        _blend(image[rows, cols], inside, colour + shade[..., None])
        id_map[rows, cols][inside >= _OWNED] = k + 1
    return id_map, regions, classes.astype(np.int64), own


def _shade(image: np.ndarray, inside: np.ndarray, rows: slice, cols: slice, offset: np.ndarray, depth: float) -> None:
    """Darken the place an object's shadow falls on, ``offset`` px from it, by up to ``depth``."""
    dx, dy = (int(round(v)) for v in offset)
    shifted = synth.clip(cols.start + dx, rows.start + dy, inside, image.shape[0])
    if shifted is not None:
        srows, scols, cover = shifted
        image[srows, scols] *= 1.0 - cover.astype(np.float32)[..., None] * np.float32(depth / 255.0)


# ------------------------------------------------------------------------------ finishing


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven lighting and vignetting, sometimes slight defocus, sensor noise, quantisation."""  # [H, W, 3] uint8
    imgsz = image.shape[0]
    light = rng.uniform(0.75, 1.2, (3, 3)).astype(np.float32)
    light = cv2.resize(light, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(-1.0, 1.0, imgsz, dtype=np.float32) ** 2
    light *= 1.0 - np.float32(rng.uniform(0.0, 0.25)) * (ramp[None, :] + ramp[:, None]) / 2.0
    image *= light[..., None]
    if rng.random() < 0.2:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.5, 0.8))
    luminance = synth.gaussian_noise(rng, (imgsz, imgsz))[..., None] * np.float32(rng.uniform(1.5, 8.0))
    chroma = synth.gaussian_noise(rng, image.shape) * np.float32(rng.uniform(0.5, 4.0))
    return cv2.add(image, luminance + chroma, dtype=cv2.CV_8U)  # rounds and saturates to [0, 255]


def _render(rng: np.random.Generator, imgsz: int) -> synth.Rendered:
    """Render one image and its visible-object labels from ``rng``."""
    palette = _palette(rng)
    image = _background(rng, imgsz)
    _clutter(image, rng, palette)
    id_map, regions, classes, own = _draw_objects(image, rng, palette)
    boxes, kept = synth.visible_boxes(id_map, regions, own, _MIN_VISIBLE_FRACTION, _MIN_BOX_SIDE)
    return synth.Rendered(_finish(image, rng), boxes, classes[kept], id_map, kept + 1, own)


DATASET = GeneratedDataset("crowd", "detector.data.crowd", CROWD_NAMES, FORMAT_VERSION, _render, _MIN_IMGSZ)


def ensure_crowd(
    root: str | os.PathLike, num_train: int = 400, num_val: int = 100, imgsz: int = 512, seed: int = 0
) -> Path:
    """The crowd dataset in ``root`` (generated, or reused when its parameters match); the path
    of its data.yaml. See :func:`detector.data.generated.ensure_generated`."""
    return ensure_generated(DATASET, root, num_train, num_val, imgsz, seed)
