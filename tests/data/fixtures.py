"""Small datasets written by the tests: the same objects as YOLO text and as COCO JSON, and a set
with one instance of every problem the dataset doctor knows."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from detector.config import compose, instantiate_node
from detector.data.build import AugmentSettings

NAMES = ["cat", "dog", "bird"]
COCO_IDS = [3, 7, 12]  # deliberately not contiguous


def augment_settings(imgsz: int, *overrides: str) -> AugmentSettings:
    """``configs/augment/default.yaml`` (or ``augment=NAME`` among ``overrides``) for ``imgsz``, instantiated."""
    cfg = compose("augment_only", [f"imgsz={imgsz}", *overrides])
    return AugmentSettings(**instantiate_node(cfg.augment, "augment"))


def write_image(path: Path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)


def objects(i: int, h: int, w: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Integer pixel boxes (class, (x1, y1, x2, y2)): exact in both formats."""
    rng = np.random.default_rng(100 + i)
    out = []
    for _ in range(int(rng.integers(0, 4))):
        x1, y1 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x2, y2 = int(rng.integers(x1 + 8, w)), int(rng.integers(y1 + 8, h))
        out.append((int(rng.integers(0, 3)), (x1, y1, x2, y2)))
    return out


SIZES = [(96, 128), (120, 80), (64, 64), (100, 150), (77, 91)]


def write_twin_datasets(root: Path) -> tuple[Path, Path, Path]:
    """The same images and objects as a YOLO dataset (data.yaml) and as COCO JSON + image folder."""
    images = root / "images" / "val"
    coco = {"images": [], "annotations": [], "categories": [{"id": c, "name": n} for c, n in zip(COCO_IDS, NAMES)]}
    ann_id = 1
    for i, (h, w) in enumerate(SIZES):
        name = f"im{i}.png"
        write_image(images / name, h, w, seed=i)
        lines = []
        coco["images"].append({"id": 10 + i, "file_name": name, "height": h, "width": w})
        for c, (x1, y1, x2, y2) in objects(i, h, w):
            lines.append(
                f"{c} {(x1 + x2) / 2 / w:.10f} {(y1 + y2) / 2 / h:.10f} {(x2 - x1) / w:.10f} {(y2 - y1) / h:.10f}"
            )
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": 10 + i,
                    "category_id": COCO_IDS[c],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "iscrowd": 0,
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
            ann_id += 1
        label = root / "labels" / "val" / f"im{i}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        if lines:
            label.write_text("\n".join(lines) + "\n")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: .\ntrain: images/val\nval: images/val\nnames: {dict(enumerate(NAMES))}\n")
    json_path = root / "instances.json"
    json_path.write_text(json.dumps(coco))
    return data_yaml, json_path, images


def write_problem_dataset(root: Path) -> tuple[Path, dict[str, list[tuple[str, int]]]]:
    """A YOLO dataset with every problem the doctor checks, each exactly once. Returns the
    data.yaml and, per problem kind, the expected (file name, line) pairs."""
    img, lab = root / "images", root / "labels"
    img.mkdir(parents=True)
    lab.mkdir(parents=True)
    good = [f"good{i}.jpg" for i in range(3)]
    for i, name in enumerate(good):
        write_image(img / name, 64, 80, seed=i)
    # image problems
    (img / "empty.jpg").write_bytes(b"")
    whole = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    (img / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (img / "garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    write_image(img / "badlabel.jpg", 64, 80, seed=9)
    (lab / "badlabel.txt").write_bytes(b"\xff\xfe\x00\x81 binary")
    # label problems, one per line, in good0 (lines 1-4 fine or clipped, then one bad line each)
    (lab / "good0.txt").write_text(
        "\n".join(
            [
                "0 0.5 0.5 0.2 0.2",  # 1 fine
                "1 0.995 0.5 0.02 0.2",  # 2 overshoots by 0.005: clipped, not a problem
                "0 0.5 0.5",  # 3 columns
                "1 0.5 abc 0.2 0.2",  # 4 non_numeric
                "7 0.5 0.5 0.2 0.2",  # 5 class_range
                "2 1.2 0.5 0.2 0.2",  # 6 out_of_bounds
                "2 0.3 0.3 0.0 0.2",  # 7 zero_area
                "0 0.5 0.5 0.2 0.2",  # 8 duplicate of line 1
                "2 0.1 0.1 0.3 0.1 0.3 0.4",  # 9 a polygon: fine, boxed
            ]
        )
        + "\n"
    )
    (lab / "good1.txt").write_text("2 0.25 0.25 0.1 0.1\n")
    # good2 has no label file: a background
    listing = root / "train.txt"
    names = [*good, "empty.jpg", "truncated.jpg", "garbage.jpg", "badlabel.jpg", "missing.jpg"]
    listing.write_text("\n".join(f"./images/{n}" for n in names) + "\n")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: {root}\ntrain: train.txt\nval: train.txt\nnames: {NAMES}\n")
    expected = {
        "empty_image": [("empty.jpg", 0)],
        "truncated_image": [("truncated.jpg", 0)],
        "unreadable_image": [("garbage.jpg", 0)],
        "missing_image": [("missing.jpg", 0)],
        "unreadable_label": [("badlabel.txt", 0)],
        "columns": [("good0.txt", 3)],
        "non_numeric": [("good0.txt", 4)],
        "class_range": [("good0.txt", 5)],
        "out_of_bounds": [("good0.txt", 6)],
        "zero_area": [("good0.txt", 7)],
        "duplicate": [("good0.txt", 8)],
    }
    return data_yaml, expected
