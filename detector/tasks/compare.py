"""``python scripts/compare.py``: the one place the compare config is read.

``mode=eval`` compares the models listed in ``models=[...]``; ``mode=train`` first trains ours and
Ultralytics' with one recipe (:mod:`detector.tools.compare.headtohead`), then compares the two results
the same way, with training throughput and wall time added.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from detector.config import instantiate_node
from detector.config.schemas import CompareConfig
from detector.data.build import load_split, val_dataset
from detector.data.index import SplitIndex
from detector.data.loader import build_loader
from detector.device import select_device
from detector.errors import ConfigError
from detector.eval.coco import evaluate
from detector.eval.postprocess import PostProcess
from detector.models.summary import summary
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.tools.compare import contenders as cmp
from detector.tools.compare.headtohead import (
    Recipe,
    TrainedRun,
    check_recipe_model,
    our_train_config,
    recipe_notes,
    train_ours,
    train_ultralytics,
    ultralytics_amp,
    ultralytics_train_args,
)

Settings = CompareConfig  # how every model is evaluated and timed: the typed compare config itself


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    console = Console()
    device = select_device(cfg.device)
    settings: Settings = OmegaConf.to_object(cfg)
    mode = str(getattr(cfg.mode, "value", cfg.mode))
    if mode == "eval" and not cfg.models:
        raise ConfigError(
            "models is empty: give models=[PATH_OR_NAME,...] (our .pt, an Ultralytics .pt, "
            "an Ultralytics YAML name such as yolov8n.yaml, or one of our model configs)"
        )
    recipe: Recipe | None = settings.recipe if mode == "train" else None
    model_yaml = check_recipe_model(recipe) if recipe is not None else ""
    names = list(cfg.data.names)
    # every model is loaded (and every mistake reported) before any long work starts
    contenders = [cmp.load_contender(m, names, settings.seed) for m in cfg.models]
    for c in contenders:
        cmp.class_map(c.names, names, c.label)
    source = instantiate_node(cfg.data, "data")
    if recipe is not None and not cmp.ultralytics_can_read(source):
        raise ConfigError("mode=train needs data that Ultralytics can read (shapes or yolo), not COCO JSON")
    run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok)
    data_yaml = cmp.ultralytics_data_yaml(source, names, run_dir / "data.yaml")
    notes: list[str] = []
    trained: dict[str, TrainedRun] = {}
    if recipe is not None and data_yaml is not None:
        trained = train_both(recipe, model_yaml, cfg.data, cfg.imgsz, cfg.device, device, data_yaml, run_dir, console)
        both = [cmp.load_contender(label, names, settings.seed) for label in trained]
        both[0].notes.append(f"trained by ours in {trained[both[0].label].run_dir}")
        both[1].notes.append(f"trained by Ultralytics in {trained[both[1].label].run_dir}")
        contenders = both + contenders
        workers = recipe.workers
        notes += recipe_notes(recipe, device, workers, ultralytics_amp(recipe, device))
    index = load_split(source, settings.split, log=console.print)
    rows = compare_models(contenders, index, data_yaml, settings, device, run_dir, trained, console)
    title = "Same-recipe head-to-head" if mode == "train" else "Model comparison"
    write_reports(run_dir, title, rows, settings, source, index, device, notes, data_yaml, command_line.overrides)
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    console.print(results_table(rows, title))
    console.print(f"results in {run_dir}")
    return run_dir


def train_both(
    recipe: Recipe,
    model_yaml: str,
    data: DictConfig,
    imgsz: int,
    device_spec: str,
    device: torch.device,
    data_yaml: Path,
    run_dir: Path,
    console: Console,
) -> dict[str, TrainedRun]:
    """Train ours, then Ultralytics', with ``recipe``; their ``best.pt`` paths, ours first."""
    workers = recipe.workers  # Ultralytics' trainer itself turns this to 0 on a CPU
    train_cfg = our_train_config(recipe, data, imgsz, device_spec, workers, run_dir)
    console.print(
        f"[bold]training ours[/bold] ({recipe.model}, {recipe.epochs} epochs) -> {run_dir / 'train' / 'ours'}"
    )
    ours = train_ours(train_cfg)
    args = ultralytics_train_args(
        recipe,
        data_yaml,
        imgsz,
        cmp.ultralytics_device(device),
        ultralytics_amp(recipe, device),
        workers,
        run_dir / "train",
    )
    console.print(f"[bold]training Ultralytics'[/bold] ({model_yaml}) -> {run_dir / 'train' / 'ultralytics'}")
    theirs = train_ultralytics(model_yaml, args, device)
    return {str(ours.weights): ours, str(theirs.weights): theirs}


def compare_models(
    contenders: list[cmp.Contender],
    index: SplitIndex,
    data_yaml: Path | None,
    settings: Settings,
    device: torch.device,
    run_dir: Path,
    trained: dict[str, TrainedRun],
    console: Console,
) -> list[dict[str, Any]]:
    """Evaluate, measure and time every contender; write its own files under ``models/<slug>/``."""
    data_names = list(index.names)
    dataset = val_dataset(index, settings.imgsz)
    post = PostProcess(conf=settings.conf, iou=settings.iou, max_det=settings.max_det)
    sample = next(iter(build_loader(dataset, 1, shuffle=False, workers=0, distributed=False)))
    x = sample.images.to(device).float().div_(255)  # [1, 3, imgsz, imgsz]: the split's first image
    letterbox, orig_sizes = sample.letterbox.to(device), sample.orig_sizes.to(device)
    orig = tuple(int(v) for v in sample.orig_sizes[0])
    used: set[str] = set()
    rows = []
    for c in contenders:
        console.print(f"[bold]{c.label}[/bold] ({c.kind})")
        folder = run_dir / "models" / cmp.slug(c.label, used)
        keep = cmp.class_map(c.names, data_names, c.label)
        model = c.model.to(device).eval()
        scored = model if keep is None else cmp.restrict_classes(model, keep)
        result = evaluate(scored, index, dataset, post, device, settings.batch, settings.workers)
        info = summary(c.model, settings.imgsz)
        latency = cmp.median_latency_ms(
            cmp.ours_step(model, x, post, letterbox, orig_sizes),
            device,
            settings.latency_warmup,
            settings.latency_repeats,
        )
        notes = list(c.notes)
        if keep is not None:
            notes.append(
                f"classes matched by name: {len(keep)} of the model's {len(c.names)}; detections of the "
                "others dropped before NMS; params, GFLOPs and latency are of the whole model"
            )
        metrics: dict[str, Any] = {
            "model": c.label,
            "kind": c.kind,
            "our_evaluator": result.scores.metrics,
            "per_class_AP50-95": result.scores.per_class,
            "params": info["params"],
            "gflops": info["gflops"],
            "latency_ms": latency,
            "speed_ms_per_image": result.speed,
            "class_map": None if keep is None else {n: c.names[k] for n, k in zip(data_names, keep)},
        }
        their_latency = their_map = their_map50 = None
        if c.ultralytics is not None:
            theirs = c.ultralytics.to(device).eval()
            metrics["parity"] = cmp.parity(model, theirs, x)
            their_latency = cmp.median_latency_ms(
                cmp.ultralytics_step(theirs, x, settings.conf, settings.iou, settings.max_det, orig),
                device,
                settings.latency_warmup,
                settings.latency_repeats,
            )
            metrics["ultralytics_latency_ms"] = their_latency
            if not settings.ultralytics_val:
                notes.append("Ultralytics' validator not run (ultralytics_val=false)")
            elif data_yaml is None:
                notes.append("Ultralytics' validator not run: it cannot read COCO JSON data")
            else:
                validated = theirs if keep is None else cmp.restrict_ultralytics_classes(theirs, keep, data_names)
                if validated is None:
                    notes.append(
                        "Ultralytics' validator not run: its head could not be restricted to the data's classes"
                    )
                else:
                    their = cmp.ultralytics_validate(
                        validated,
                        data_yaml,
                        settings.split,
                        settings.imgsz,
                        settings.batch,
                        settings.conf,
                        settings.iou,
                        settings.max_det,
                        device,
                        folder / "ultralytics_val",
                        settings.ultralytics_rect,
                    )
                    metrics["ultralytics_validator"] = their
                    their_map, their_map50 = their["mAP50-95"], their["mAP50"]
                    if keep is not None:
                        notes.append(
                            "Ultralytics' validator ran on their module restricted to the data's classes "
                            "the same way (it matches classes by index, not by name)"
                        )
        run = trained.get(c.label)
        row = {
            "model": c.label,
            "kind": c.kind,
            "classes": len(data_names) if keep is None else f"{len(data_names)} of {len(c.names)}",
            "mAP50-95": result.scores.metrics["mAP50-95"],
            "mAP50": result.scores.metrics["mAP50"],
            "ultralytics_mAP50-95": their_map,
            "ultralytics_mAP50": their_map50,
            "params": info["params"],
            "gflops": info["gflops"],
            "latency_ms": latency,
            "ultralytics_latency_ms": their_latency,
            "train_images_per_s": None if run is None else run.images_per_s,
            "train_time_s": None if run is None else run.train_time_s,
            "wall_time_s": None if run is None else run.wall_time_s,
            "notes": "; ".join(notes),
        }
        if run is not None:
            metrics["training"] = {
                "run_dir": str(run.run_dir),
                "epochs": run.epochs,
                "train_images": run.train_images,
                "train_time_s": run.train_time_s,
                "images_per_s": run.images_per_s,
                "wall_time_s": run.wall_time_s,
            }
        cmp.write_model_outputs(folder, metrics, result.predictions)
        rows.append(row)
        c.model.cpu()
        if c.ultralytics is not None:
            c.ultralytics.cpu()
    return rows


def write_reports(
    run_dir: Path,
    title: str,
    rows: list[dict[str, Any]],
    settings: Settings,
    source: Any,
    index: SplitIndex,
    device: torch.device,
    notes: list[str],
    data_yaml: Path | None,
    overrides: tuple[str, ...],
) -> None:
    versions = f"torch {torch.__version__}"
    if any(r["kind"].startswith("ultralytics") for r in rows):
        versions += f", ultralytics {cmp.ultralytics_versions()}"
    shared = {
        "data": f"{cmp.data_where(source, settings.split)} ({settings.split}: {len(index)} images, {index.instances} instances, "
        f"{len(index.names)} classes)",
        "letterbox": f"longest side resized to {settings.imgsz}, padded to {settings.imgsz} x {settings.imgsz} "
        "(centred, grey 114)",
        "post-processing": f"conf {settings.conf}, IoU {settings.iou} (class-aware NMS, every class above conf "
        f"a candidate), max_det {settings.max_det}",
        "evaluation batch": settings.batch,
        "latency": f"batch 1 on {device} ({_device_name(device)}), fused, forward + decoding + NMS, median of "
        f"{settings.latency_repeats} after {settings.latency_warmup} warm-up runs, the split's first image",
        "Ultralytics' validator": (
            "not run"
            if not settings.ultralytics_val
            else f"DetectionValidator, rect={settings.ultralytics_rect}, same imgsz, batch, conf, "
            f"IoU, max_det, data.yaml {data_yaml}"
        ),
        "versions": versions,
        "command": " ".join(("python scripts/compare.py", *overrides)),
    }
    reading = [
        "mAP50-95 and mAP50 are from our evaluator (COCO metrics by faster-coco-eval: 101-point interpolated "
        "precision, at most 100 detections per image counted, crowd regions ignored) for every model; an "
        "Ultralytics model goes through our import of it, whose outputs agree with their module (largest "
        "differences in models/<name>/metrics.json, 'parity').",
        "Ultralytics val mAP50-95 / mAP50 are what Ultralytics' own validator reports for their module with the "
        "same weights and settings: its AP is the area under its own interpolated precision-recall curve and it "
        "keeps every detection up to max_det, so small differences from our figures come from the metric "
        "definitions, not from the models.",
        "Latency (our module): our fused model, decoding and our NMS. Latency (Ultralytics module): their fused "
        "DetectionModel, their NMS and box rescaling. Both on the same device and input, in the same process.",
        "Params count every parameter of the model as given (its full class list); GFLOPs are one forward pass "
        f"at {settings.imgsz} x {settings.imgsz} (2 x multiply-accumulates, as Ultralytics counts).",
        "A model trained on a superset of the data's classes is matched by class name: detections of classes "
        "the data lacks are dropped before NMS. A model lacking one of the data's classes is refused.",
        *notes,
    ]
    cmp.write_markdown(run_dir / "compare.md", title, rows, shared, reading)
    cmp.write_csv(run_dir / "compare.csv", rows)
    cmp.plot_map_vs_latency(run_dir / "map_vs_latency.png", rows, str(device))


TERMINAL_TITLES = {
    "ultralytics_mAP50-95": "U mAP50-95",
    "ultralytics_mAP50": "U mAP50",
    "latency_ms": "ms",
    "ultralytics_latency_ms": "U ms",
    "train_images_per_s": "img/s",
    "train_time_s": "train s",
    "wall_time_s": "wall s",
}


def results_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The table for the terminal: short titles (U: Ultralytics' validator / module), short names."""
    table = Table(
        title=title,
        title_justify="left",
        caption="U: Ultralytics' own validator / module; ms: latency per image, batch 1, fused",
        caption_justify="left",
    )
    columns = [(k, TERMINAL_TITLES.get(k, t)) for k, t in cmp.columns_in_use(rows) if k != "notes"]
    for key, text in columns:
        table.add_column(text, justify="left" if key in ("model", "kind") else "right")
    for row in rows:
        cells = [cmp.fmt(k, row.get(k)) for k, _ in columns]
        cells[0] = _short(row["model"])
        table.add_row(*cells)
    return table


def _short(label: str) -> str:
    """``runs/train/exp/weights/best.pt`` -> ``exp/best.pt``; other paths by file name."""
    path = Path(label)
    if path.parent.name == "weights" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{path.name}"
    return path.name or label


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
