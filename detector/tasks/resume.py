"""``python train.py resume=...``: which checkpoint a resumed run continues, and its config.

``resume=PATH`` names a checkpoint; ``resume=true`` (or ``resume=last``) the most recently written
``weights/last.pt`` of the runs named ``<project>/train/<name>``, ``<name>2``, ``<name>3``, ...
The resumed config is the saved one; the command line may change ``train.*``, ``device`` and
``logger.*``, and may repeat anything else with the value the run already has (the original
command with ``resume=`` appended), but not change it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from detector.config import compose, describe_error, validate
from detector.config.schemas import SCHEMAS, TrainConfig
from detector.errors import ConfigError

RESUMABLE = ("train.", "device", "logger.")  # what a resumed run may change on the command line
LATEST = ("true", "last")  # resume= values that mean the latest last.pt of the run's name
SHOWN_DIFFERENCES = 3  # differing keys named per group override


def resume_checkpoint(resume: str, project: str, task: str, name: str) -> Path:
    """The checkpoint ``resume=`` names: the path given, or for ``true`` / ``last`` the most recently
    modified ``<project>/<task>/<name>{,2,3,...}/weights/last.pt``."""
    if resume.lower() not in LATEST:
        return Path(resume)
    parent = Path(project) / task
    runs = [d for d in (parent.iterdir() if parent.is_dir() else ()) if d.name == name or _numbered(d.name, name)]
    found = [d / "weights" / "last.pt" for d in runs if (d / "weights" / "last.pt").is_file()]
    if not found:
        raise ConfigError(
            f"resume={resume.lower()}: no run to resume, there is no {parent / name}*/weights/last.pt "
            f"(the run is found by project={project} and name={name})"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def _numbered(directory: str, name: str) -> bool:
    """Whether ``directory`` is ``name`` numbered by :func:`detector.runs.make_run_dir` (``exp2``, ``exp3``, ...)."""
    return directory.startswith(name) and directory[len(name) :].isdigit()


def resumed_config(saved: dict, overrides: list[str]) -> DictConfig:
    """The saved config with the command line's ``train.*``, ``device`` and ``logger.*`` values on
    top, read by Hydra's override parser (``resume=`` itself is skipped). Any other override must
    give what the run already has (a group option: the node it composes to, with the whole command
    line); those that differ are refused in one line, each with the run's value and the new one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    saved = upgraded(saved)
    cfg = OmegaConf.structured(TrainConfig)
    cfg.logger = {key: OmegaConf.structured(schema_of("logger", node)) for key, node in saved["logger"].items()}
    kept = []  # overrides of what the run keeps: checked against it below
    try:
        cfg = OmegaConf.merge(cfg, saved)
        parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if o.key_or_group != "resume"]
        for override in parsed:
            if override.is_sweep_override():
                raise ConfigError(f"{override.input_line}: a resumed run takes one value per key, not a sweep")
            key = override.key_or_group
            if key.startswith("logger.") and key.split(".")[1] not in cfg.logger:
                raise ConfigError(
                    f"{override.input_line}: this run has no logger '{key.split('.')[1]}' (it has "
                    f"{', '.join(cfg.logger)}); a resumed run keeps its loggers"
                )
            if key.startswith(RESUMABLE):
                OmegaConf.update(
                    cfg, override.key_or_group, None if override.is_delete() else override.value(), merge=True
                )
            else:
                kept.append(override)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(describe_error(err)) from err
    cfg.resume = None
    validate(cfg)
    if kept:
        changed = _differences(kept, _plain(cfg), compose("train", [o.input_line or "" for o in parsed]))
        if changed:
            raise ConfigError(
                "a resumed run keeps its model, data and augmentation; only train.*, device and logger.* can "
                f"change, and these differ from the run: {'; '.join(changed)}"
            )
    return cfg


MISSING_KEY = object()  # a key one side lacks


def _differences(kept: list[Any], have: dict, requested: DictConfig) -> list[str]:
    """Each override of ``kept`` (Hydra ``Override``s) whose part of the config differs between the
    run (``have``) and the command line (``requested``, composed from all of it), described, in
    command-line order; the last override of a key counts. Values are compared first; a node (a group
    option) is then compared with those values put back to the run's (they are named already, and
    interpolations carry them into the node) and without the keys later overrides inside it set."""
    last = {o.key_or_group.replace("/", "."): o for o in kept}
    plain = _plain(requested)
    changed: dict[str, str] = {}
    for path, override in last.items():
        mine, theirs = _select(have, path), _select(plain, path)
        if not isinstance(mine, dict) and not isinstance(theirs, dict) and mine != theirs:
            changed[path] = f"{override.input_line or path} (the run has {_show(mine)})"
            if mine is not MISSING_KEY:
                OmegaConf.update(requested, path, mine, merge=False)
    plain = _plain(requested)
    for path, override in last.items():
        if path in changed:
            continue
        inner = [p for p in last if p.startswith(path + ".")]
        diffs = [
            d
            for d in _leaf_differences(_select(have, path), _select(plain, path), path)
            if not any(d[0] == p or d[0].startswith(p + ".") for p in inner)
        ]
        if diffs:
            changed[path] = _describe(override.input_line or path, path, diffs)
    return [changed[p] for p in last if p in changed]


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def _select(node: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING_KEY
        node = node[key]
    return node


def _leaf_differences(have: Any, want: Any, path: str) -> list[tuple[str, Any, Any]]:
    """``(key, run's value, requested value)`` of every differing leaf under ``path`` (``_target_`` first:
    what a node builds says most)."""
    if isinstance(have, dict) and isinstance(want, dict):
        return [
            diff
            for key in sorted([*have, *(k for k in want if k not in have)], key=lambda k: k != "_target_")
            for diff in _leaf_differences(have.get(key, MISSING_KEY), want.get(key, MISSING_KEY), f"{path}.{key}")
        ]
    return [] if have == want else [(path, have, want)]


def _show(value: Any, limit: int = 60) -> str:
    """A value as the message shows it; a node by what it builds (``Mosaic(...)``), else ``{...}``."""
    if value is MISSING_KEY:
        return "(not set)"
    if isinstance(value, dict):
        return f"{str(value['_target_']).rsplit('.', 1)[-1]}(...)" if "_target_" in value else "{...}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(line: str, path: str, diffs: list[tuple[str, Any, Any]]) -> str:
    """``model.scale.width=0.5 (the run has 0.0625)``; for a group option, its first differing keys."""
    if len(diffs) == 1 and diffs[0][0] == path:
        return f"{line} (the run has {_show(diffs[0][1])})"
    shown = ", ".join(f"{k}: the run has {_show(a)}, this gives {_show(b)}" for k, a, b in diffs[:SHOWN_DIFFERENCES])
    more = f", and {len(diffs) - SHOWN_DIFFERENCES} more" if len(diffs) > SHOWN_DIFFERENCES else ""
    return f"{line} ({shown}{more})"


def schema_of(group: str, node: dict) -> type:
    """The schema registered for a saved ``group`` node, found by its ``_target_``."""
    for schema in SCHEMAS[f"schema/{group}"].values():
        if schema._target_ == node.get("_target_"):
            return schema
    raise ConfigError(f"{group}._target_={node.get('_target_')!r} is none of the {group} options")


def upgraded(saved: dict) -> dict:
    """A config saved before ``schedule`` and ``logger`` were ``_target_`` nodes (``schedule.shape``,
    ``logger.backend``), rewritten as the option it named; a ``logger`` saved before it held one node
    per logger, as :func:`upgraded_loggers` says."""
    saved = dict(saved)
    node = dict(saved.get("schedule") or {})
    if "shape" in node:
        schema = SCHEMAS["schema/schedule"][str(node.pop("shape"))]
        keys = {f.name for f in fields(schema)}
        saved["schedule"] = {"_target_": schema._target_, **{k: v for k, v in node.items() if k in keys}}
    saved["logger"] = upgraded_loggers(dict(saved.get("logger") or {}))
    return saved


LEGACY_LOGGERS = {"detector.train.loggers.csv_loggers": "csv", "detector.train.loggers.wandb_loggers": "wandb"}


def upgraded_loggers(node: dict) -> dict:
    """The one ``logger`` node of a config saved before ``logger.<key>`` (``_target_`` one of
    :data:`LEGACY_LOGGERS`, or older, ``backend: csv|wandb``), as the nodes its option makes now: the CSV
    logger, and the wandb one with the keys it had. Anything else is returned as it is."""
    if "backend" in node:
        option = str(node.pop("backend"))
    elif node.get("_target_") in LEGACY_LOGGERS:
        option = LEGACY_LOGGERS[node.pop("_target_")]
    else:
        return node
    nodes = {"csv": {"_target_": SCHEMAS["schema/logger"]["csv"]._target_, "_partial_": True}}
    if option != "csv":
        schema = SCHEMAS["schema/logger"][option]
        keys = {f.name for f in fields(schema)}
        nodes[option] = {**{k: v for k, v in node.items() if k in keys}, "_target_": schema._target_}
    return nodes


def saved_run_ids(saved: str | dict | None) -> dict[str, str]:
    """The trackers' run ids a checkpoint keeps, by logger key; a checkpoint from before several
    trackers kept the one id of its wandb run."""
    if saved is None:
        return {}
    return {"wandb": saved} if isinstance(saved, str) else dict(saved)
