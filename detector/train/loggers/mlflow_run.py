"""``logger=mlflow``: an MLflow run, by default in a local database (no server needed)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from detector.errors import ConfigError
from detector.train.loggers.requires import require

PIP = "mlflow-skinny sqlalchemy alembic"  # the client and its local (SQLite) store; `mlflow` (full) also works
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


class MLflowLogger:
    """An MLflow run through ``MlflowClient`` (no process-wide active run, so several runs in one
    process, as in a sweep, never mix). ``tracking_uri``: ``sqlite:///<path>`` (a local database),
    ``http(s)://host:port`` (a tracking server), ``databricks`` or ``file:<dir>`` (MLflow's old file
    store, which MLflow refuses unless ``MLFLOW_ALLOW_FILE_STORE=true``). The run is created in
    ``experiment`` (created when missing; a new experiment of a local database keeps its artifacts in
    ``mlartifacts/`` beside the database file) under ``name`` with ``tags`` and the tag ``run_dir``.

    Passing the ``run_id`` of an earlier run continues it (a resumed training run): its status goes
    back to RUNNING and epochs logged again get new points at the same steps (MLflow keeps a metric's
    whole history; the newest value at a step is the resumed run's).
    """

    def __init__(
        self,
        run_dir: Path,
        tracking_uri: str,
        experiment: str,
        tags: dict[str, str],
        run_id: str | None = None,
        name: str | None = None,
    ) -> None:
        require("mlflow", "logger=mlflow", PIP)
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir)
        self._last_epoch = 0
        database = _local_database(tracking_uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MlflowClient(tracking_uri=tracking_uri)
            if run_id is not None:
                self._client.get_run(run_id)  # fails when this store has no such run
                self._client.update_run(run_id, status="RUNNING")
            else:
                tags = {**{str(k): str(v) for k, v in tags.items()}, "run_dir": str(self.run_dir.resolve())}
                experiment_id = self._experiment_id(experiment, tracking_uri)
                run_id = self._client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        except ImportError as err:  # a store whose packages are missing (SQLite needs sqlalchemy, alembic)
            raise ConfigError(f"logger=mlflow with {tracking_uri}: {err.msg}: pip install {PIP}") from err
        except MlflowException as err:
            where = f"run {run_id} in {tracking_uri}" if run_id is not None else tracking_uri
            raise ConfigError(f"logger=mlflow ({where}): {_first_line(str(err.message))}") from err
        self._run_id: str = run_id

    @property
    def run_id(self) -> str:
        """The MLflow run id (pass it back as ``run_id`` to continue this run)."""
        return self._run_id

    def log_config(self, config: dict) -> None:
        """The config as parameters with dotted keys (``train.epochs``) and as the artifact
        ``config.yaml``. MLflow keeps a parameter's first value: a resumed run that changed one records
        the new value as the tag ``resumed.<key>``."""
        from mlflow.entities import Param, RunTag

        params = {key: _text(value) for key, value in _flatten(config).items()}
        logged = self._client.get_run(self._run_id).data.params
        new = [Param(key, value) for key, value in params.items() if key not in logged]
        changed = [RunTag(f"resumed.{key}", value) for key, value in params.items() if logged.get(key, value) != value]
        self._client.log_batch(self._run_id, params=new, tags=changed)
        self._client.log_dict(self._run_id, config, "config.yaml")

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """One point per metric (the CSV's column names as keys) at ``step=epoch``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        points = [
            Metric(key, float(value), now, epoch)
            for key, value in metrics.items()
            if value is not None and key != "epoch"
        ]
        self._client.log_batch(self._run_id, metrics=points)
        self._last_epoch = epoch

    def log_files(self, paths: list[Path]) -> None:
        """Each file becomes an artifact, under its path relative to ``run_dir`` (``pr_curves.png``,
        ``weights/best.pt``); a missing file is skipped with a warning."""
        root = self.run_dir.resolve()
        for path in map(Path, paths):
            if not path.is_file():
                warnings.warn(f"mlflow: not logging {path}: no such file", stacklevel=2)
                continue
            folder = path.resolve().parent
            relative = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else "."
            self._client.log_artifact(self._run_id, str(path), artifact_path=None if relative == "." else relative)

    def finish(self) -> None:
        """Mark the run FINISHED."""
        self._client.set_terminated(self._run_id, status="FINISHED")

    def _experiment_id(self, name: str, tracking_uri: str) -> str:
        """The id of experiment ``name``, created when missing (by another process meanwhile, too)."""
        from mlflow.exceptions import MlflowException

        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(name, artifact_location=_artifact_location(tracking_uri))
        except MlflowException:
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


def _local_database(tracking_uri: str) -> Path | None:
    """The file of a local SQLite store (``sqlite:///runs/mlflow.db``: relative to the working
    directory; ``sqlite:////abs/mlflow.db``), else None."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    return Path(tracking_uri[len(prefix) :].split("?")[0])


def _artifact_location(tracking_uri: str) -> str | None:
    """``<folder of the database>/mlartifacts`` for a local SQLite store, else None (the store's own
    default: a server's artifact root)."""
    database = _local_database(tracking_uri)
    return None if database is None else str(database.resolve().parent / "mlartifacts")


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}`` (lists are values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _text(value: Any) -> str:
    """A parameter value as MLflow stores it: text, cut to its length limit."""
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "failed"
