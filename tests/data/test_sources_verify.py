"""Sources and the dataset doctor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.data import verify
from detector.data.build import val_dataset
from detector.data.loader import build_loader
from detector.data.sources import CocoJsonSource, YoloSource, image_to_label_path
from detector.data.verify import verify_split
from detector.datafiles import dataset_names
from detector.errors import DataError
from tests.data.fixtures import COCO_IDS, NAMES, SIZES, objects, write_problem_dataset, write_twin_datasets


def test_yolo_and_coco_load_to_identical_samples(tmp_path) -> None:
    data_yaml, json_path, images = write_twin_datasets(tmp_path)
    assert dataset_names("yolo", str(data_yaml)) == NAMES == dataset_names("coco", str(json_path))
    yolo = verify_split(YoloSource(NAMES, 3, file=str(data_yaml)).split("val"), cache_dir=tmp_path / "c1")
    coco = verify_split(
        CocoJsonSource(NAMES, 3, val_json=str(json_path), val_images=str(images)).split("val"),
        cache_dir=tmp_path / "c2",
    )
    assert not yolo.problems and not coco.problems
    assert len(yolo) == len(coco) == len(SIZES)
    assert list(yolo.paths) == list(coco.paths)
    np.testing.assert_array_equal(yolo.sizes, coco.sizes)
    np.testing.assert_array_equal(yolo.offsets, coco.offsets)
    np.testing.assert_allclose(yolo.boxes, coco.boxes, atol=1e-3)
    np.testing.assert_array_equal(yolo.classes, coco.classes)
    expected = [box for i, (h, w) in enumerate(SIZES) for _, box in objects(i, h, w)]
    np.testing.assert_allclose(coco.boxes, np.array(expected, np.float32).reshape(-1, 4))
    assert list(coco.image_ids) == [10 + i for i in range(len(SIZES))]  # COCO ids are kept
    for a, b in zip(val_dataset(yolo, 128), val_dataset(coco, 128)):
        assert np.array_equal(a.image.numpy(), b.image.numpy())
        np.testing.assert_allclose(a.boxes.numpy(), b.boxes.numpy(), atol=1e-3)
        assert np.array_equal(a.classes.numpy(), b.classes.numpy())


def test_coco_category_ids_remap_and_crowd(tmp_path) -> None:
    import json

    _, json_path, images = write_twin_datasets(tmp_path)
    content = json.loads(json_path.read_text())
    content["annotations"][0]["iscrowd"] = 1
    json_path.write_text(json.dumps(content))
    spec = CocoJsonSource(NAMES, 3, val_json=str(json_path), val_images=str(images)).split("val")
    assert spec.category_ids == {cid: i for i, cid in enumerate(COCO_IDS)}
    index = verify_split(spec, cache_dir=tmp_path / "c")
    assert index.crowd.sum() == 1 and index.instances == len(index.classes) - 1
    first = next(i for i in range(len(index)) if index.offsets[i + 1] > index.offsets[i])
    item = val_dataset(index, 128)[first]
    assert len(item.classes) == index.offsets[first + 1] - index.offsets[first] - 1  # crowd is not a target


def test_every_problem_is_reported_exactly_once_and_skipped(tmp_path) -> None:
    data_yaml, expected = write_problem_dataset(tmp_path)
    index = verify_split(YoloSource(NAMES, 3, file=str(data_yaml)).split("train"), cache_dir=tmp_path / "cache")
    found: dict[str, list[tuple[str, int]]] = {}
    for p in index.problems:
        found.setdefault(p.kind, []).append((Path(p.file).name, p.line))
    assert found == expected
    assert set(found) == set(verify.PROBLEM_KINDS) - {"size_mismatch", "unknown_category"}  # COCO-only kinds
    assert [Path(p).name for p in (x.decode() for x in index.paths)] == ["good0.jpg", "good1.jpg", "good2.jpg"]
    assert index.backgrounds == 1  # good2 has no label file: a background, not a problem
    boxes, classes, _ = index.annotations(0)
    assert classes.tolist() == [0, 1, 2]  # the fine line, the clipped line, the polygon
    assert boxes[1, 2] == pytest.approx(80.0)  # clipped to the image width
    np.testing.assert_allclose(boxes[2], [8.0, 6.4, 24.0, 25.6], atol=1e-4)  # polygon's bounding box
    # end to end: the loader runs over what is left
    batches = list(build_loader(val_dataset(index, 64), batch_size=2, shuffle=False, workers=0))
    assert sum(len(b) for b in batches) == 3
    report = index.write_report(tmp_path / "report.txt").read_text().splitlines()
    assert len(report) == 1 + len(index.problems) and "good0.txt:5: class_range" in "\n".join(report)


def test_coco_only_problems(tmp_path) -> None:
    import json

    _, json_path, images = write_twin_datasets(tmp_path)
    content = json.loads(json_path.read_text())
    content["annotations"].append({"id": 900, "image_id": 10, "category_id": 99, "bbox": [1, 1, 5, 5]})
    content["annotations"].append({"id": 901, "image_id": 10, "category_id": 3, "bbox": [1, "x", 5, 5]})
    content["annotations"].append({"id": 902, "image_id": 10, "category_id": 3, "bbox": [1, 1, 5]})
    content["images"][1]["width"] += 1  # the JSON disagrees with the file
    json_path.write_text(json.dumps(content))
    index = verify_split(
        CocoJsonSource(NAMES, 3, val_json=str(json_path), val_images=str(images)).split("val"), cache_dir=tmp_path / "c"
    )
    kinds = sorted((p.kind, p.line) for p in index.problems)
    assert kinds == [("columns", 902), ("non_numeric", 901), ("size_mismatch", 0), ("unknown_category", 900)]
    assert len(index) == len(SIZES) - 1


def test_doctor_result_is_cached_until_a_file_changes(tmp_path, monkeypatch) -> None:
    data_yaml, _, _ = write_twin_datasets(tmp_path)
    source = YoloSource(NAMES, 3, file=str(data_yaml))
    first = verify_split(source.split("val"), cache_dir=tmp_path / "cache")

    def fail(path):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(verify, "check_image", fail)
    again = verify_split(source.split("val"), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.boxes, again.boxes)
    monkeypatch.undo()
    label = tmp_path / "labels" / "val" / "im0.txt"
    label.write_text("0 0.5 0.5 0.5 0.5\n")
    changed = verify_split(source.split("val"), cache_dir=tmp_path / "cache")
    assert changed.annotations(0)[1].tolist() == [0]
    assert len(list((tmp_path / "cache" / "doctor").glob("*.npz"))) == 1  # the stale cache is gone


def test_the_doctor_reports_its_progress_image_by_image(tmp_path) -> None:
    data_yaml, _, _ = write_twin_datasets(tmp_path)
    source = YoloSource(NAMES, 3, file=str(data_yaml))
    calls: list[tuple[int, int]] = []
    index = verify_split(source.split("val"), cache_dir=tmp_path / "cache", progress=lambda *c: calls.append(c))
    assert calls == [(k, index.num_listed) for k in range(1, index.num_listed + 1)] and index.num_listed > 1
    calls.clear()
    verify_split(source.split("val"), cache_dir=tmp_path / "cache", progress=lambda *c: calls.append(c))
    assert calls == []  # a cached result decodes nothing


def test_yolo_yaml_variants(tmp_path) -> None:
    data_yaml, _, _ = write_twin_datasets(tmp_path)
    (tmp_path / "list.txt").write_text("images/val/im0.png\nimages/val/im3.png\n")
    other = tmp_path / "other.yaml"
    other.write_text(f"path: {tmp_path}\ntrain: [images/val, list.txt]\nval: list.txt\nnames: [a, b, c]\n")
    source = YoloSource(["a", "b", "c"], 3, file=str(other))
    assert len(source.split("train").images) == len(SIZES) + 2
    assert [p.name for p in source.split("val").images] == ["im0.png", "im3.png"]
    with pytest.raises(DataError, match="no 'test' split"):
        source.split("test")
    assert image_to_label_path(Path("/d/images/train/images/x.jpg")) == Path("/d/images/train/labels/x.txt")


@pytest.mark.parametrize(
    "content, message",
    [
        ("names: {0: a, 2: b}\ntrain: x\n", "without gaps"),
        ("train: x\n", "no 'names' key"),
        ("names: [a]\n", "needs a 'train' or 'val' split"),
        ("names: [a\n", "invalid YAML"),
    ],
)
def test_bad_data_yaml_is_one_clear_error(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        dataset_names("yolo", str(path))


def test_missing_dataset_says_how_to_get_it(tmp_path) -> None:
    source = YoloSource(["a"], 1, path=str(tmp_path / "nope"), train="images", download="unzip x.zip into data/")
    with pytest.raises(DataError, match=r"dataset not found at .*nope\. To get it: unzip x.zip into data/"):
        source.split("train")
