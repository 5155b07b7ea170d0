"""What prediction reads: image files, folders, globs, arrays (and PIL images), video files, streams
(URLs) and cameras, each as a :class:`Source` of RGB frames.

A source is opened lazily, one at a time, so that a folder of videos or a long stream holds one
decoded frame at a time here. Video goes through OpenCV (``cv2.VideoCapture``, FFmpeg inside), so
any container and codec OpenCV reads works."""

from __future__ import annotations

import glob
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from detector.datafiles import IMAGE_SUFFIXES
from detector.errors import ConfigError, DataError
from detector.images import decode_image

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".asf", ".3gp"}
)
Channels = Literal["rgb", "bgr"]


@dataclass
class Frame:
    """One image to predict, as the model sees it before the letterbox."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    source: str  # a file path, a URL, "camera 0", "array 2"
    frame: int | None = None  # frame number in a video or stream (0-based, counting the frames vid_stride skips)
    fps: float | None = None  # a video's frame rate


class Unreadable(DataError):
    """A file that is not an image or video OpenCV can read: reported and skipped."""


class Source(Protocol):
    name: str
    video: bool  # frames of one video, camera or stream (written as one annotated video)

    def count(self) -> int | None:
        """How many frames :meth:`frames` gives; None when unknown (a camera, a stream)."""

    def frames(self) -> Iterator[Frame]:
        """The frames; :class:`Unreadable` when the file cannot be decoded."""


@dataclass
class ImageFile:
    path: Path
    video: bool = False

    @property
    def name(self) -> str:
        return str(self.path)

    def count(self) -> int:
        return 1

    def frames(self) -> Iterator[Frame]:
        image = decode_image(self.path)
        if image is None:
            raise Unreadable(f"{self.path}: not an image OpenCV can read")
        yield Frame(image, self.name)


@dataclass
class ArrayImage:
    """An image given as an array: ``[H, W, 3]`` (or ``[H, W, 4]`` with alpha, dropped) uint8 in
    ``channels`` order, or ``[H, W]`` / ``[H, W, 1]`` grey."""

    array: np.ndarray
    name: str
    channels: Channels = "rgb"
    video: bool = False

    def __post_init__(self) -> None:
        a = self.array
        shape_ok = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
        if a.dtype != np.uint8 or not shape_ok or min(a.shape[:2]) < 1:
            raise ConfigError(
                f"source {self.name}: expected a uint8 image [H, W, 3] ({self.channels.upper()}), [H, W, 4] or "
                f"[H, W] grey, got {a.dtype} of shape {tuple(a.shape)}"
            )

    def count(self) -> int:
        return 1

    def frames(self) -> Iterator[Frame]:
        a = self.array
        if a.ndim == 2 or a.shape[2] == 1:
            image = cv2.cvtColor(a.reshape(a.shape[:2]), cv2.COLOR_GRAY2RGB)
        elif self.channels == "bgr":
            image = np.ascontiguousarray(a[..., 2::-1])
        else:
            image = np.ascontiguousarray(a[..., :3])
        yield Frame(image, self.name)


@dataclass
class Video:
    """A video file, a stream URL or a camera (an int: OpenCV's camera index), every ``stride``-th
    frame of it."""

    target: str | int
    stride: int = 1
    video: bool = True

    @property
    def name(self) -> str:
        return f"camera {self.target}" if isinstance(self.target, int) else str(self.target)

    def count(self) -> int | None:
        if isinstance(self.target, int) or "://" in self.target:
            return None
        capture = cv2.VideoCapture(self.target)
        try:
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()
        return math.ceil(max(frames, 0) / self.stride)

    def check_camera(self) -> None:
        """A :class:`ConfigError` when this is a camera that cannot be opened (none on this machine)."""
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target)
            opened = capture.isOpened()
            capture.release()
            if not opened:
                raise self._no_camera()

    def _no_camera(self) -> ConfigError:
        return ConfigError(f"source={self.target}: no camera {self.target} could be opened on this machine")

    def frames(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(self.target)
        try:
            if not capture.isOpened():
                if isinstance(self.target, int):
                    raise self._no_camera()
                raise Unreadable(f"{self.target}: not a video or stream OpenCV can read")
            fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
            index = 0
            while capture.grab():  # grab every frame, decode to an image only those kept
                if index % self.stride == 0:
                    ok, bgr = capture.retrieve()
                    if not ok:
                        break
                    yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.name, index, fps)
                index += 1
        finally:
            capture.release()


@dataclass
class Sources:
    """The sources of one prediction, in order (:func:`open_sources`)."""

    items: list[Source]

    def __iter__(self) -> Iterator[Source]:
        return iter(self.items)

    def total(self) -> int | None:
        """Frames all sources give together (an image is one); None when one of them cannot say."""
        counts = [s.count() for s in self.items]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    @property
    def video(self) -> bool:
        """Whether any source is a video, camera or stream."""
        return any(s.video for s in self.items)


def open_sources(source: Any, channels: Channels = "rgb", vid_stride: int = 1) -> Sources:
    """The sources ``source`` names: a path (image, video, folder: every image and video in it,
    recursively, sorted), a glob, a URL (``rtsp://``, ``http://``: a stream), a camera index (an int,
    or a string of digits that is not a file), a numpy array or PIL image, or a list of these.
    Arrays are read in ``channels`` order. A :class:`ConfigError` when nothing matches or a camera
    cannot be opened (cameras are tried here, before any work)."""
    if isinstance(source, Sources):
        return source
    if channels not in ("rgb", "bgr"):
        raise ConfigError(f"channels={channels!r}: 'rgb' or 'bgr'")
    if int(vid_stride) < 1:
        raise ConfigError(f"vid_stride={vid_stride}: at least 1 (every frame)")
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ConfigError("source: an empty list")
    found: list[Source] = []
    arrays = 0
    for item in items:
        if _is_pil(item):
            found.append(ArrayImage(np.asarray(item.convert("RGB")), f"array {arrays}", "rgb"))
            arrays += 1
        elif isinstance(item, np.ndarray):
            found.append(ArrayImage(item, f"array {arrays}", channels))
            arrays += 1
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            found.append(Video(int(item), int(vid_stride)))
        elif isinstance(item, (str, Path)):
            found.extend(_from_path(str(item), int(vid_stride)))
        else:
            raise ConfigError(f"source: {type(item).__name__} is not a path, glob, URL, camera index, array or image")
    for item in found:
        if isinstance(item, Video):
            item.check_camera()
    return Sources(found)


def _from_path(text: str, stride: int) -> list[Source]:
    if "://" in text:
        return [Video(text, stride)]
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        files = [p for p in files if p.is_file()]
    elif path.is_file():
        files = [path]
    elif text.isdigit():
        return [Video(int(text), stride)]
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        raise ConfigError(f"source={text}: no image or video file, folder or glob match")
    return [Video(str(p), stride) if p.suffix.lower() in VIDEO_SUFFIXES else ImageFile(p) for p in files]


def _is_pil(item: Any) -> bool:
    return type(item).__module__.startswith("PIL.") and hasattr(item, "convert")
