"""``logger=wandb``: a Weights & Biases run (online, offline or disabled)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from detector.train.loggers.requires import require

WANDB_MODES = ("online", "offline", "disabled")


class WandbLogger:
    """A Weights & Biases run whose local files live in ``run_dir/wandb``.

    ``mode`` is ``online``, ``offline`` (everything stays in ``run_dir/wandb/offline-run-*``; upload
    it later with ``wandb sync``) or ``disabled`` (a no-op run; nothing is written). Passing the
    ``run_id`` of an earlier run resumes it. When an online run cannot start (no network, no API
    key), the run goes on offline with a warning, so training never stops for the tracker.
    """

    def __init__(
        self,
        run_dir: Path,
        project: str,
        entity: str | None,
        mode: str,
        tags: list[str],
        run_id: str | None = None,
        name: str | None = None,
    ) -> None:
        wandb = require("wandb", "logger=wandb", "wandb")
        if mode not in WANDB_MODES:
            raise ValueError(f"wandb mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._last_epoch: int | None = None
        init = {
            "project": project,
            "entity": entity,
            "dir": str(self.run_dir),
            "id": run_id,
            "name": name,
            "resume": "allow" if run_id else None,
            "tags": list(tags),
            "config": None,
        }
        try:
            self._run = wandb.init(mode=mode, settings=_settings(wandb), **init)
        except wandb.errors.Error as error:
            if mode != "online":
                raise
            where = self.run_dir / "wandb"
            message = f"wandb could not start an online run ({error}); logging offline to {where} instead"
            warnings.warn(f"{message}: upload it later with `wandb sync`", stacklevel=2)
            self._run = wandb.init(mode="offline", settings=_settings(wandb), **init)

    @property
    def run_id(self) -> str | None:
        """The wandb run id (pass it back as ``run_id`` to resume this run)."""
        return self._run.id

    def log_config(self, config: dict) -> None:
        """Merge ``config`` (plain, resolved values) into the run's config."""
        self._run.config.update(dict(config), allow_val_change=True)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """One history row per epoch, at ``step=epoch``."""
        self._run.log({**metrics, "epoch": epoch}, step=epoch)
        self._last_epoch = epoch

    def log_files(self, paths: list[Path]) -> None:
        """PNGs become images (under their stem, in the last epoch's row); other files are saved with
        the run, under their path relative to ``run_dir``; a missing file is skipped with a warning."""
        images = {}
        for path in map(Path, paths):
            if not path.is_file():
                warnings.warn(f"wandb: not logging {path}: no such file", stacklevel=2)
            elif path.suffix.lower() == ".png":
                images[path.stem] = self._wandb.Image(str(path))
            else:
                base = self.run_dir if path.resolve().is_relative_to(self.run_dir.resolve()) else path.parent
                self._run.save(str(path.resolve()), base_path=str(base.resolve()), policy="now")
        if images:
            self._run.log(images, step=self._last_epoch)

    def finish(self) -> None:
        """Close the run (an offline run is then complete and ready for ``wandb sync``)."""
        self._run.finish()


def _settings(wandb: Any) -> Any:
    """Quiet, self-contained wandb settings. A fresh object per ``wandb.init``: init writes the run id
    into the settings it is given, which would leak into the next run."""
    return wandb.Settings(
        quiet=True,  # only the essentials (where the run is) on the terminal
        console="off",  # leave sys.stdout/stderr alone: the loop's progress output is not rewrapped
        save_code=False,
        symlink=False,  # saved files are hard links or copies, so an offline run dir can be moved and synced
    )
