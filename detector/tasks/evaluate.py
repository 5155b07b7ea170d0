"""``python scripts/evaluate.py``: COCO metrics of a checkpoint on a split, with the files and plots."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from detector.config import instantiate_node
from detector.data.build import load_split, val_dataset
from detector.device import autocast_dtype, select_device
from detector.eval.coco import evaluate
from detector.eval.postprocess import PostProcess
from detector.eval.report import EvalSettings, check_names, results_table, write_outputs
from detector.interop.weights import load_weights
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    console = Console()
    device = select_device(cfg.device)
    model, meta = load_weights(cfg.checkpoint)
    source = instantiate_node(cfg.data, "data")
    check_names(meta["names"], list(cfg.data.names), cfg.checkpoint)
    index = load_split(source, cfg.split, log=console.print)
    post = PostProcess(conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det, agnostic=cfg.agnostic)
    amp = autocast_dtype(device, bool(cfg.amp), "amp")
    result = evaluate(
        model.fuse().to(device), index, val_dataset(index, cfg.imgsz), post, device, cfg.batch, cfg.workers, amp
    )
    run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok)
    settings = EvalSettings(str(cfg.checkpoint), cfg.split, cfg.imgsz, cfg.conf, cfg.iou, cfg.max_det, cfg.agnostic)
    write_outputs(run_dir, result, index, settings, plots=cfg.plots)
    console.print(results_table(result, index))
    speed = ", ".join(f"{k} {v:.1f} ms" for k, v in result.speed.items())
    precision = f", {str(amp).removeprefix('torch.')} autocast" if amp is not None else ""
    console.print(f"speed per image: {speed} (imgsz {cfg.imgsz}, batch {cfg.batch}, {device}{precision}, fused)")
    console.print(f"results in {run_dir}")
    return run_dir
