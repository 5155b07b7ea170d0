"""Trained seeds of the head-to-head, kept across compare runs so that a long study can be
interrupted and resumed, and so that changing only our code does not retrain Ultralytics' side.

A seed of one side lives in ``<cache>/<side>-<key>/seed<N>/``: the trainer's run directory below it
and, written last and atomically, ``trained.json`` (the :class:`TrainedRun` fields, the per-epoch
validation curve and the inputs of the key). ``key`` is a short hash of everything that decides
that side's training except the seed: for ours the source of the ``detector`` package and of
``configs/``, the torch and albumentations versions and the resolved ``train`` config (run
directory and name left out); for Ultralytics the ``YOLO.train`` arguments (run directory and name
left out), the model YAML and the Ultralytics and torch versions; for both the data's identity. A
folder without a readable ``trained.json`` of its key and seed is a partial run: it is removed and
trained again.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detector.errors import ConfigError
from detector.runs import write_text_atomic
from detector.tools.compare.headtohead import TrainedRun

TRAINED_JSON = "trained.json"
KEY_LENGTH = 12  # hex digits of sha256
RUN_KEYS = ("project", "name", "exist_ok")  # where a run is written and what it is called: not what it trains
GENERATION = ("detector.data.generated", "detector.data.synth")  # the machinery every generated dataset shares


def digest(paths: list[tuple[str, Path]]) -> str:
    """sha256 over ``(name, file content)`` pairs, in the given order."""
    h = hashlib.sha256()
    for name, path in paths:
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def source_digest(package_dir: Path, config_dir: Path) -> str:
    """The code that decides how ours trains: every ``.py`` under ``package_dir`` and every YAML
    under ``config_dir``, by path relative to each and content."""
    files = [(f"detector/{p.relative_to(package_dir).as_posix()}", p) for p in sorted(package_dir.rglob("*.py"))]
    files += [(f"configs/{p.relative_to(config_dir).as_posix()}", p) for p in sorted(config_dir.rglob("*.yaml"))]
    return digest(files)


def generated_dataset(target: Any) -> Any:
    """The :class:`GeneratedDataset` a ``data`` node's ``_target_`` generates (shapes, crowd), or None
    for data read from files."""
    from detector.data import sources

    module, _, name = str(target).rpartition(".")
    cls = getattr(sources, name, None) if module == sources.__name__ else None
    if isinstance(cls, type) and issubclass(cls, sources.GeneratedSource) and cls is not sources.GeneratedSource:
        return cls.dataset()
    return None


def data_identity(data: dict[str, Any]) -> dict[str, Any]:
    """What identifies the data of a resolved ``data`` node: for a generated dataset its parameters,
    its format version and the source of its generator and of the generation machinery (not where it
    is written); for files the node with ``file`` and ``path`` made absolute, and the content of a
    ``data.yaml`` it names. Image and label files are not read: data changed in place under the same
    paths keeps its identity (``reuse=false`` retrains)."""
    node = copy.deepcopy(data)
    dataset = generated_dataset(node.get("_target_"))
    if dataset is not None:
        node.pop("root", None)
        modules = [importlib.import_module(m) for m in (dataset.generator, *GENERATION)]
        node["generator"] = {"format_version": dataset.format_version}
        node["generator"]["source"] = digest([(m.__name__, Path(str(m.__file__))) for m in modules])
        return node
    for key in ("file", "path"):
        if isinstance(node.get(key), str):
            node[key] = str(Path(node[key]).expanduser().resolve())
    if isinstance(node.get("file"), str) and Path(node["file"]).is_file():
        node["file_sha256"] = digest([("data.yaml", Path(node["file"]))])
    return node


def our_key_inputs(train_config: dict[str, Any], source: str, versions: dict[str, str], device: str) -> dict[str, Any]:
    """The inputs of our side's key: the resolved ``train`` config without its run directory, name
    and seed, the data's identity, the device it trains on, the source digest and the versions."""
    config = copy.deepcopy(train_config)
    for key in RUN_KEYS:
        config.pop(key, None)
    config.get("train", {}).pop("seed", None)  # the seed is the folder's: seed<N>
    config["data"] = data_identity(config.get("data", {}))
    config["device"] = device
    return {"side": "ours", "config": config, "source": source, "versions": versions}


def their_key_inputs(
    model_yaml: str, args: dict[str, Any], data: dict[str, Any], versions: dict[str, str]
) -> dict[str, Any]:
    """The inputs of Ultralytics' side's key: the ``YOLO.train`` arguments without run directory, name
    and seed, the data's identity in place of the data.yaml path (which is the compare run's), the
    model YAML and the versions."""
    kept = {k: v for k, v in args.items() if k not in ("project", "name", "seed", "data")}
    return {"side": "ultralytics", "model": model_yaml, "args": kept, "data": data_identity(data), "versions": versions}


def cache_key(inputs: dict[str, Any]) -> str:
    """A short hash of ``inputs`` (canonical JSON: sorted keys)."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def seed_dir(cache: Path, side: str, key: str, seed: int) -> Path:
    return Path(cache) / f"{side}-{key}" / f"seed{seed}"


@dataclass
class Side:
    """One trainer of the head-to-head: its name, key and inputs, and ``train(seed, folder)``, which
    trains that seed with its run directory below ``folder``."""

    name: str
    key: str
    inputs: dict[str, Any]
    train: Callable[[int, Path], TrainedRun]


@dataclass
class TrainedSeed:
    """One seed of one side: its run, where it is cached and whether it was reused."""

    side: str
    seed: int
    run: TrainedRun
    folder: Path
    reused: bool


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def write_trained(folder: Path, side: Side, seed: int, run: TrainedRun) -> Path:
    """``trained.json`` for a finished seed (paths relative to ``folder``), atomically: the last file
    written, whose presence marks the seed done."""
    fields = asdict(run)
    fields["weights"], fields["run_dir"] = _relative(run.weights, folder), _relative(run.run_dir, folder)
    record = {"side": side.name, "seed": seed, "key": side.key, "run": fields, "inputs": side.inputs}
    return write_text_atomic(folder / TRAINED_JSON, json.dumps(record, indent=2, default=str))


def read_trained(folder: Path, key: str, seed: int) -> TrainedRun | None:
    """The finished run cached in ``folder`` for ``key`` and ``seed``; None when the folder holds none
    (no or an unreadable ``trained.json``, another key or seed, or its ``best.pt`` is gone)."""
    path = folder / TRAINED_JSON
    try:
        record = json.loads(path.read_text())
        if record["key"] != key or record["seed"] != seed:
            return None
        fields = dict(record["run"])
        fields["weights"], fields["run_dir"] = folder / fields["weights"], folder / fields["run_dir"]
        fields["curve"] = [(int(e), float(v)) for e, v in fields.get("curve", [])]
        run = TrainedRun(**fields)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run if run.weights.is_file() else None


def trained_seed(side: Side, seed: int, cache: Path, reuse: bool, log: Callable[[str], None] = print) -> TrainedSeed:
    """``side`` trained at ``seed``: reused from ``cache`` when done there (and ``reuse``), else trained
    in a fresh folder (a partial or, without ``reuse``, a finished one is removed first)."""
    folder = seed_dir(cache, side.name, side.key, seed)
    done = read_trained(folder, side.key, seed)
    if done is not None and reuse:
        log(f"[bold]{side.name} seed {seed}[/bold]: reused from {folder}")
        return TrainedSeed(side.name, seed, done, folder, reused=True)
    if folder.exists():
        why = "finished, retrained (reuse=false)" if done is not None else "partial, trained from scratch"
        log(f"{side.name} seed {seed}: removing {folder} ({why})")
        shutil.rmtree(folder)
    log(f"[bold]{side.name} seed {seed}[/bold]: training -> {folder}")
    run = side.train(seed, folder)
    write_trained(folder, side, seed, run)
    return TrainedSeed(side.name, seed, run, folder, reused=False)


def seed_list(seeds: list[int], default: int) -> list[int]:
    """The seeds of a study: ``seeds``, or ``[default]`` (``recipe.seed``) when empty; duplicates are
    refused (each seed is one paired sample)."""
    if not seeds:
        return [int(default)]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds={list(seeds)}: each seed once (repeated: {', '.join(map(str, repeated))})")
    return [int(s) for s in seeds]
