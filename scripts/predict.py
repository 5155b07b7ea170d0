"""Predict: ``python scripts/predict.py checkpoint=PATH source=IMAGE|VIDEO|DIR|GLOB|URL|0 [conf=0.25]``.

Writes, per image, ``<name>.png`` with the detections drawn and ``<name>.json`` (boxes in
original-image pixels, scores, class names), per video, stream or camera ``<name>.mp4`` and
``<name>.jsonl`` (a line per frame), into ``runs/predict/<name>/``. The checkpoint may be a
detector ``.pt``, an Ultralytics ``.pt`` or an exported ``.onnx``; ``tile=640`` tiles large images.
Unreadable files are reported and skipped. The work is :mod:`detector.predict`'s."""

from detector.cli import hydra_entry
from detector.tasks.predict import run

if __name__ == "__main__":
    hydra_entry("predict", run)
