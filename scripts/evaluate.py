"""Evaluate a checkpoint: ``python scripts/evaluate.py checkpoint=PATH data=NAME [split=val]``.

Prints a per-class table and writes ``metrics.json``, ``predictions.json`` (COCO results,
original-image pixels), ``ground_truth.json`` (COCO instances) and plots (precision-recall
curves, confusion matrix, a grid of predictions) into ``runs/evaluate/<name>/``."""

from detector.cli import hydra_entry
from detector.tasks.evaluate import run

if __name__ == "__main__":
    hydra_entry("evaluate", run)
