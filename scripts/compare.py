"""Compare detectors: ``python scripts/compare.py models=[PATH_OR_NAME,...] [data=NAME split=val]``.

Our checkpoints, Ultralytics checkpoints (read without unpickling code) and untrained baselines
(``yolov8n.yaml``, or one of our model configs) are scored by our evaluator with the same
letterbox, conf, IoU and max_det; Ultralytics models also by Ultralytics' own validator. Reports
mAP50-95, mAP50, params, GFLOPs and latency (batch 1, fused, median after warm-up) in
``runs/compare/<name>/``: ``compare.md``, ``compare.csv``, ``map_vs_latency.png``.

``python scripts/compare.py mode=train recipe.model=yolov8n recipe.epochs=10`` first trains ours and
Ultralytics' with one recipe, then compares them, adding training images/s and wall time.
"""

import os

from detector.cli import hydra_entry
from detector.tasks.compare import run

if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics is imported later, inside the run: never online
    hydra_entry("compare", run)
