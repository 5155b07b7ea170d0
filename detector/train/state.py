"""The loop's plain data: its settings (read once from the config by the training task) and the
progress a restart must restore (saved in every checkpoint)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoopSettings:
    """What the loop and its per-epoch collaborators read; the names are those of ``train.*``."""

    epochs: int
    batch: int  # images per optimizer step over all processes
    nbs: int  # nominal batch: gradients accumulate until about nbs images
    clip: float  # gradient-norm clipping (0: off)
    max_nonfinite: int  # non-finite losses in a row that stop the run
    fitness: str  # the validation metric that picks best.pt and drives patience
    patience: int  # epochs without improvement that stop the run
    workers: int  # loader processes (validation)
    save_period: int  # also keep weights/epochN.pt every N epochs (0: never)


@dataclass
class LoopState:
    """Progress that a restart must restore."""

    epoch: int = 0  # the epoch in progress (or the next one)
    iteration: int = 0  # batches of ``epoch`` already done
    samples: int = 0  # samples of ``epoch`` this process has drawn (where a resumed epoch starts)
    global_step: int = 0  # batches done since the start (drives the warmup)
    best_fitness: float = -math.inf
    best_epoch: int = -1
    stale_epochs: int = 0  # epochs since fitness last improved
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    sums: dict[str, float] = field(default_factory=dict)  # running loss sums of the epoch in progress
    images: int = 0  # images of the epoch in progress
    seconds: float = 0.0  # training time of the epoch in progress

    def record_fitness(self, fitness: float) -> bool:
        """Note the finished epoch's fitness; whether it is the best so far (else one more stale epoch)."""
        if fitness > self.best_fitness:
            self.best_fitness, self.best_epoch, self.stale_epochs = fitness, self.epoch, 0
            return True
        self.stale_epochs += 1
        return False

    def next_epoch(self) -> None:
        """Move to the start of the next epoch: its position and running sums start from zero."""
        self.epoch, self.iteration, self.samples, self.sums, self.images, self.seconds = (
            self.epoch + 1,
            0,
            0,
            {},
            0,
            0.0,
        )
