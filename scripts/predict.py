"""Predict: ``python scripts/predict.py checkpoint=PATH source=IMAGE|DIR|GLOB [conf=0.25]``.

Writes, per image, ``<name>.png`` with the detections drawn and ``<name>.json`` (boxes in
original-image pixels, scores, class names) into ``runs/predict/<name>/``. The checkpoint may be
a detector ``.pt`` or an exported ``.onnx``. Unreadable files are reported and skipped."""

from detector.cli import hydra_entry
from detector.tasks.predict import run

if __name__ == "__main__":
    hydra_entry("predict", run)
