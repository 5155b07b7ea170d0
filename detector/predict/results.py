"""The detections of one image or video frame, with the image they were found in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.images import draw_boxes
from detector.predict.sources import Channels, Frame
from detector.types import Detections


@dataclass
class Results:
    """One image's detections, best first, in its original pixels.

    ``image`` is the image as predicted, ``[H, W, 3]`` uint8 RGB; ``names`` the model's class names
    (by class id); ``source`` the file path, URL, ``camera N`` or ``array N`` it came from, and
    ``frame`` its frame number in a video or stream (None for an image)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] float32 xyxy, original-image pixels
    scores: np.ndarray  # [N] float32
    class_ids: np.ndarray  # [N] int64
    names: list[str]
    source: str
    frame: int | None = None
    fps: float | None = None  # the video's frame rate

    @classmethod
    def of(cls, frame: Frame, det: Detections, names: list[str]) -> Results:
        return cls(
            frame.image,
            det.boxes.float().numpy().reshape(-1, 4),
            det.scores.float().numpy(),
            det.classes.long().numpy(),
            names,
            frame.source,
            frame.frame,
            frame.fps,
        )

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def classes(self) -> list[str]:
        """The class name of each detection."""
        return [self._name(c) for c in self.class_ids.tolist()]

    def _name(self, c: int) -> str:
        return self.names[c] if 0 <= c < len(self.names) else str(c)

    def to_dict(self) -> dict[str, Any]:
        """What ``scripts/predict.py`` writes per image: ``image`` (the source), ``width``, ``height``,
        ``frame`` (videos only) and ``detections``, each ``box`` (xyxy pixels, 2 decimals), ``score``
        (4 decimals), ``class_id``, ``class``."""
        out: dict[str, Any] = {"image": self.source, "width": self.width, "height": self.height}
        if self.frame is not None:
            out["frame"] = self.frame
        out["detections"] = [
            {"box": [round(v, 2) for v in b], "score": round(float(s), 4), "class_id": int(c), "class": self._name(c)}
            for b, s, c in zip(self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist())
        ]
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self, channels: Channels = "rgb") -> np.ndarray:
        """A copy of the image with the detections drawn (boxes, class names, scores), ``[H, W, 3]``
        uint8 in ``channels`` order (``bgr`` for ``cv2.imshow`` / ``cv2.imwrite``)."""
        drawn = draw_boxes(self.image, self.boxes, self.class_ids, self.names, self.scores)
        return np.ascontiguousarray(drawn[..., ::-1]) if channels == "bgr" else drawn
