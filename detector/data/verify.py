"""The dataset doctor: every image decoded and every label checked once per split.

:func:`verify_split` turns a :class:`SplitSpec` into a :class:`SplitIndex`: the usable images
and their annotations in flat numpy arrays (no per-image Python objects, so data-loader
workers share them without copying), plus every problem found. Bad images and bad label
lines are skipped, never fatal. The result is cached on disk, keyed by the size and
modification time of every file involved, and reused while they are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from detector.data.index import Problem, SplitIndex
from detector.data.sources import CocoAnnotation, SplitSpec
from detector.images import decode_image
from detector.runs import write_atomic
from detector.types import ProgressCallback

DOCTOR_VERSION = 1
BOUNDS_TOLERANCE = 0.01  # fraction of the image side a box may overshoot; clipped within it

# problem kinds, in the order reports list them
PROBLEM_KINDS = {
    "missing_image": "image file does not exist",
    "empty_image": "zero-byte image file",
    "truncated_image": "image file is truncated",
    "unreadable_image": "image cannot be decoded",
    "size_mismatch": "image size differs from the annotation file",
    "unreadable_label": "label file cannot be read as text",
    "columns": "wrong number of columns",
    "non_numeric": "non-numeric value",
    "class_range": "class id out of range",
    "unknown_category": "category id not among the categories",
    "out_of_bounds": "coordinates outside the image",
    "zero_area": "zero-area box",
    "duplicate": "duplicate row",
}


def default_cache_dir() -> Path:
    """``$DETECTOR_CACHE`` or ``~/.cache/detector``: where the doctor keeps its results."""
    return Path(os.environ.get("DETECTOR_CACHE", Path.home() / ".cache" / "detector")).expanduser()


def verify_split(
    spec: SplitSpec,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> SplitIndex:
    """Check every image and label of ``spec``, or load the cached result while no file changed.
    ``progress(done, total)`` hears of the images decoded so far (not called for a cached result)."""
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(spec)
    stem = hashlib.sha1(f"{spec.source}|{spec.name}".encode()).hexdigest()[:12]
    cache_file = cache_root / "doctor" / f"{spec.name}-{stem}-{key[:16]}.npz"
    if cache_file.is_file():
        try:
            return _load(cache_file, spec)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: verify again and overwrite it
    index = _verify(spec, workers or min(8, os.cpu_count() or 1), progress)
    try:
        _save(index, cache_file)
        for stale in cache_file.parent.glob(f"{spec.name}-{stem}-*.npz"):
            if stale != cache_file:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache location costs time next run, never correctness
    return index


# --------------------------------------------------------------------------- checks


def check_image(path: Path) -> tuple[int, int] | Problem:
    """``(height, width)`` of a decodable, complete image, or the problem with it."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Problem(name, 0, "missing_image", "no such file")
    except OSError as err:
        return Problem(name, 0, "unreadable_image", f"cannot read: {err.strerror or err}")
    if not data:
        return Problem(name, 0, "empty_image", "zero-byte file")
    if data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return Problem(name, 0, "truncated_image", "JPEG data ends before its end-of-image marker")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        return Problem(name, 0, "truncated_image", "PNG data ends before its IEND chunk")
    image = decode_image(data)
    if image is None:
        return Problem(name, 0, "unreadable_image", "not a format OpenCV can decode")
    return int(image.shape[0]), int(image.shape[1])


def parse_yolo_label(
    path: Path, size: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """Boxes (xyxy pixels), classes and problems of one YOLO label file for an image of ``size`` (h, w).

    A line is ``class cx cy w h`` (normalised) or ``class x1 y1 x2 y2 ...`` (a polygon, boxed).
    """
    name = str(path)
    h, w = size
    try:
        text = path.read_text()
    except FileNotFoundError:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), []  # a background image
    except (OSError, UnicodeDecodeError) as err:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), [Problem(name, 0, "unreadable_label", str(err))]
    boxes, classes, problems = [], [], []
    seen: dict[tuple[int, ...], int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split()
        if not fields:
            continue
        if not (len(fields) == 5 or (len(fields) >= 7 and len(fields) % 2 == 1)):
            problems.append(Problem(name, number, "columns", f"{len(fields)} columns, expected 5 (class cx cy w h)"))
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            problems.append(Problem(name, number, "non_numeric", f"{bad!r} is not a number"))
            continue
        if not all(math.isfinite(v) for v in values):
            problems.append(Problem(name, number, "non_numeric", "nan or inf value"))
            continue
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            problems.append(Problem(name, number, "class_range", f"class {fields[0]} not in 0..{num_classes - 1}"))
            continue
        if len(values) == 5:
            cx, cy, bw, bh = values[1:]
            x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        else:
            xs, ys = values[1::2], values[2::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        box = _check_box((x1, y1, x2, y2), 1.0, 1.0, name, number, problems)
        if box is None:
            continue
        key = (int(cls), *(round(v * 1e6) for v in box))
        if key in seen:
            problems.append(Problem(name, number, "duplicate", f"same as line {seen[key]}"))
            continue
        seen[key] = number
        boxes.append((box[0] * w, box[1] * h, box[2] * w, box[3] * h))
        classes.append(int(cls))
    return _as_arrays(boxes, classes) + (problems,)


def parse_coco_annotations(
    anns: list[CocoAnnotation], size: tuple[int, int], category_ids: dict, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Problem]]:
    """Boxes (xyxy pixels), classes, crowd flags and problems of one image's COCO annotations."""
    h, w = size
    boxes, classes, crowd, problems = [], [], [], []
    seen: dict[tuple, object] = {}
    for ann in anns:
        ref = ann.ann_id if ann.ann_id is not None else "?"
        where = f"annotation {ref}"
        bbox = ann.bbox
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            problems.append(Problem(source, ref, "columns", f"{where}: bbox must be [x, y, w, h]"))
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
            problems.append(Problem(source, ref, "non_numeric", f"{where}: bbox {bbox} has a non-numeric value"))
            continue
        if ann.category_id not in category_ids:
            problems.append(Problem(source, ref, "unknown_category", f"{where}: category_id {ann.category_id}"))
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        box = _check_box((x, y, x + bw, y + bh), float(w), float(h), source, ref, problems, prefix=f"{where}: ")
        if box is None:
            continue
        key = (ann.category_id, *(round(v, 3) for v in box))
        if key in seen:
            problems.append(Problem(source, ref, "duplicate", f"{where}: same box as annotation {seen[key]}"))
            continue
        seen[key] = ref
        boxes.append(box)
        classes.append(category_ids[ann.category_id])
        crowd.append(bool(ann.iscrowd))
    b, c = _as_arrays(boxes, classes)
    return b, c, np.array(crowd, dtype=bool).reshape(-1), problems


def _check_box(
    box: tuple[float, float, float, float],
    w: float,
    h: float,
    file: str,
    line: int | str,
    problems: list[Problem],
    prefix: str = "",
) -> tuple[float, float, float, float] | None:
    """The box clipped to ``[0, w] x [0, h]``, or ``None`` (with a problem) when it is degenerate or
    overshoots the image by more than the tolerance."""
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        problems.append(Problem(file, line, "zero_area", f"{prefix}width {x2 - x1:g}, height {y2 - y1:g}"))
        return None
    tx, ty = BOUNDS_TOLERANCE * w, BOUNDS_TOLERANCE * h
    if x1 < -tx or y1 < -ty or x2 > w + tx or y2 > h + ty:
        problems.append(
            Problem(file, line, "out_of_bounds", f"{prefix}box {x1:g},{y1:g},{x2:g},{y2:g} outside {w:g}x{h:g}")
        )
        return None
    x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
    y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    if x2 <= x1 or y2 <= y1:
        problems.append(Problem(file, line, "zero_area", f"{prefix}nothing left inside the image"))
        return None
    return x1, y1, x2, y2


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _as_arrays(boxes: list, classes: list) -> tuple[np.ndarray, np.ndarray]:
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(classes, dtype=np.int64).reshape(-1)


# --------------------------------------------------------------------------- the whole split


def _verify(spec: SplitSpec, workers: int, progress: ProgressCallback | None = None) -> SplitIndex:
    checked: list[tuple[int, int] | Problem] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2 decodes outside the GIL
        for result in pool.map(check_image, spec.images):
            checked.append(result)
            if progress is not None:
                progress(len(checked), len(spec.images))
    problems: list[Problem] = []
    paths, sizes, ids, offsets = [], [], [], [0]
    all_boxes, all_classes, all_crowd = [], [], []
    num_classes = len(spec.names)
    for i, (image, result) in enumerate(zip(spec.images, checked)):
        if isinstance(result, Problem):
            problems.append(result)
            continue
        if spec.coco_annotations is not None:
            json_size = spec.coco_sizes[i] if spec.coco_sizes else (0, 0)
            if all(json_size) and tuple(json_size) != result:
                problems.append(
                    Problem(
                        str(image),
                        0,
                        "size_mismatch",
                        f"{spec.source} says {json_size[1]}x{json_size[0]}, "
                        f"the file is {result[1]}x{result[0]} (w x h)",
                    )
                )
                continue
            boxes, classes, crowd, found = parse_coco_annotations(
                spec.coco_annotations[i], result, spec.category_ids, spec.source
            )
        else:
            boxes, classes, found = parse_yolo_label(spec.label_files[i], result, num_classes)
            crowd = np.zeros(len(classes), dtype=bool)
            if any(p.kind == "unreadable_label" for p in found):
                problems += found
                continue  # its objects are unknown: not a background either
        problems += found
        paths.append(str(image))
        sizes.append(result)
        ids.append(spec.image_ids[i] if spec.image_ids is not None else i)
        all_boxes.append(boxes)
        all_classes.append(classes)
        all_crowd.append(crowd)
        offsets.append(offsets[-1] + len(classes))
    return SplitIndex(
        name=spec.name,
        names=list(spec.names),
        paths=np.array([p.encode() for p in paths], dtype=np.bytes_).reshape(-1),
        sizes=np.array(sizes, dtype=np.int32).reshape(-1, 2),
        image_ids=np.array(ids, dtype=np.int64),
        offsets=np.array(offsets, dtype=np.int64),
        boxes=np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4), np.float32),
        classes=np.concatenate(all_classes) if all_classes else np.zeros(0, np.int64),
        crowd=np.concatenate(all_crowd) if all_crowd else np.zeros(0, bool),
        problems=problems,
        num_listed=len(spec.images),
    )


def _stat(path: Path) -> str:
    try:
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "-"


def _cache_key(spec: SplitSpec) -> str:
    """Hash of everything the result depends on: the doctor's version, the classes, every file's stat."""
    digest = hashlib.sha1()
    digest.update(f"v{DOCTOR_VERSION}|{spec.kind}|{spec.name}|{json.dumps(spec.names)}".encode())
    digest.update(json.dumps(sorted((str(k), v) for k, v in spec.category_ids.items())).encode())
    files: Iterable[Path] = spec.images
    if spec.label_files is not None:
        files = (p for pair in zip(spec.images, spec.label_files) for p in pair)
    else:
        digest.update(f"{spec.source}|{_stat(Path(spec.source))}".encode())
    for path in files:
        digest.update(f"{path}|{_stat(path)}\n".encode())
    return digest.hexdigest()


def _save(index: SplitIndex, path: Path) -> None:
    arrays = {k: getattr(index, k) for k in ("paths", "sizes", "image_ids", "offsets", "boxes", "classes", "crowd")}
    meta = {"problems": [asdict(p) for p in index.problems], "num_listed": index.num_listed}
    write_atomic(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta)), **arrays))


def _load(path: Path, spec: SplitSpec) -> SplitIndex:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k: data[k] for k in ("paths", "sizes", "image_ids", "offsets", "boxes", "classes", "crowd")}
    return SplitIndex(
        name=spec.name,
        names=list(spec.names),
        problems=[Problem(**p) for p in meta["problems"]],
        num_listed=int(meta["num_listed"]),
        **arrays,
    )
