"""Hydra and OmegaConf errors translated into one line naming the key or option."""

from __future__ import annotations

import difflib

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from detector.config.store import CONFIG_DIR
from detector.errors import DataError

PLUGINS = {"hydra/sweeper/optuna": "hydra-optuna-sweeper"}  # Hydra options that a plugin package provides


def describe_error(err: BaseException) -> str:
    """One line for a Hydra / OmegaConf error: which key or option, and what is wrong with it."""
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, DataError):
            return str(e)
        if isinstance(e, OverrideParseException):
            return f"cannot parse override '{e.override}': {first_line(e.message)}"
        if isinstance(e, MissingConfigException) and e.missing_cfg_file:
            group, _, choice = e.missing_cfg_file.rpartition("/")
            options = [o for o in (e.options or []) if not o.startswith("schema")]
            if group and options:
                plugin = PLUGINS.get(e.missing_cfg_file)
                needs = f" (a Hydra plugin: pip install {plugin})" if plugin else ""
                return f"unknown {group} '{choice}'; choose one of: {', '.join(sorted(options))}{needs}"
            return f"config '{e.missing_cfg_file}' not found in {CONFIG_DIR}"
    for e in chain:
        if isinstance(e, (ConfigKeyError, ConfigAttributeError)) and e.full_key:
            return f"unknown key '{e.full_key}'{_did_you_mean(e)}"
        if isinstance(e, MissingMandatoryValue) and e.full_key:
            return f"missing value for '{e.full_key}': set it on the command line ({e.full_key}=...)"
        if isinstance(e, ValidationError) and e.full_key:
            return f"invalid value for '{e.full_key}': {first_line(e.msg)}"
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            return f"bad value for '{e.full_key}': {first_line(e.msg)}"
    return first_line(str(err) or str(chain[-1]))


def _did_you_mean(e: ConfigKeyError | ConfigAttributeError) -> str:
    parent = e.parent_node
    if not isinstance(parent, DictConfig) or not isinstance(e.key, str):
        return ""
    known = [str(k) for k in parent.keys() if not str(k).startswith("_") and k != "hydra"]
    close = difflib.get_close_matches(e.key, known, n=1)
    prefix = e.full_key.rpartition(".")[0]
    if close:
        return f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
    return f"; known keys{' under ' + repr(prefix) if prefix else ''}: {', '.join(known)}"


def first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "configuration error")
