"""detector: a YOLO-style object-detector training pipeline."""

from detector.models import Detector, build_model, summary

__all__ = ["Detector", "build_model", "summary"]
__version__ = "0.1.0"
