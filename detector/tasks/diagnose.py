"""``python scripts/diagnose.py``: the one place the diagnose config is read.

Measures our trainer and Ultralytics' on one recipe (``recipe.*``, the recipe of ``scripts/compare.py
mode=train``) and seed: first the augmented batches each loader hands the model (with mosaic, and as
the last ``close_mosaic`` epochs see them), then, with ``probe=true``, both trainings under one
:class:`~detector.tools.diagnose.probe.TrainingProbe`. The parts live in :mod:`detector.tools.diagnose`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from detector.config import compose, instantiate_node, validate
from detector.config.schemas import DiagnoseConfig
from detector.console import make_console
from detector.data.build import AugmentSettings, load_split, train_dataset
from detector.data.loader import build_loader, set_epoch
from detector.device import select_device
from detector.errors import ConfigError
from detector.interop import ultralytics as ul
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.tools.compare.data import ultralytics_can_read, ultralytics_data_yaml
from detector.tools.compare.headtohead import (
    check_recipe_model,
    our_overrides,
    recipe_notes,
    ultralytics_amp,
    ultralytics_train_args,
)
from detector.tools.diagnose import report
from detector.tools.diagnose.batches import BatchStats, collect, count_sources, our_batches, record_our_loads
from detector.tools.diagnose.initial import initial_differences
from detector.tools.diagnose.probe import TrainingProbe
from detector.train.ema import ModelEMA

EMA_POINTS = (1, 10, 100, 1000)
SOURCE_BATCHES = 16  # batches whose source images are counted (in-process loaders: slower)


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    threads = torch.get_num_threads()  # before anything of Ultralytics' sets its own: what train.py would use
    console = make_console()
    settings: DiagnoseConfig = OmegaConf.to_object(cfg)
    recipe = settings.recipe
    model_yaml = check_recipe_model(recipe)
    device = select_device(settings.device)
    source = instantiate_node(cfg.data, "data")
    if not ultralytics_can_read(source):
        raise ConfigError("diagnose needs data that Ultralytics can read (shapes, crowd or yolo), not COCO JSON")
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    data_yaml = ultralytics_data_yaml(source, list(settings.data.names), run_dir / "data.yaml")
    assert data_yaml is not None  # ultralytics_can_read
    train_cfg = compose("train", our_overrides(recipe, settings.imgsz, settings.device, recipe.workers, run_dir))
    train_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    validate(train_cfg)

    console.print(f"[bold]augmented batches[/bold]: {settings.batches} per trainer, of the first and the last epoch")
    stats = augmented_batches(settings, source, train_cfg, data_yaml)
    initial = initial_differences(recipe.model, len(settings.data.names), recipe.seed)
    content: dict[str, Any] = {"batches": {k: s.summary() for k, s in stats.items()}, "initial_weights": initial}
    sections = [
        f"# Training diagnostics: ours beside Ultralytics {ul.version()}\n",
        "Recipe (both trainers): "
        + " ".join(recipe_notes(recipe, device, recipe.workers, ultralytics_amp(recipe, device))[:1]),
        "\n## Augmented training batches\n",
        f"{settings.batches} batches of {recipe.batch} per column (seed {recipe.seed}), as the first and the last "
        f"epoch see them (mosaic is off for the last {recipe.close_mosaic} of {recipe.epochs} epochs).\n",
        report.batch_section(stats),
        f"\n![boxes]({report.plot_boxes(run_dir / 'boxes.png', stats).name})\n",
        "\n## Initial weights\n",
        report.initial_section(initial),
    ]
    if settings.probe:
        our_threads = recipe.threads or threads
        probe, epochs = train_both(
            recipe, model_yaml, train_cfg, settings, device, data_yaml, run_dir, console, our_threads
        )
        ema = ema_decays(train_cfg, probe)
        content.update(
            {
                "probe": {side: rec.summary() for side, rec in probe.records.items()},
                "ema_decay": ema,
                "epochs": epochs,
                "best_epoch": {side: report.best_epoch(rows) for side, rows in epochs.items()},
            }
        )
        sections += [
            "\n## Optimizer, schedule and EMA\n",
            report.schedule_section(probe.records, ema),
            f"\n![schedule]({report.plot_schedule(run_dir / 'schedule.png', probe.records).name})\n",
            "\n## Assigner, BatchNorm, gradients\n",
            probe_table(probe),
            "\n## Per epoch\n",
            report.epochs_section(epochs),
            f"\n![epochs]({report.plot_epochs(run_dir / 'epochs.png', epochs).name})\n",
        ]
    report.write(run_dir, content, "\n".join(sections) + "\n")
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    console.print(f"results in {run_dir / 'diagnose.md'}")
    return run_dir


def augmented_batches(
    settings: DiagnoseConfig, source: Any, train_cfg: DictConfig, data_yaml: Path
) -> dict[str, BatchStats]:
    """Statistics of ``settings.batches`` batches from each loader, with mosaic and closed."""
    recipe = settings.recipe
    index = load_split(source, "train")
    augment = AugmentSettings(**instantiate_node(train_cfg.augment, "augment"))
    dataset = train_dataset(index, augment, settings.imgsz, recipe.seed, recipe.epochs)
    loader = build_loader(dataset, recipe.batch, shuffle=True, workers=recipe.workers, seed=recipe.seed)
    stats: dict[str, BatchStats] = {}
    closes = recipe.epochs - recipe.close_mosaic if recipe.close_mosaic > 0 else recipe.epochs
    for phase, epoch in (("first epoch", 0), ("last epoch", recipe.epochs - 1)):
        mosaic = epoch < closes  # both trainers' rule: mosaic off from epoch `closes` on
        phase = f"{phase} ({'mosaic' if mosaic else 'no mosaic'})"
        set_epoch(loader, epoch)
        stats[f"ours {phase}"] = collect(our_batches(loader), settings.batches)
        theirs = ul.ultralytics_train_loader(
            data_yaml, settings.imgsz, recipe.batch, recipe.workers, seed=recipe.seed, mosaic=mosaic
        )
        stats[f"ultralytics {phase}"] = collect(map(ul.batch_targets, theirs), settings.batches)
        theirs.reset()  # shuts its workers down
        if mosaic:  # where each batch's images come from: loaded in this process, to see every load
            count = min(settings.batches, SOURCE_BATCHES)
            solo = build_loader(dataset, recipe.batch, shuffle=True, workers=0, seed=recipe.seed)
            set_epoch(solo, epoch)
            count_sources(solo, record_our_loads(dataset), count, stats[f"ours {phase}"])
            theirs = ul.ultralytics_train_loader(data_yaml, settings.imgsz, recipe.batch, 0, seed=recipe.seed)
            count_sources(theirs, ul.record_loads(theirs.dataset), count, stats[f"ultralytics {phase}"])
            theirs.reset()
    return stats


def train_both(
    recipe: Any,
    model_yaml: str,
    train_cfg: DictConfig,
    settings: DiagnoseConfig,
    device: Any,
    data_yaml: Path,
    run_dir: Path,
    console: Console,
    threads: int,
) -> tuple[TrainingProbe, dict[str, list[dict[str, float]]]]:
    """Train ours, then Ultralytics', under one probe (ours on ``threads`` torch CPU threads, theirs
    on what their trainer sets); their per-epoch rows."""
    from detector.tasks.train import run as train

    args = ultralytics_train_args(
        recipe,
        data_yaml,
        settings.imgsz,
        ul.device_string(device),
        ultralytics_amp(recipe, device),
        recipe.workers,
        run_dir / "train",
    )
    with TrainingProbe() as probe:
        probe.side = "ours"
        torch.set_num_threads(threads)
        console.print(
            f"[bold]training ours[/bold] under the probe ({threads} torch threads) -> {run_dir / 'train' / 'ours'}"
        )
        ours = Path(train(train_cfg))
        probe.side = "ultralytics"
        console.print(f"[bold]training Ultralytics'[/bold] under the probe -> {run_dir / 'train' / 'ultralytics'}")
        theirs, _ = ul.train(model_yaml, args, lambda: None, lambda n: None)
    epochs = {
        "ours": report.read_epochs(ours / "metrics.csv", "ours"),
        "ultralytics": report.read_epochs(theirs / "results.csv", "ultralytics"),
    }
    return probe, epochs


def ema_decays(train_cfg: DictConfig, probe: TrainingProbe) -> dict[str, dict[str, float]]:
    """The decay each trainer's EMA applies at a few update numbers and at its last update (one
    update per optimizer step in both)."""
    ours = ModelEMA(nn.Identity(), float(train_cfg.train.ema_decay), float(train_cfg.train.ema_tau))
    out = {}
    for side, decay in (("ours", ours.decay_at), ("ultralytics", ul.ema_decay)):
        steps = len(probe.records[side].steps) if side in probe.records else 0
        out[side] = {str(u): decay(u) for u in (*EMA_POINTS, steps)}
    return out


def probe_table(probe: TrainingProbe) -> str:
    keys = [
        "positives_per_gt",
        "gt_without_positive",
        "positive_iou",
        "small_positives_per_gt",
        "small_gt_without_positive",
        "small_positive_iou",
        "grad_norm_median",
        "grad_norm_clipped_fraction",
        "batchnorm",
    ]
    summaries = {side: rec.summary() for side, rec in probe.records.items()}
    rows = [[k, *(summaries[s].get(k, "-") for s in summaries)] for k in keys]
    return report.table(["", *summaries], rows) + (
        "\n\nPositives: points the task-aligned assigner gave each ground-truth box over all training batches "
        "(small: boxes under 16 px), IoU of their predicted boxes with it. Gradient norm: before clipping at 10."
    )
