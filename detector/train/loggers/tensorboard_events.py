"""``logger=tensorboard``: TensorBoard event files in the run directory (``tensorboard --logdir runs/train``
shows each run under its directory's name)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from detector.images import decode_image
from detector.train.loggers.requires import require


class TensorBoardLogger:
    """Scalars per epoch (``step`` = epoch), the config as text and the run's plots as images, written
    by ``torch.utils.tensorboard.SummaryWriter`` into ``run_dir`` itself.

    A resumed run writes a new event file into the same directory. Its writer is opened at the first
    epoch it logs, with ``purge_step`` = that epoch, so TensorBoard hides what the interrupted run had
    logged from that epoch on: each epoch shows once, with the resumed run's values.
    """

    run_id: str | None = None  # the log directory is the run: a resumed run writes into the same one

    def __init__(self, run_dir: Path, run_id: str | None = None, name: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self._writer_class = require("torch.utils.tensorboard", "logger=tensorboard", "tensorboard").SummaryWriter
        self._writer: Any = None
        self._config: str | None = None
        self._last_epoch = 0

    def log_config(self, config: dict) -> None:
        """The resolved config as YAML text, written with the first epoch (tag ``config``)."""
        self._config = yaml.safe_dump(config, sort_keys=False)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """One scalar per metric (the CSV's column names as tags) at ``step=epoch``."""
        writer = self._open(purge_step=epoch)
        for key, value in metrics.items():
            if value is not None and key != "epoch":
                writer.add_scalar(key, float(value), global_step=epoch)
        writer.flush()
        self._last_epoch = epoch

    def log_files(self, paths: list[Path]) -> None:
        """PNGs become images under their stem (``pr_curves``, ``confusion_matrix``, ...) at the last
        epoch; other files stay in the run directory (TensorBoard stores no files); a missing or
        unreadable PNG is skipped with a warning."""
        writer = self._open(purge_step=None)
        for path in map(Path, paths):
            if path.suffix.lower() != ".png":
                continue
            image = decode_image(path) if path.is_file() else None  # [H, W, 3] uint8 RGB
            if image is None:
                warnings.warn(f"tensorboard: not logging {path}: no such file or not an image", stacklevel=2)
                continue
            writer.add_image(path.stem, image, global_step=self._last_epoch, dataformats="HWC")
        writer.flush()

    def finish(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self, purge_step: int | None) -> Any:
        """The writer, opened on first use (see the class notes for ``purge_step``)."""
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.run_dir), purge_step=purge_step)
            if self._config is not None:
                block = "".join(f"    {line}\n" for line in self._config.splitlines())  # markdown code block
                self._writer.add_text("config", block, global_step=purge_step or 0)
        return self._writer
