"""``hydra.utils.instantiate`` with one-line errors naming the node that failed."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from detector.config.errors import first_line
from detector.errors import ConfigError, DataError


def instantiate_node(node: DictConfig, key: str) -> Any:
    """``hydra.utils.instantiate`` (plain containers); a failure names the node that failed in one line.

    A :class:`detector.errors.DataError` from a constructor passes through unchanged.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, DataError):
            raise cause from err
        keys = [line.split(":", 1)[1].strip() for line in str(err).splitlines() if line.strip().startswith("full_key:")]
        where = keys[0] if keys and keys[0] else key
        raise ConfigError(f"cannot build {where}: {first_line(str(cause))}") from err
