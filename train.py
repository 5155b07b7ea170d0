"""Train a detector: ``python train.py [hydra overrides]``, e.g.
``python train.py model=yolo11s train.epochs=50 optim.lr=0.002``. ``--cfg job`` prints the composed config."""

from detector.cli import hydra_entry
from detector.tasks.train import objective

if __name__ == "__main__":
    hydra_entry("train", objective)
