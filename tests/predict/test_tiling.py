"""Tiled prediction: the windows' geometry, the merging of duplicates across windows, and a large
image whose small objects only the tiled prediction finds (a deterministic detector of red squares
that needs them at least MIN_SIDE input pixels wide, run through the whole API)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detector.errors import ConfigError
from detector.predict import Model, load
from detector.predict.tiling import merge_windows, tile_windows
from detector.types import Detections

MIN_SIDE = 8  # input pixels: smaller red squares are not seen
ANCHORS = 64


class RedSquares:
    """A model runtime (``images [B, 3, S, S] -> boxes [B, A, 4], scores [B, A, 1]``) that finds the red
    blobs of an image, each at least :data:`MIN_SIDE` input pixels wide and high, with score 0.9."""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = torch.zeros(len(images), ANCHORS, 4)
        scores = torch.zeros(len(images), ANCHORS, 1)
        for b, image in enumerate(images):
            r, g, bl = image
            mask = ((r > 0.7) & (g < 0.3) & (bl < 0.3)).numpy().astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            found = [s for s in stats[1:] if s[2] >= MIN_SIDE and s[3] >= MIN_SIDE][:ANCHORS]
            for k, (x, y, w, h, _) in enumerate(found):
                boxes[b, k] = torch.tensor([x, y, x + w, y + h], dtype=torch.float32)
                scores[b, k, 0] = 0.9
        return boxes, scores


def large_image(squares: list[tuple[int, int]], side: int = 20, size: int = 2048) -> np.ndarray:
    """A grey noisy ``size x size`` image with red ``side``-pixel squares at the (x, y) corners given."""
    rng = np.random.default_rng(0)
    image = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
    for x, y in squares:
        image[y : y + side, x : x + side] = (255, 0, 0)
    return image


# tile 640 with overlap 0.2 starts windows at 0, 512, 1024, 1408 in a 2048 image: these squares lie
# inside one window, across the edge at 640 of the first (seen cut there, whole in the second), and
# on the corner where four windows meet
SQUARES = [(100, 100), (300, 1800), (1700, 900), (630, 200), (200, 1140), (630, 630), (1400, 1400)]


def test_only_the_tiled_prediction_finds_small_objects_each_once() -> None:
    model = Model(RedSquares(), ["red"], "cpu", imgsz=640)
    image = large_image(SQUARES)
    assert len(model.predict(image)[0]) == 0  # 20 px become 6 input px at imgsz 640: too small
    for full in (False, True):
        result = model.predict(image, tile=640, tile_overlap=0.2, tile_full=full, batch=3)[0]
        expected = sorted([x, y, x + 20, y + 20] for x, y in SQUARES)
        assert sorted(result.boxes.round().astype(int).tolist()) == expected  # no duplicate, no cut box
        assert result.classes == ["red"] * len(SQUARES)


def test_without_merging_the_border_objects_are_duplicated() -> None:
    """What the merge removes: the squares cut by a window's edge are seen once per window."""
    model = Model(RedSquares(), ["red"], "cpu", imgsz=640)
    windows = tile_windows(2048, 2048, 640, 0.2)
    image = large_image(SQUARES)
    seen = sum(len(d) for d in model.predictor.predict([image[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]))
    assert seen == len(SQUARES) + 1 + 1 + 3 + 3  # (630, 200), (200, 1140) twice; (630, 630), (1400, 1400) four times


def test_windows_cover_the_image_with_the_overlap() -> None:
    windows = tile_windows(1000, 1500, 640, 0.25)
    xs = sorted({w[0] for w in windows})
    ys = sorted({w[1] for w in windows})
    assert xs == [0, 480, 860] and ys == [0, 360]  # step 480; the last flush with the edge
    assert all(x1 - x0 == 640 and y1 - y0 == 640 for x0, y0, x1, y1 in windows)
    covered = np.zeros((1000, 1500), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert all(b - a <= 640 - 160 for a, b in zip(xs, xs[1:]))  # neighbours overlap by >= 0.25 * 640
    assert tile_windows(300, 500, 640, 0.2) == [(0, 0, 500, 300)]  # smaller than a tile: the image itself
    assert tile_windows(700, 300, 640, 0.0) == [(0, 0, 300, 640), (0, 60, 300, 700)]
    with pytest.raises(ConfigError, match="tile=16"):
        tile_windows(100, 100, 16, 0.2)
    with pytest.raises(ConfigError, match="tile_overlap=1.0"):
        tile_windows(100, 100, 64, 1.0)


def test_merging_keeps_the_best_score_grows_to_the_whole_and_respects_windows_and_classes() -> None:
    boxes = torch.tensor(
        [
            [630.0, 100, 640, 120],  # the cut part of an object, window 0
            [630.0, 100, 650, 120],  # the whole object, window 1
            [636.0, 100, 656, 120],  # another object in window 0, overlapping the first
            [630.0, 100, 650, 120],  # the whole object again, another class, window 1
        ]
    )
    det = Detections(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 0, 1]))
    window = torch.tensor([0, 1, 0, 1])
    merged = merge_windows(det, window)
    assert merged.boxes.tolist() == [[630, 100, 650, 120], [636, 100, 656, 120], [630, 100, 650, 120]]
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7, 0.6]) and merged.classes.tolist() == [0, 0, 1]
    # one window: nothing merged (its NMS decided); agnostic: the other class merged too
    assert len(merge_windows(det, torch.zeros(4, dtype=torch.long))) == 4
    agnostic = merge_windows(det, window, agnostic=True)
    assert agnostic.classes.tolist() == [0, 0] and agnostic.boxes[0].tolist() == [630, 100, 650, 120]


def test_a_tile_as_large_as_the_image_is_the_untiled_prediction(yolov8_weights) -> None:
    model = load(yolov8_weights, "cpu")
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    whole = model.predict(image, conf=0.55, imgsz=96)[0]
    tiled = model.predict(image, conf=0.55, imgsz=96, tile=128, tile_full=True)[0]
    assert len(whole) > 0
    np.testing.assert_array_equal(tiled.boxes, whole.boxes)
    np.testing.assert_array_equal(tiled.scores, whole.scores)
    more = model.predict(image, conf=0.55, imgsz=96, tile=64, tile_overlap=0.5, max_det=7)[0]
    assert len(more) == 7 and np.all(np.diff(more.scores) <= 0)  # merged, best first, max_det kept


def test_predict_script_tiles(yolov8_weights, tmp_path, monkeypatch) -> None:
    import json

    from tests.helpers import run_task

    monkeypatch.chdir(tmp_path)
    image = np.random.default_rng(2).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), image)
    settings = ["imgsz=64", "conf=0.55", "tile=64", "tile_overlap=0.25", "tile_full=true", "device=cpu"]
    run_dir = run_task(
        "scripts/predict.py", f"checkpoint={yolov8_weights}", f"source={tmp_path / 'big.png'}", *settings
    )
    expected = load(yolov8_weights, "cpu").predict(
        tmp_path / "big.png", conf=0.55, imgsz=64, tile=64, tile_overlap=0.25, tile_full=True
    )[0]
    assert json.loads((run_dir / "big.json").read_text()) == expected.to_dict()
    assert len(expected) > 0
    with pytest.raises(ConfigError, match="^tile=16: at least 32 pixels"):
        run_task("scripts/predict.py", f"checkpoint={yolov8_weights}", f"source={tmp_path}", "tile=16", "name=bad")
    assert not (run_dir.parent / "bad").exists()  # refused before a run directory is made
