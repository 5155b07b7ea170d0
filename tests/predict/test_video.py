"""scripts/predict.py on a video: an annotated video and a JSON line per predicted frame, the same
detections as predicting the frames (as decoded back from the file) as images; lazily read sources,
cameras that are not there, unreadable videos."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.errors import ConfigError
from detector.predict import load
from detector.predict.sources import Frame, Sources, Video, open_sources
from tests.helpers import run_task

FRAMES = 11


def write_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (128, 96)) -> Path:
    """A short MPEG-4 clip of a square moving over noise."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for k in range(frames):
        frame = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        cv2.rectangle(frame, (5 + 8 * k, 20), (35 + 8 * k, 60), (40, 40, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame as OpenCV decodes it back from the file, RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_video_gives_an_annotated_video_and_a_line_per_frame(yolov8_weights, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    clip = write_video(tmp_path / "clip.mp4")
    run_dir = run_task(
        "scripts/predict.py",
        f"checkpoint={yolov8_weights}",
        f"source={clip}",
        "imgsz=96",
        "conf=0.55",
        "vid_stride=2",
        "batch=4",
        "device=cpu",
    )
    assert sorted(p.name for p in run_dir.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temporary file left
    lines = [json.loads(line) for line in (run_dir / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 2, 4, 6, 8, 10]
    frames = decoded_frames(clip)
    assert len(frames) == FRAMES  # the codec is lossy: compare against these, not what was written
    kept = frames[::2]
    expected = load(yolov8_weights, "cpu").predict(kept, conf=0.55, imgsz=96, batch=4)
    assert sum(len(r) for r in expected) > 0
    for line, result in zip(lines, expected):
        assert line["image"] == str(clip) and (line["width"], line["height"]) == (128, 96)
        assert line["detections"] == result.to_dict()["detections"]
    annotated = decoded_frames(run_dir / "clip.mp4")
    assert len(annotated) == len(kept) and annotated[0].shape == (96, 128, 3)
    capture = cv2.VideoCapture(str(run_dir / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)  # 10 fps, every second frame
    capture.release()
    drawn = expected[0].plot()
    assert np.abs(annotated[0].astype(int) - drawn).mean() < np.abs(annotated[0].astype(int) - kept[0]).mean()
    out = capsys.readouterr().out
    assert "predict: 6/6 frames (100%)" in out  # the plain progress line where stdout is not a terminal
    assert "0 images, 6 video frames predicted, 0 skipped" in out


def test_frames_are_read_as_the_results_are_taken(yolov8_weights) -> None:
    """A long video or a stream holds one batch of frames, not all of them."""
    pulled: list[int] = []

    class Endless:
        name, video = "endless", True

        def count(self) -> None:
            return None

        def frames(self) -> Iterator[Frame]:
            for k in range(200):  # as good as endless here: a reader that takes them all fails below
                pulled.append(k)
                yield Frame(np.full((64, 64, 3), k, np.uint8), self.name, k, 30.0)

    results = load(yolov8_weights, "cpu").stream(Sources([Endless()]), conf=0.55, imgsz=64, batch=4)
    first = [next(results) for _ in range(5)]
    assert [r.frame for r in first] == [0, 1, 2, 3, 4]
    assert len(pulled) == 8  # two batches of four
    assert Sources([Endless()]).total() is None


def test_a_missing_camera_is_one_clear_error(yolov8_weights, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    index = 63  # a camera index no machine running the tests has
    with pytest.raises(ConfigError, match=f"^source={index}: no camera {index} could be opened on this machine$"):
        run_task("scripts/predict.py", f"checkpoint={yolov8_weights}", f"source={index}", "device=cpu")
    assert not list((tmp_path / "runs").glob("predict/*"))  # tried before any run directory is made
    with pytest.raises(ConfigError, match=f"no camera {index}"):
        open_sources([index])
    camera = Video(index)
    assert camera.name == f"camera {index}" and camera.count() is None


def test_unreadable_videos_are_skipped(yolov8_weights, tmp_path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    write_video(tmp_path / "ok.avi", frames=3)
    skipped: list[str] = []
    results = load(yolov8_weights, "cpu").predict(tmp_path, conf=0.55, imgsz=64, on_skip=skipped.append)
    assert skipped == [f"{tmp_path / 'broken.mp4'}: not a video or stream OpenCV can read"]
    assert [(Path(r.source).name, r.frame) for r in results] == [("ok.avi", 0), ("ok.avi", 1), ("ok.avi", 2)]
