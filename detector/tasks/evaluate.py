"""``python scripts/evaluate.py``: COCO metrics of a checkpoint on a split, with the files and plots."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from detector.config import instantiate_node
from detector.config.schemas import EvaluateConfig
from detector.data.build import load_split, val_dataset
from detector.device import autocast_dtype, select_device
from detector.eval.coco import evaluate
from detector.eval.postprocess import PostProcess
from detector.eval.report import EvalSettings, check_names, results_table, write_outputs
from detector.interop.weights import load_weights
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    settings: EvaluateConfig = OmegaConf.to_object(cfg)
    console = Console()
    device = select_device(settings.device)
    model, meta = load_weights(settings.checkpoint)
    source = instantiate_node(settings.data, "data")
    check_names(meta["names"], settings.data.names, settings.checkpoint)
    index = load_split(source, settings.split, log=console.print)
    post = PostProcess(conf=settings.conf, iou=settings.iou, max_det=settings.max_det, agnostic=settings.agnostic)
    amp = autocast_dtype(device, settings.amp, "amp")
    dataset = val_dataset(index, settings.imgsz)
    result = evaluate(model.fuse().to(device), index, dataset, post, device, settings.batch, settings.workers, amp)
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    recorded = EvalSettings(
        checkpoint=settings.checkpoint,
        split=settings.split,
        imgsz=settings.imgsz,
        conf=settings.conf,
        iou=settings.iou,
        max_det=settings.max_det,
        agnostic=settings.agnostic,
    )
    write_outputs(run_dir, result, index, recorded, plots=settings.plots)
    console.print(results_table(result, index))
    speed = ", ".join(f"{k} {v:.1f} ms" for k, v in result.speed.items())
    precision = f", {str(amp).removeprefix('torch.')} autocast" if amp is not None else ""
    console.print(
        f"speed per image: {speed} (imgsz {settings.imgsz}, batch {settings.batch}, {device}{precision}, fused)"
    )
    console.print(f"results in {run_dir}")
    return run_dir
