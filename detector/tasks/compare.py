"""``python scripts/compare.py``: the one place the compare config is read.

``mode=eval`` compares the models listed in ``models=[...]``; ``mode=train`` first trains ours and
Ultralytics' with one recipe at each of ``seeds`` (:mod:`detector.tools.compare.headtohead`; finished
seeds are reused from ``<project>/compare/trained/``, :mod:`detector.tools.compare.cache`), then
scores every seed's two results the same way and summarises them over the seeds
(:mod:`detector.tools.compare.seeds_report`). The parts live in :mod:`detector.tools.compare`; this
module reads the config once and wires them.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import detector
from detector.config import CONFIG_DIR, compose, instantiate_node, validate
from detector.config.schemas import CompareConfig, CompareMode, RecipeLoader
from detector.console import make_console
from detector.data.build import load_split
from detector.data.index import SplitIndex
from detector.device import select_device
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.interop import ultralytics as ul
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.tools.compare.cache import (
    Side,
    cache_key,
    our_key_inputs,
    seed_list,
    source_digest,
    their_key_inputs,
    trained_seed,
)
from detector.tools.compare.classes import class_map
from detector.tools.compare.contenders import Contender, load_contender, with_ultralytics_module
from detector.tools.compare.data import ultralytics_can_read, ultralytics_data_yaml
from detector.tools.compare.headtohead import (
    Recipe,
    TrainedRun,
    check_recipe_model,
    our_overrides,
    recipe_notes,
    their_batches,
    train_ours,
    train_ultralytics,
    ultralytics_amp,
    ultralytics_train_args,
)
from detector.tools.compare.report import (
    plot_map_vs_latency,
    reading_notes,
    results_table,
    shared_settings,
    write_csv,
    write_reports,
)
from detector.tools.compare.scoring import compare_models
from detector.tools.compare.seeds_report import SeedResult, plot_curves, terminal_tables, write_summary_csv
from detector.tools.compare.seeds_report import write_csv as write_seeds_csv
from detector.tools.compare.seeds_report import write_markdown as write_seeds_markdown

TRAINED = "trained"  # <project>/compare/trained/: the seeds every head-to-head shares


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    threads = torch.get_num_threads()  # before anything of Ultralytics' sets its own: what train.py would use
    console = make_console()
    settings: CompareConfig = OmegaConf.to_object(cfg)
    device = select_device(settings.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # the latency clock synchronises the current device
    train_mode = settings.mode is CompareMode.train
    if not train_mode and not settings.models:
        raise ConfigError(
            "models is empty: give models=[PATH_OR_NAME,...] (our .pt, an Ultralytics .pt, "
            "an Ultralytics YAML name such as yolov8n.yaml, or one of our model configs)"
        )
    if not train_mode and settings.seeds:
        raise ConfigError("seeds=[...] trains both sides at each seed: it needs mode=train")
    seeds: list[int] = []
    if train_mode:  # the recipe's mistakes, before any long work
        seeds = seed_list(settings.seeds, settings.recipe.seed)
        check_recipe_model(settings.recipe)
        if settings.name == TRAINED:
            raise ConfigError(f"name={TRAINED} is the folder of the cached trained seeds: choose another name")
    names = list(settings.data.names)
    # every model is loaded (and every mistake reported) before any long work starts
    contenders = [load_contender(m, names, settings.seed) for m in settings.models]
    for c in contenders:
        class_map(c.names, names, c.label)
    source = instantiate_node(cfg.data, "data")
    if train_mode and not ultralytics_can_read(source):
        raise ConfigError("mode=train needs data that Ultralytics can read (shapes, crowd or yolo), not COCO JSON")
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    data_yaml = ultralytics_data_yaml(source, names, run_dir / "data.yaml")
    index = load_split(source, settings.split, log=console.print)
    post = PostProcess(conf=settings.conf, iou=settings.iou, max_det=settings.max_det)
    if train_mode and data_yaml is not None:
        our_threads = settings.recipe.threads or threads
        head_to_head(
            cfg, settings, seeds, contenders, source, index, post, device, data_yaml, run_dir, command_line, our_threads
        )
    else:
        rows = compare_models(contenders, index, data_yaml, settings, post, device, run_dir, {}, console.print)
        title = "Model comparison"
        write_reports(
            run_dir, title, rows, settings, post, source, index, device, [], data_yaml, command_line.overrides
        )
        console.print(results_table(rows, title))
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    console.print(f"results in {run_dir}")
    return run_dir


def head_to_head(
    cfg: DictConfig,
    settings: CompareConfig,
    seeds: list[int],
    contenders: list[Contender],
    source: Any,
    index: SplitIndex,
    post: PostProcess,
    device: torch.device,
    data_yaml: Path,
    run_dir: Path,
    command_line: CommandLine,
    threads: int,
) -> None:
    """Train (or reuse) both sides with ``settings.recipe`` at every seed (ours on ``threads`` torch
    CPU threads, theirs on what their trainer sets), score each seed's pair into
    ``seeds/<seed>/`` (latency at the first seed only), the other ``models=[...]`` once into
    ``models/``, and write the reports."""
    console = make_console()
    recipe, model_yaml = settings.recipe, check_recipe_model(settings.recipe)
    names = list(settings.data.names)
    cache = Path(settings.project) / settings.task / TRAINED
    sides = training_sides(cfg.data, settings, recipe, model_yaml, device, data_yaml, threads)
    results: list[SeedResult] = []
    models: list[dict[str, Any]] = []
    for seed in seeds:
        trained = {side.name: trained_seed(side, seed, cache, settings.reuse, console.print) for side in sides}
        both = [with_ultralytics_module(load_contender(str(trained["ours"].run.weights), names), recipe.model)]
        both.append(load_contender(str(trained["ultralytics"].run.weights), names))
        for c, side, who in zip(both, trained.values(), ("ours", "Ultralytics")):
            c.notes.append(
                f"seed {seed}, trained by {who} in {side.run.run_dir}" + (" (reused)" if side.reused else "")
            )
        runs = {c.label: t.run for c, t in zip(both, trained.values())}
        first = seed == seeds[0]
        rows = compare_models(
            both,
            index,
            data_yaml,
            settings,
            post,
            device,
            run_dir / "seeds" / str(seed),
            runs,
            console.print,
            latency=first,
        )
        results.append(SeedResult(seed, trained, dict(zip(trained, rows))))
        models += rows if first else []
    if contenders:
        models += compare_models(contenders, index, data_yaml, settings, post, device, run_dir, {}, console.print)
    title = f"Same-recipe head-to-head over {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    used = (
        max(r.trained["ours"].run.threads for r in results),
        max(r.trained["ultralytics"].run.threads for r in results),
    )
    notes = recipe_notes(recipe, device, recipe.workers, ultralytics_amp(recipe, device), seeds, used)
    shared = shared_settings(models, settings, post, source, index, device, data_yaml, command_line.overrides)
    shared["seeds"] = ", ".join(map(str, seeds))
    shared["trained seeds"] = f"{cache} (reuse={str(settings.reuse).lower()})"
    write_seeds_markdown(run_dir / "compare.md", title, results, models, shared, reading_notes(settings, notes))
    write_seeds_csv(run_dir / "compare.csv", results)
    write_summary_csv(run_dir / "summary.csv", results)
    write_csv(run_dir / "models.csv", models)
    plot_map_vs_latency(run_dir / "map_vs_latency.png", models, str(device))
    plot_curves(run_dir / "curves.png", results)
    for table in terminal_tables(results, title):
        console.print(table)


def training_sides(
    data: DictConfig,
    settings: CompareConfig,
    recipe: Recipe,
    model_yaml: str,
    device: torch.device,
    data_yaml: Path,
    threads: int,
) -> list[Side]:
    """Our side and Ultralytics', each with its key and ``train(seed, folder)``. Ours runs
    ``train.py``'s task, on ``threads`` torch CPU threads, on the ``train`` config of the recipe at
    the seed, with the compare run's ``data`` node (resolved), its run directory
    ``<folder>/train/ours``; theirs ``YOLO.train`` into ``<folder>/train/ultralytics``."""
    from detector.tasks.train import run as train

    data_node: dict[str, Any] = OmegaConf.to_container(data, resolve=True, enum_to_str=True)  # type: ignore[assignment]
    workers = recipe.workers  # Ultralytics' trainer itself turns this to 0 on a CPU
    swapped = recipe.our_loader == RecipeLoader.ultralytics

    def train_config(seed: int, folder: Path) -> DictConfig:
        recipe_at = dataclasses.replace(recipe, seed=seed)
        train_cfg = compose("train", our_overrides(recipe_at, settings.imgsz, settings.device, workers, folder))
        train_cfg.data = OmegaConf.create(data_node)
        validate(train_cfg)
        return train_cfg

    def train_ours_at(seed: int, folder: Path) -> TrainedRun:
        train_cfg = train_config(seed, folder)
        options = train_cfg.train
        batches = their_batches(recipe, data_yaml, settings.imgsz, seed) if swapped else None
        return train_ours(
            lambda: train(train_cfg, batches=batches),
            int(options.epochs),
            int(options.workers),
            int(options.patience),
            threads,
        )

    amp = ultralytics_amp(recipe, device)

    def their_args(seed: int, folder: Path) -> dict[str, Any]:
        recipe_at = dataclasses.replace(recipe, seed=seed)
        return ultralytics_train_args(
            recipe_at, data_yaml, settings.imgsz, ul.device_string(device), amp, workers, folder / "train"
        )

    plain: dict[str, Any] = OmegaConf.to_container(train_config(recipe.seed, Path(".")), resolve=True, enum_to_str=True)  # type: ignore[assignment]
    versions = {"torch": torch.__version__, "albumentations": _version("albumentations")}
    code = source_digest(Path(detector.__file__).parent, CONFIG_DIR)
    ours_inputs = our_key_inputs(plain, code, versions, str(device))
    ours_inputs["threads"] = threads  # the trajectory depends on it
    if swapped:
        ours_inputs["loader"] = {"ultralytics": ul.version(), "augment": ul.TRAIN_AUGMENT}
    their_versions = {"ultralytics": ul.version(), "torch": torch.__version__}
    their_inputs = their_key_inputs(model_yaml, their_args(recipe.seed, Path(".")), data_node, their_versions)
    return [
        Side("ours", cache_key(ours_inputs), ours_inputs, train_ours_at),
        Side(
            "ultralytics",
            cache_key(their_inputs),
            their_inputs,
            lambda s, f: train_ultralytics(model_yaml, their_args(s, f)),
        ),
    ]


def _version(package: str) -> str:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return "not installed"
