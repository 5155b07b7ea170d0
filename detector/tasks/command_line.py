"""What the command line said beyond the composed config: the overrides as typed and the config
group choices. The Hydra entry point (:func:`detector.cli.hydra_entry`) reads them from Hydra's
runtime once and hands them to the task; a task run in-process gets them as arguments."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CommandLine:
    overrides: tuple[str, ...] = ()  # as typed: train.epochs=50, model=yolo11s, ...
    choices: dict[str, str] = field(default_factory=dict)  # config group -> chosen option (model -> yolov8n)
    job: int | None = None  # the job's number in a sweep (-m), None in a single run

    @classmethod
    def from_hydra(cls) -> CommandLine:
        """The running Hydra app's overrides, choices and job number (empty outside a Hydra app)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hydra = HydraConfig.get()
        choices = {str(k): str(v) for k, v in hydra.runtime.choices.items() if v is not None}
        job = int(hydra.job.num) if hydra.mode == RunMode.MULTIRUN else None
        return cls(tuple(hydra.overrides.task), choices, job)
