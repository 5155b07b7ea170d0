"""Prediction for users: :func:`load` a checkpoint, an Ultralytics ``.pt`` or an exported ``.onnx``,
then :meth:`Model.predict` or :meth:`Model.stream` on images, folders, globs, arrays, videos,
streams and cameras, tiled for large images; :class:`Results` per image or frame."""

from detector.predict.model import Model, load
from detector.predict.results import Results
from detector.predict.sources import open_sources

__all__ = ["Model", "Results", "load", "open_sources"]
