"""Hydra entry points whose configuration mistakes end in one line on stderr, not a traceback.

Before Hydra runs the task, the command line is composed once more through the Compose API
and validated; any mistake is printed as ``error: <what> (<where>)`` and the process exits
with status 2. Hydra's own flags (``--cfg job``, ``--help``, ``--multirun``, ...) keep working.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from detector.config import CONFIG_DIR, ConfigError, compose, register_configs, validate


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def hydra_entry(config_name: str, task: Callable[[DictConfig], Any]) -> None:
    """Run ``task(cfg)`` as a Hydra app on ``configs/<config_name>.yaml``."""
    import hydra
    from hydra._internal.utils import get_args_parser

    register_configs()
    args, _ = get_args_parser().parse_known_args()
    informational = args.help or args.hydra_help or args.info or args.shell_completion
    if not informational and not args.multirun:  # a sweep is validated per job instead
        try:
            compose(config_name, list(args.overrides))
        except ConfigError as err:
            fail(str(err))

    def checked_task(cfg: DictConfig) -> Any:
        try:
            validate(cfg)
            return task(cfg)
        except ConfigError as err:
            fail(str(err))

    main = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(checked_task)
    main()
