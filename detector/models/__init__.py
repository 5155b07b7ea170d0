"""Blocks, backbones, necks, heads and the detector that wires them."""

from detector.models.detector import Detector, build_detector
from detector.models.summary import count_flops, summary
from detector.models.zoo import build_model

__all__ = ["Detector", "build_detector", "build_model", "count_flops", "summary"]
