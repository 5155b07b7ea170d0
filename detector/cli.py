"""Hydra entry points whose configuration mistakes end in one line on stderr, not a traceback.

Before Hydra runs the task, the command line is composed once more through the Compose API
and validated; any mistake is printed as one line, ``error: <what is wrong, naming the key>``, and the process exits
with status 2. Hydra's own flags (``--cfg job``, ``--help``, ``--multirun``, ...) keep working.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from detector.config import CONFIG_DIR, compose, describe_error, register_configs, validate
from detector.errors import ConfigError, DataError, TrainingStopped
from detector.tasks.command_line import CommandLine


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def hydra_entry(config_name: str, task: Callable[[DictConfig, CommandLine], Any]) -> None:
    """Run ``task(cfg, command_line)`` as a Hydra app on ``configs/<config_name>.yaml``."""
    import hydra
    from hydra._internal.utils import get_args_parser

    register_configs()
    args, _ = get_args_parser().parse_known_args()
    informational = args.help or args.hydra_help or args.info or args.shell_completion
    if not informational:
        try:
            for overrides in _override_sets(list(args.overrides)):
                compose(config_name, overrides)
        except ConfigError as err:
            fail(str(err))

    def checked_task(cfg: DictConfig) -> Any:
        try:
            validate(cfg)
            return task(cfg, CommandLine.from_hydra())
        except (ConfigError, DataError) as err:
            fail(str(err))
        except TrainingStopped as err:
            fail(str(err), code=1)

    main = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(checked_task)
    main()


def _override_sets(overrides: list[str]) -> list[list[str]]:
    """The override lists to validate up front: the command line itself, or for a sweep, every
    value of every enumerable sweep (the other sweeps at their first value). Sweeps that cannot be
    enumerated here (intervals, globs) are left to the per-job check."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(describe_error(err)) from err
    fixed: list[str] = []
    sweeps: list[tuple[str, list[str]]] = []
    for override in parsed:
        if not override.is_sweep_override():
            fixed.append(override.input_line or "")
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:
            continue
        sweeps.append((override.get_key_element(), values))
    if not sweeps:
        return [fixed]
    firsts = [f"{key}={values[0]}" for key, values in sweeps]
    return [
        fixed + firsts[:i] + [f"{key}={value}"] + firsts[i + 1 :]
        for i, (key, values) in enumerate(sweeps)
        for value in values
    ]
