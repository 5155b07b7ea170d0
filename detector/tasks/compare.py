"""``python scripts/compare.py``: the one place the compare config is read.

``mode=eval`` compares the models listed in ``models=[...]``; ``mode=train`` first trains ours and
Ultralytics' with one recipe (:mod:`detector.tools.compare.headtohead`), then compares the two results
the same way, with training throughput and wall time added. The parts live in
:mod:`detector.tools.compare`; this module reads the config once and wires them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from detector.config import compose, instantiate_node, validate
from detector.config.schemas import CompareConfig, CompareMode
from detector.data.build import load_split
from detector.device import select_device
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.interop import ultralytics as ul
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.tools.compare.classes import class_map
from detector.tools.compare.contenders import load_contender
from detector.tools.compare.data import ultralytics_can_read, ultralytics_data_yaml
from detector.tools.compare.headtohead import (
    Recipe,
    TrainedRun,
    check_recipe_model,
    our_overrides,
    recipe_notes,
    train_ours,
    train_ultralytics,
    ultralytics_amp,
    ultralytics_train_args,
)
from detector.tools.compare.report import results_table, write_reports
from detector.tools.compare.scoring import compare_models


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    console = Console()
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
    recipe: Recipe | None = settings.recipe if train_mode else None
    model_yaml = check_recipe_model(recipe) if recipe is not None else ""
    names = list(settings.data.names)
    # every model is loaded (and every mistake reported) before any long work starts
    contenders = [load_contender(m, names, settings.seed) for m in settings.models]
    for c in contenders:
        class_map(c.names, names, c.label)
    source = instantiate_node(cfg.data, "data")
    if recipe is not None and not ultralytics_can_read(source):
        raise ConfigError("mode=train needs data that Ultralytics can read (shapes, crowd or yolo), not COCO JSON")
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    data_yaml = ultralytics_data_yaml(source, names, run_dir / "data.yaml")
    notes: list[str] = []
    trained: dict[str, TrainedRun] = {}
    if recipe is not None and data_yaml is not None:
        trained = train_both(recipe, model_yaml, cfg.data, settings, device, data_yaml, run_dir, console)
        both = [load_contender(label, names, settings.seed) for label in trained]
        both[0].notes.append(f"trained by ours in {trained[both[0].label].run_dir}")
        both[1].notes.append(f"trained by Ultralytics in {trained[both[1].label].run_dir}")
        contenders = both + contenders
        notes += recipe_notes(recipe, device, recipe.workers, ultralytics_amp(recipe, device))
    index = load_split(source, settings.split, log=console.print)
    post = PostProcess(conf=settings.conf, iou=settings.iou, max_det=settings.max_det)
    rows = compare_models(contenders, index, data_yaml, settings, post, device, run_dir, trained, console.print)
    title = "Same-recipe head-to-head" if train_mode else "Model comparison"
    write_reports(run_dir, title, rows, settings, post, source, index, device, notes, data_yaml, command_line.overrides)
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    console.print(results_table(rows, title))
    console.print(f"results in {run_dir}")
    return run_dir


def train_both(
    recipe: Recipe,
    model_yaml: str,
    data: DictConfig,
    settings: CompareConfig,
    device: torch.device,
    data_yaml: Path,
    run_dir: Path,
    console: Console,
) -> dict[str, TrainedRun]:
    """Train ours, then Ultralytics', with ``recipe``; their ``best.pt`` paths, ours first. Ours runs
    on the ``train`` config of the recipe with the compare run's ``data`` node (resolved)."""
    from detector.tasks.train import run as train

    workers = recipe.workers  # Ultralytics' trainer itself turns this to 0 on a CPU
    train_cfg = compose("train", our_overrides(recipe, settings.imgsz, settings.device, workers, run_dir))
    train_cfg.data = OmegaConf.create(OmegaConf.to_container(data, resolve=True))
    validate(train_cfg)
    console.print(
        f"[bold]training ours[/bold] ({recipe.model}, {recipe.epochs} epochs) -> {run_dir / 'train' / 'ours'}"
    )
    ours = train_ours(lambda: train(train_cfg), int(train_cfg.train.epochs))
    amp = ultralytics_amp(recipe, device)
    args = ultralytics_train_args(
        recipe, data_yaml, settings.imgsz, ul.device_string(device), amp, workers, run_dir / "train"
    )
    console.print(f"[bold]training Ultralytics'[/bold] ({model_yaml}) -> {run_dir / 'train' / 'ultralytics'}")
    theirs = train_ultralytics(model_yaml, args)
    return {str(ours.weights): ours, str(theirs.weights): theirs}
