"""Look at augmented data: ``python scripts/show_batch.py data=NAME augment=NAME [imgsz=640 batch=16]``.

Writes ``runs/show_batch/<name>/<split>_batch.png``: the first batch of the split through the
training pipeline, with boxes and class names."""

from detector.cli import hydra_entry
from detector.tasks.show_batch import run

if __name__ == "__main__":
    hydra_entry("show_batch", run)
