"""HSV colour jitter as the YOLO recipe has it: a hue shift and saturation / value gains, in one pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np


class HSVJitter(A.ImageOnlyTransform):
    """Shift hue by a fraction of the colour circle drawn from ``hue`` (within ``[-0.4, 0.4]``) and multiply saturation and
    value by gains drawn from ``saturation`` and ``value`` (uniformly, each an inclusive ``[low,
    high]`` range; ``[1, 1]`` leaves a channel alone).

    An albumentations transform: it composes, seeds and serialises like any other. For uint8 RGB
    images it costs two colour conversions and one per-channel affine pass, where ``albumentations.ColorJitter``
    with the same three jitters makes three passes (brightness, saturation, hue) and four
    conversions. It takes uint8 RGB images only and refuses anything else with one line.
    """

    def __init__(
        self,
        hue: Sequence[float] = (-0.015, 0.015),
        saturation: Sequence[float] = (0.3, 1.7),
        value: Sequence[float] = (0.6, 1.4),
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.hue = _range("hue", hue, -0.4, 0.4)  # |shift| <= 72 of OpenCV's 180 hue units: see apply
        self.saturation = _range("saturation", saturation, 0.0, None)
        self.value = _range("value", value, 0.0, None)

    def get_params(self) -> dict[str, float]:
        return {
            "hue_shift": self.py_random.uniform(*self.hue),
            "saturation_gain": self.py_random.uniform(*self.saturation),
            "value_gain": self.py_random.uniform(*self.value),
        }

    def apply(
        self, img: np.ndarray, hue_shift: float, saturation_gain: float, value_gain: float, **params: Any
    ) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"HSVJitter takes uint8 RGB images, got {img.dtype} of shape {img.shape}")
        shift = hue_shift * 180.0  # OpenCV's uint8 hue: 180 units per circle
        # Its HSV -> RGB conversion takes hue modulo 180, so a positive shift needs no wrapping as long as
        # 179 + shift fits a byte (hence |hue| <= 0.4 of a circle). A negative one is made positive by reading the image as BGR: swapping red
        # and blue mirrors the hue circle (h -> 120 - h), so +|shift| there is -|shift| here.
        forward, back = (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if shift >= 0 else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
        hsv = cv2.cvtColor(img, forward)
        gains = np.array([[1, 0, 0, abs(shift)], [0, saturation_gain, 0, 0], [0, 0, value_gain, 0]], dtype=np.float32)
        cv2.transform(hsv, gains, dst=hsv)  # per channel, rounded and clipped to 0..255
        return cv2.cvtColor(hsv, back)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("hue", "saturation", "value")


def _range(name: str, bounds: Sequence[float], low: float, high: float | None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"HSVJitter {name} must be a [low, high] pair, got {bounds!r}") from None
    if a > b or a < low or (high is not None and b > high):
        limit = f"within [{low}, {high}]" if high is not None else f"at least {low}"
        raise ValueError(f"HSVJitter {name} must be a [low, high] range {limit}, got {[a, b]}")
    return a, b
