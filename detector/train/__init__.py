"""Training: ``detector.train.run(cfg)`` is what ``python train.py`` calls."""

from detector.train.entry import run

__all__ = ["run"]
