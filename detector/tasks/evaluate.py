"""``python scripts/evaluate.py``: COCO metrics of a checkpoint on a split, with the files and plots."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from detector.config import instantiate_node
from detector.config.schemas import EvaluateConfig
from detector.console import make_console, progress_report
from detector.data.build import load_split, val_dataset
from detector.device import autocast_dtype, check_compiler, compile_model, select_device
from detector.errors import ConfigError
from detector.eval.coco import EvalResult, evaluate_branches
from detector.eval.exported import evaluate_exported
from detector.eval.postprocess import PostProcess
from detector.eval.report import EvalSettings, check_names, results_table, write_outputs
from detector.export.runtime import is_exported, load_exported
from detector.interop.weights import load_weights
from detector.models.heads import use_branch
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    settings: EvaluateConfig = OmegaConf.to_object(cfg)
    if is_exported(settings.checkpoint):
        return run_exported(settings)
    console = make_console()
    device = select_device(settings.device)
    if settings.compile:
        check_compiler(device)
    model, meta = load_weights(settings.checkpoint)
    source = instantiate_node(settings.data, "data")
    check_names(meta["names"], settings.data.names, settings.checkpoint)
    with progress_report(console, f"checking {settings.split}") as report:
        index = load_split(source, settings.split, log=console.print, progress=report)
    post = PostProcess(conf=settings.conf, iou=settings.iou, max_det=settings.max_det, agnostic=settings.agnostic)
    amp = autocast_dtype(device, settings.amp, "amp")
    dataset = val_dataset(index, settings.imgsz)
    use_branch(model.head, settings.branch)
    branch = model.head.inference  # the main result; an end-to-end head's other branch is scored beside it
    branches = (branch, *(b for b in model.head.branches if b != branch))
    model = model.fuse().to(device)
    if settings.compile:  # the wrapper passes .head and .eval() on to the model
        model = compile_model(model, device)
    with progress_report(console, f"evaluating {settings.split}") as report:
        results = evaluate_branches(
            model, index, dataset, post, device, branches, settings.batch, settings.workers, amp, report
        )
    result = results.pop(branch)
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    recorded = EvalSettings(
        checkpoint=settings.checkpoint,
        split=settings.split,
        imgsz=settings.imgsz,
        conf=settings.conf,
        iou=settings.iou,
        max_det=settings.max_det,
        agnostic=settings.agnostic,
        branch=branch,
    )
    write_outputs(run_dir, result, index, recorded, plots=settings.plots, others=results)
    console.print(results_table(result, index))
    if results:
        for line in branch_lines(branch, result, results, selected_by(meta)):
            console.print(line)
    speed = ", ".join(f"{k} {v:.1f} ms" for k, v in result.speed.items())
    precision = f", {str(amp).removeprefix('torch.')} autocast" if amp is not None else ""
    fused = "fused, compiled (the first batches' inference includes compiling)" if settings.compile else "fused"
    console.print(
        f"speed per image: {speed} (imgsz {settings.imgsz}, batch {settings.batch}, {device}{precision}, {fused})"
    )
    console.print(f"results in {run_dir}")
    return run_dir


def run_exported(settings: EvaluateConfig) -> Path:
    """An exported model (``.onnx``, OpenVINO ``.xml`` or its folder) on its runtime, on the CPU, at the
    input size it was exported with; scored by the branch it was exported with."""
    console = make_console()
    if settings.compile:
        raise ConfigError(f"compile=true applies to PyTorch checkpoints: {settings.checkpoint} runs on its own runtime")
    bf16 = autocast_dtype(torch.device("cpu"), settings.amp, "amp") is not None
    model = load_exported(settings.checkpoint, throughput=True, bf16=bf16)
    branch = "one2one" if model.end2end else "one2many"
    if settings.branch is not None and settings.branch.value != branch:
        raise ConfigError(
            f"branch={settings.branch.value}: {settings.checkpoint} holds the {branch} branch only "
            f"(export the checkpoint with branch={settings.branch.value})"
        )
    source = instantiate_node(settings.data, "data")
    check_names(model.names, settings.data.names, settings.checkpoint)
    if settings.imgsz != model.imgsz:
        console.print(f"imgsz={model.imgsz}: the size {settings.checkpoint} was exported at")
    index = load_split(source, settings.split, log=console.print)
    post = PostProcess(conf=settings.conf, iou=settings.iou, max_det=settings.max_det, agnostic=settings.agnostic)
    dataset = val_dataset(index, model.imgsz)
    result = evaluate_exported(model, index, dataset, post, settings.batch, settings.workers)
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    recorded = EvalSettings(
        checkpoint=settings.checkpoint,
        split=settings.split,
        imgsz=model.imgsz,
        conf=settings.conf,
        iou=settings.iou,
        max_det=settings.max_det,
        agnostic=settings.agnostic,
        branch=branch,
    )
    write_outputs(run_dir, result, index, recorded, plots=settings.plots)
    console.print(results_table(result, index))
    speed = ", ".join(f"{k} {v:.1f} ms" for k, v in result.speed.items())
    console.print(f"speed per image: {speed} (imgsz {model.imgsz}, batch {settings.batch}, {model.description})")
    console.print(f"results in {run_dir}")
    return run_dir


BRANCH_NAMES = {"one2one": "end-to-end (one-to-one branch, top-k, no NMS)", "one2many": "one-to-many branch + NMS"}


def branch_lines(main: str, result: EvalResult, others: dict[str, EvalResult], chosen_by: str | None) -> list[str]:
    """How an end-to-end model's branches score; the table above is ``main``'s."""
    lines = []
    for name, r in {main: result, **others}.items():
        m = r.scores.metrics
        table = " (the table above)" if name == main else ""
        lines.append(f"{BRANCH_NAMES[name]}: mAP50-95 {m['mAP50-95']:.4f} mAP50 {m['mAP50']:.4f}{table}")
    if chosen_by:
        lines.append(chosen_by)
    return lines


def selected_by(meta: dict) -> str | None:
    """Which branch's validation chose the checkpoint during training, where its metadata says."""
    if meta.get("format") == "ultralytics":
        args = meta["ultralytics"].get("train_args") or {}
        if not args:
            return None
        branch = "one2one" if args.get("nms") is False or args.get("end2end") is True else "one2many"
        return f"Ultralytics' training chose this checkpoint by the {BRANCH_NAMES[branch]}'s fitness"
    train = meta.get("train") or {}
    head = (meta.get("model_config") or {}).get("head") or {}
    if not train:
        return None
    branch = head.get("inference") or ("one2one" if head.get("end2end") else "one2many")
    fitness = ((train.get("config") or {}).get("train") or {}).get("fitness", "mAP50-95")
    return f"our training chose best.pt by the {BRANCH_NAMES[branch]}'s {fitness} on its validation split"
