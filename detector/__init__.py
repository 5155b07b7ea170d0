"""detector: a YOLO-style object-detector training pipeline.

``from detector import build_model, summary, Detector`` is the public entry to the models, and
``detector.load("best.pt").predict(source)`` to prediction (:mod:`detector.predict`). They are
imported on first use, so that importing a light module (``detector.errors``, ``detector.boxes``)
does not load torch, Hydra and the model zoo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.models import Detector, build_model, summary
    from detector.predict import Model, Results, load

__all__ = ["Detector", "Model", "Results", "build_model", "load", "summary"]
__version__ = "0.1.0"

_MODELS = {"Detector", "build_model", "summary"}


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        import detector.models

        return getattr(detector.models, name)
    if name in __all__:
        import detector.predict

        return getattr(detector.predict, name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
