"""``hydra.utils.instantiate`` with one-line errors naming the node that failed."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from detector.config.errors import first_line
from detector.errors import ConfigError, DataError


def instantiate_node(node: Any, key: str) -> Any:
    """``hydra.utils.instantiate`` (plain containers) of the config node at ``key``: a ``DictConfig``,
    or the same node as ``OmegaConf.to_object`` gives it (a schema dataclass or a dict). A failure
    names the node that failed in one line (``cannot build augment.mosaic: ...``).

    A :class:`detector.errors.DataError` from a constructor passes through unchanged.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if not isinstance(node, DictConfig):  # placed under its key, so that errors name the same path
        node = OmegaConf.create({key: node}, flags={"allow_objects": True})[key]
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, DataError):
            raise cause from err
        keys = [line.split(":", 1)[1].strip() for line in str(err).splitlines() if line.strip().startswith("full_key:")]
        where = keys[0] if keys and keys[0] else key
        raise ConfigError(f"cannot build {where}: {first_line(str(cause))}") from err
