"""Training diagnostics: ``python scripts/diagnose.py [recipe.epochs=4 data.num_train=256 ...]``.

Our trainer and Ultralytics' on one recipe and seed, measured by one probe: what the augmentation
hands the model, what the optimizer applies each step, what the assigner picks, the losses, the
validation and the best epoch. Writes ``runs/diagnose/<name>/diagnose.md`` (and ``.json``, plots).
"""

import os

from detector.cli import hydra_entry
from detector.tasks.diagnose import run

if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics is imported later, inside the run: never online
    hydra_entry("diagnose", run)
