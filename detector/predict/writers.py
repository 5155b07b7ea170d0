"""A prediction run's files: per image ``<stem>.json`` and ``<stem>.png`` (the detections drawn);
per video, camera or stream ``<stem>.jsonl`` (one JSON line per predicted frame) and ``<stem>.mp4``
(the annotated frames, at the source's frame rate divided by ``vid_stride``).

Every file appears whole: images are written atomically, and a video's two files are written under
hidden temporary names and renamed into place when the video ends (or the run stops early: a
Ctrl-C on a camera keeps what was predicted so far)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

import cv2

from detector.images import save_png
from detector.predict.results import Results
from detector.runs import write_text_atomic

FALLBACK_FPS = 30.0  # where a camera or stream does not say its frame rate


class PredictionWriter:
    """``with PredictionWriter(run_dir, save_images) as writer: writer.write(result)``."""

    def __init__(self, run_dir: Path, save_images: bool = True, vid_stride: int = 1) -> None:
        self.run_dir = Path(run_dir)
        self.save_images = save_images
        self.vid_stride = vid_stride
        self.images = self.frames = 0
        self._stems: set[str] = set()
        self._video: VideoOutput | None = None

    def write(self, result: Results) -> None:
        if result.frame is None:
            self._end_video()
            stem = self._stem(result.source)
            write_text_atomic(self.run_dir / f"{stem}.json", result.to_json(indent=2))
            if self.save_images:
                save_png(self.run_dir / f"{stem}.png", result.plot())
            self.images += 1
            return
        if self._video is None or self._video.source != result.source:
            self._end_video()
            self._video = VideoOutput(
                self.run_dir, self._stem(result.source), result, self.save_images, self.vid_stride
            )
        self._video.write(result)
        self.frames += 1

    def _stem(self, source: str) -> str:
        """The file stem of ``source`` (a path's stem; a camera or URL made file-safe), unique in the run."""
        base = re.sub(r"[^\w.-]+", "_", Path(source).stem).strip("_") or "stream"
        stem, n = base, 1
        while stem in self._stems:
            n += 1
            stem = f"{base}_{n}"
        self._stems.add(stem)
        return stem

    def _end_video(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None

    def close(self) -> None:
        self._end_video()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class VideoOutput:
    """One video's ``<stem>.jsonl`` and (with ``save_images``) annotated ``<stem>.mp4`` (MPEG-4 Part 2,
    OpenCV's ``mp4v``), written under temporary names until :meth:`close`."""

    def __init__(self, run_dir: Path, stem: str, first: Results, save_images: bool, vid_stride: int = 1) -> None:
        self.source = first.source
        self.lines = run_dir / f"{stem}.jsonl"
        self.video = run_dir / f"{stem}.mp4" if save_images else None
        self.size = (first.width, first.height)
        self._lines_tmp = _temporary(self.lines)
        self._video_tmp = _temporary(self.video) if self.video is not None else None
        self._writer: cv2.VideoWriter | None = None
        if self._video_tmp is not None:
            fps = (first.fps or FALLBACK_FPS) / vid_stride
            self._writer = cv2.VideoWriter(str(self._video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, self.size)
            if not self._writer.isOpened():
                for tmp in (self._lines_tmp, self._video_tmp):
                    tmp.unlink(missing_ok=True)
                raise OSError(f"OpenCV cannot write {self.video} (mp4v)")
        self._file: IO[str] = open(self._lines_tmp, "w", encoding="utf-8")  # closed in close()

    def write(self, result: Results) -> None:
        self._file.write(result.to_json() + "\n")
        if self._writer is not None:
            drawn = result.plot("bgr")
            if (result.width, result.height) != self.size:  # a stream that changed its frame size mid-way
                drawn = cv2.resize(drawn, self.size, interpolation=cv2.INTER_AREA)
            self._writer.write(drawn)

    def close(self) -> None:
        self._file.close()
        _publish(self._lines_tmp, self.lines)
        if self._writer is not None and self._video_tmp is not None and self.video is not None:
            self._writer.release()
            _publish(self._video_tmp, self.video)
            self._writer = None


def _temporary(path: Path) -> Path:
    """A new hidden file beside ``path`` with its suffix (OpenCV picks the container by suffix)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    return Path(name)


def _publish(tmp: Path, path: Path) -> None:
    """``tmp`` renamed to ``path`` with the permissions a new file gets (mkstemp made it private)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)
