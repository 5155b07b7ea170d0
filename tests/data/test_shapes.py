"""The built-in shapes dataset: layout, label validity and truth, determinism, reuse, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detector.data import generated, shapes
from detector.data.generated import image_rng
from detector.data.shapes import SHAPE_NAMES, Rendered, _render, ensure_shapes

SMALL = {"num_train": 12, "num_val": 4, "imgsz": 160}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small dataset shared by the read-only tests."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    ensure_shapes(root, **SMALL)
    return root


def _labels(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "labels").rglob("*.txt"))}


def _images(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): cv2.imread(str(p)) for p in sorted((root / "images").rglob("*.jpg"))}


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _parse(label_file: Path) -> np.ndarray:
    """Label lines as rows of floats."""  # [N, 5]
    rows = [line.split() for line in label_file.read_text().splitlines()]
    assert all(len(r) == 5 for r in rows), label_file
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def _tight_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _renders(count: int, imgsz: int, split_id: int = 0) -> list[Rendered]:
    return [_render(image_rng(0, split_id, i), imgsz) for i in range(count)]


def test_layout_and_data_yaml(small_root: Path) -> None:
    data_yaml = small_root / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == dict(enumerate(SHAPE_NAMES))
    assert Path(data["path"]) == small_root.resolve()
    for split, count in (("train", 12), ("val", 4)):
        images = small_root / data["path"] / data[split]
        assert images.is_dir()
        labels = small_root / "labels" / split
        assert sorted(p.stem for p in images.glob("*.jpg")) == [f"{i:06d}" for i in range(count)]
        assert sorted(p.stem for p in labels.glob("*.txt")) == [f"{i:06d}" for i in range(count)]
    record = json.loads((small_root / "generation.json").read_text())
    assert record["format_version"] == shapes.FORMAT_VERSION
    assert {k: record[k] for k in ("num_train", "num_val", "imgsz", "seed")} == {**SMALL, "seed": 0}


def test_label_lines_are_valid(small_root: Path) -> None:
    for label_file in (small_root / "labels").rglob("*.txt"):
        rows = _parse(label_file)
        cls, cx, cy, w, h = rows.T
        assert np.all((cls == cls.round()) & (cls >= 0) & (cls < len(SHAPE_NAMES)))
        assert np.all((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1))
        assert np.all((w > 0) & (h > 0))
        eps = 1e-6
        assert np.all((cx - w / 2 >= -eps) & (cx + w / 2 <= 1 + eps) & (cy - h / 2 >= -eps) & (cy + h / 2 <= 1 + eps))
        assert len(rows) <= 15


def test_files_hold_what_the_renderer_made(small_root: Path) -> None:
    """Label files are the rendered boxes to the pixel; images are the rendered RGB pixels."""
    imgsz = SMALL["imgsz"]
    for split, split_id in (("train", 0), ("val", 1)):
        for i in range(3):
            rendered = _render(image_rng(0, split_id, i), imgsz)
            rows = _parse(small_root / "labels" / split / f"{i:06d}.txt")
            cx, cy, w, h = (rows[:, 1:] * imgsz).T
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            assert np.array_equal(rows[:, 0].astype(int), rendered.classes)
            assert np.abs(boxes - rendered.boxes).max(initial=0) < 1e-3
            bgr = cv2.imread(str(small_root / "images" / split / f"{i:06d}.jpg"))
            decoded = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            assert decoded.shape == (imgsz, imgsz, 3)
            smooth_decoded, smooth_rendered = (
                cv2.blur(im.astype(np.float32), (7, 7)) for im in (decoded, rendered.image)
            )
            assert np.abs(smooth_decoded - smooth_rendered).mean() < 6  # JPEG loss only
            assert np.abs(smooth_decoded[..., ::-1] - smooth_rendered).mean() > 12  # channels not swapped


def test_same_parameters_give_identical_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ensure_shapes(a, **SMALL)
    ensure_shapes(b, **SMALL)
    assert _labels(a) == _labels(b)
    images_a, images_b = _images(a), _images(b)
    assert images_a.keys() == images_b.keys() and len(images_a) == 16
    assert all(np.array_equal(images_a[k], images_b[k]) for k in images_a)


def test_reuse_touches_nothing(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    first = ensure_shapes(root, **SMALL)
    before = _mtimes(root)
    assert ensure_shapes(root, **SMALL) == first == root / "data.yaml"
    assert _mtimes(root) == before


def test_changed_parameters_regenerate(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    ensure_shapes(root, **SMALL)
    old = _labels(root)
    ensure_shapes(root, **SMALL, seed=1)
    new = _labels(root)
    assert new.keys() == old.keys() and new != old
    assert json.loads((root / "generation.json").read_text())["seed"] == 1
    ensure_shapes(root, num_train=5, num_val=2, imgsz=160, seed=1)
    assert len(list((root / "images" / "train").iterdir())) == 5
    assert len(list((root / "labels" / "val").iterdir())) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no temporary or old folder left


def test_incomplete_folder_is_regenerated(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    ensure_shapes(root, **SMALL)
    (root / "images" / "train" / "000003.jpg").unlink()
    ensure_shapes(root, **SMALL)
    assert (root / "images" / "train" / "000003.jpg").is_file()
    (root / "generation.json").unlink()
    ensure_shapes(root, **SMALL)
    assert (root / "generation.json").is_file()


def test_crash_leaves_old_folder_and_no_partial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "shapes"
    ensure_shapes(root, **SMALL)
    before = _labels(root)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(generated, "write_images", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_shapes(root, **SMALL, seed=7)
    assert _labels(root) == before
    assert json.loads((root / "generation.json").read_text())["seed"] == 0
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_shapes(tmp_path / "fresh", **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ensure_shapes(tmp_path, **SMALL)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [{"num_train": 0}, {"imgsz": 8}, {"seed": -1}, {"num_val": 2.5}])
def test_bad_arguments_are_rejected(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ensure_shapes(tmp_path / "shapes", **{**SMALL, **bad})  # type: ignore[arg-type]
    assert not (tmp_path / "shapes").exists()


def test_boxes_are_tight_boxes_of_visible_pixels() -> None:
    imgsz = 160
    for rendered in _renders(30, imgsz):
        assert rendered.image.shape == (imgsz, imgsz, 3) and rendered.image.dtype == np.uint8
        drawn = len(rendered.own_pixels)
        assert rendered.id_map.max(initial=0) <= drawn <= 15
        kept = set(rendered.ids.tolist())
        for obj_id, box in zip(rendered.ids.tolist(), rendered.boxes.tolist()):
            visible = rendered.id_map == obj_id
            assert box == _tight_box(visible)
            assert np.count_nonzero(visible) >= 0.35 * rendered.own_pixels[obj_id - 1]
            assert 0 <= box[0] < box[2] <= imgsz and 0 <= box[1] < box[3] <= imgsz
            assert box[2] - box[0] >= 3 and box[3] - box[1] >= 3
        for obj_id in set(range(1, drawn + 1)) - kept:  # left out: too hidden or too small
            visible = rendered.id_map == obj_id
            if np.count_nonzero(visible) >= 0.35 * rendered.own_pixels[obj_id - 1]:
                x1, y1, x2, y2 = _tight_box(visible)
                assert min(x2 - x1, y2 - y1) < 3


def test_labelled_regions_differ_from_plain_background() -> None:
    for rendered in _renders(10, 160):
        for x1, y1, x2, y2 in rendered.boxes.tolist():
            assert rendered.image[y1:y2, x1:x2].std() > 1.0


def test_counts_classes_and_fill_styles() -> None:
    renders = _renders(40, 160)
    counts = [len(r.boxes) for r in renders]
    assert min(counts) == 0 and max(counts) >= 8 and max(counts) <= 15
    classes = np.concatenate([r.classes for r in renders])
    assert set(classes.tolist()) == set(range(len(SHAPE_NAMES)))
    styles = {(int(c), bool(r.filled[i - 1])) for r in renders for c, i in zip(r.classes, r.ids)}
    assert styles == {(c, f) for c in range(len(SHAPE_NAMES)) for f in (True, False)}


def test_outlined_objects_are_hollow() -> None:
    hollow = 0
    for rendered in _renders(40, 320):
        for obj_id, (x1, y1, x2, y2) in zip(rendered.ids.tolist(), rendered.boxes.tolist()):
            own = rendered.own_pixels[obj_id - 1]
            hidden = np.count_nonzero(rendered.id_map == obj_id) < own
            if rendered.filled[obj_id - 1] or hidden or min(x2 - x1, y2 - y1) < 60:
                continue
            assert own < 0.35 * (x2 - x1) * (y2 - y1)
            hollow += 1
    assert hollow > 0


def test_size_range_at_320() -> None:
    sides = np.concatenate([(r.boxes[:, 2:] - r.boxes[:, :2]).max(1) for r in _renders(50, 320)])
    assert sides.min() < 16 and sides.max() > 100
