"""``python train.py``: the one place the training config is read.

:func:`run` turns the composed config into typed objects (``TrainLoopConfig`` -> ``LoopSettings``, the
``schedule`` and ``logger`` ``_target_`` nodes -> their objects) and wires the loop's collaborators;
nothing below takes the config.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from detector.checkpoint import load_checkpoint, read_checkpoint
from detector.config import instantiate_node
from detector.config.schemas import TrainLoopConfig
from detector.console import make_console, progress_report
from detector.data.build import AugmentSettings, load_split, train_dataset, val_dataset
from detector.data.index import SplitIndex
from detector.data.loader import build_loader
from detector.device import autocast_dtype, check_compiler, compile_model, memory_format, select_device
from detector.errors import ConfigError, TrainingStopped
from detector.interop.weights import load_weights
from detector.losses import build_loss
from detector.models.summary import summary
from detector.models.zoo import instantiate_model
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.tasks.resume import resume_checkpoint, resumed_config, saved_run_ids
from detector.train.checkpointer import Checkpointer, RunRecord
from detector.train.distributed import Process, barrier, setup, teardown
from detector.train.ema import ModelEMA
from detector.train.faults import FAULT_ERRORS, Fault, describe_evaluation_fault, position
from detector.train.loggers import Logger, MultiLogger, open_loggers
from detector.train.loop import Loop, train_epochs
from detector.train.optim import build_optimizer
from detector.train.state import LoopSettings, LoopState
from detector.train.step import StepParts, StopTraining
from detector.train.surgery import copy_fitting, freeze
from detector.train.validation import Validator


def run(
    cfg: DictConfig, command_line: CommandLine = CommandLine(), batches: Callable[[], Iterable] | None = None
) -> Path:
    """Train from a composed, validated config (or resume a run); returns the run directory.
    ``batches``: makes the training loader in place of ours (the head-to-head's loader swap: an
    iterable of batches with ``images`` and ``targets`` per epoch, and ``set_epoch`` as ours has)."""
    console = make_console(stderr=True)
    payload = None
    if cfg.resume and cfg.resume.lower() != "false":
        checkpoint = resume_checkpoint(cfg.resume, cfg.project, cfg.task, cfg.name)
        payload = read_checkpoint(checkpoint)
        if "train" not in payload:
            raise ConfigError(f"{checkpoint} holds weights only, no training state: use train.init={checkpoint}")
        cfg = resumed_config(payload["train"]["config"], list(command_line.overrides))
        console.print(f"resuming {checkpoint} ({position(payload['train']['state'])})")
    device = select_device(cfg.device)
    process = setup(device)
    if process.distributed and device.type == "cuda":
        device = torch.device("cuda", process.local_rank)
    try:
        return _train(cfg, payload, device, process, console, batches)
    except StopTraining as err:
        raise ConfigError(str(err)) from err
    except Fault as fault:
        raise TrainingStopped(stopped_message(fault)) from None
    finally:
        teardown(process)


def objective(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> float | None:
    """``train.py``'s task: :func:`run`, then the run's fitness (:func:`run_fitness`), which Hydra hands
    to a sweeper as the value to optimise (``python train.py -m hparams_search=optuna``). None in the
    other processes of a torchrun run, which keep no checkpoint."""
    if command_line.job is not None and cfg.exist_ok:
        raise ConfigError("exist_ok=true in a sweep (-m) would make every job train in the same run directory")
    run_dir = run(cfg, command_line)
    if os.environ.get("RANK", "0") != "0":  # torchrun's other processes (see detector.train.distributed)
        return None
    fitness = run_fitness(run_dir)
    if command_line.job is not None:
        what = cfg.train.fitness if cfg.train.val else "minus the box loss (train.val=false)"
        make_console(stderr=True).print(f"job {command_line.job}: fitness {fitness:.6g}, {what}, in {run_dir}")
    return fitness


def run_fitness(run_dir: Path) -> float:
    """A training run's fitness: the best ``train.fitness`` over its epochs, the value that chose
    ``weights/best.pt`` (by default the EMA weights' validation mAP50-95; without validation, minus the
    box loss), as ``weights/last.pt`` records it."""
    return float(read_checkpoint(Path(run_dir) / "weights" / "last.pt")["best_fitness"])


def _train(
    cfg: DictConfig,
    payload: dict | None,
    device: torch.device,
    process: Process,
    console: Console,
    batches: Callable[[], Iterable] | None = None,
) -> Path:
    options: TrainLoopConfig = OmegaConf.to_object(cfg.train)
    settings = LoopSettings(**{f.name: getattr(options, f.name) for f in fields(LoopSettings)})
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # also what checkpoints keep
    if options.compile:
        check_compiler(device, "train.compile")
    torch.manual_seed(options.seed)
    if options.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    model = training_model(cfg.model, options, payload is None, process, device, console)
    train_index, val_index, loader = training_data(cfg.data, cfg.augment, cfg.imgsz, options, process, console, batches)
    parts = step_parts(model, cfg.optim, options, device, process)
    schedule = instantiate_node(plain["schedule"], "schedule")(epochs=options.epochs)

    if payload is not None:
        run_dir = Path(payload["train"]["run_dir"])
    else:
        run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok) if process.main else Path(".")
    loggers = MultiLogger()  # the other ranks log nothing
    if process.main:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        makers = {key: instantiate_node(node, f"logger.{key}") for key, node in plain["logger"].items()}
        run_ids = saved_run_ids(payload["train"].get("logger_run_id") if payload else None)
        loggers = open_loggers(makers, run_dir, run_ids, run_dir.name)
        loggers.log_config(plain)
        print_summary(model, cfg.imgsz, len(train_index), options.batch, process, device, run_dir, console)
    record = RunRecord(plain, plain["data"]["names"], cfg.imgsz, run_dir, loggers.run_ids)
    checkpointer = Checkpointer(run_dir / "weights", parts, loader, record, options.save_period, process.main)
    state = checkpointer.restore(payload) if payload is not None else LoopState()

    val_ds = val_dataset(val_index, cfg.imgsz, options.cache_images) if val_index is not None and process.main else None
    validate = None if val_ds is None else Validator(val_index, val_ds, device, console, options.batch, options.workers)
    parts.ddp = distributed_model(model, process, device)  # last: the EMA copy and the summary saw the bare model
    if options.compile:  # the batches go through the compiled module; the EMA and checkpoints keep the plain one
        parts.compiled = compile_model(parts.network, device, "train.compile")
        log = console.print if process.main else (lambda *a, **k: None)
        log("train.compile: the first batch compiles the model (minutes on a CPU), and so does a smaller last batch")
    why = train_epochs(
        Loop(parts, schedule, settings, loader, checkpointer, loggers, validate, console, process), state
    )
    barrier(process)
    if process.main:
        finish(run_dir, why, val_index, val_ds, cfg.imgsz, options, device, loggers, console)
    return run_dir


def training_model(
    model_cfg: DictConfig,
    options: TrainLoopConfig,
    fresh: bool,
    process: Process,
    device: torch.device,
    console: Console,
) -> nn.Module:
    """The model to train, on ``device``: built from its config, started from ``train.init``'s weights
    (a fresh run only), frozen as ``train.freeze`` says, with SyncBatchNorm under torchrun if asked."""
    model = instantiate_model(model_cfg)
    if options.init and fresh:
        source, _ = load_weights(options.init)
        copied, skipped = copy_fitting(model, source)
        console.print(
            f"train.init: {copied}/{copied + len(skipped)} tensors from {options.init}"
            + (f"; kept fresh: {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}" if skipped else "")
        )
    freeze(model, options.freeze)
    if process.distributed and options.sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(device, memory_format=memory_format(device))


def training_data(
    data_cfg: DictConfig,
    augment_cfg: DictConfig,
    imgsz: int,
    options: TrainLoopConfig,
    process: Process,
    console: Console,
    batches: Callable[[], Iterable] | None = None,
) -> tuple[SplitIndex, SplitIndex | None, DataLoader]:
    """The train split (its first ``train.fraction``) and its loader of this process's share of
    ``train.batch`` (or what ``batches()`` makes); the val split when ``train.val``."""
    log = console.print if process.main else (lambda *a, **k: None)
    source = instantiate_node(data_cfg, "data")
    with progress_report(console, "checking train") as report:
        train_index = load_split(source, "train", log=log, progress=report if process.main else None)
    val_index = None
    if options.val:
        with progress_report(console, "checking val") as report:
            val_index = load_split(source, "val", log=log, progress=report if process.main else None)
    if options.fraction < 1.0:
        train_index = train_index.head(max(1, round(len(train_index) * options.fraction)))
    if batches is not None:
        return train_index, val_index, batches()  # type: ignore[return-value]
    per_process = max(options.batch // process.world_size, 1)
    augment = AugmentSettings(**instantiate_node(augment_cfg, "augment"))
    dataset = train_dataset(train_index, augment, imgsz, options.seed, options.epochs, options.cache_images)
    loader = build_loader(dataset, per_process, shuffle=True, workers=options.workers, seed=options.seed)
    return train_index, val_index, loader


def step_parts(
    model: nn.Module, optim_cfg: DictConfig, options: TrainLoopConfig, device: torch.device, process: Process
) -> StepParts:
    """Optimizer (the ``optim`` node), grad scaler, EMA and loss for ``model``."""
    optimizer = build_optimizer(
        model, instantiate_node(optim_cfg, "optim"), optim_cfg.weight_decay, options.batch, options.nbs
    )
    amp_dtype = autocast_dtype(device, options.amp, "train.amp")
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = ModelEMA(model, options.ema_decay, options.ema_tau)
    criterion = build_loss(model.head, box=options.box, cls=options.cls, dfl=options.dfl)
    return StepParts(
        model, optimizer, ema, criterion, scaler, device, amp_dtype, memory_format(device), None, process.world_size
    )


def distributed_model(model: nn.Module, process: Process, device: torch.device) -> nn.Module | None:
    """``model`` wrapped by DistributedDataParallel under torchrun, else None."""
    if not process.distributed:
        return None
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def print_summary(
    model: nn.Module,
    imgsz: int,
    train_images: int,
    batch: int,
    process: Process,
    device: torch.device,
    run_dir: Path,
    console: Console,
) -> None:
    info = summary(model, imgsz)
    console.print(
        f"{info['params']:,} parameters, {info['gflops']:.1f} GFLOPs at {imgsz}; "
        f"{train_images} train images, batch {batch} on {process.world_size} process(es), "
        f"{device}; run directory {run_dir}"
    )


def finish(
    run_dir: Path,
    why: str,
    val_index: SplitIndex | None,
    val_ds: Any,
    imgsz: int,
    options: TrainLoopConfig,
    device: torch.device,
    loggers: Logger,
    console: Console,
) -> None:
    """Evaluate best.pt with plots into the run directory, hand the plots to the loggers."""
    from detector.eval.coco import evaluate
    from detector.eval.postprocess import PostProcess
    from detector.eval.report import EvalSettings, results_table, write_outputs

    weights = run_dir / "weights"
    best = weights / "best.pt"
    if why != "interrupted" and val_index is not None and best.is_file():
        model, _ = load_checkpoint(best)
        try:
            with progress_report(console, f"evaluating {best}") as report:
                result = evaluate(
                    model.to(device),
                    val_index,
                    val_ds,
                    PostProcess(),
                    device,
                    options.batch,
                    options.workers,
                    None,
                    report,
                )
        except FAULT_ERRORS as err:  # a killed loader worker or out of memory: the trained weights are all there
            failure = describe_evaluation_fault(err, device, options.workers, options.batch)
            if failure is None:
                raise
            loggers.finish()
            raise TrainingStopped(
                f"{why}: the trained weights are in {weights}, but the final evaluation of best.pt stopped: "
                f"{failure}. Evaluate it with: python scripts/evaluate.py checkpoint={best} and the run's data "
                f"options (its config.yaml)"
            ) from None
        write_outputs(run_dir, result, val_index, EvalSettings(str(best), "val", imgsz), plots=True)
        console.print(results_table(result, val_index))
    loggers.log_files(sorted(run_dir.glob("*.png")))
    loggers.finish()
    if why == "interrupted":
        console.print(f"interrupted: {weights / 'last.pt'} written. {resume_command(weights / 'last.pt')}")
    else:
        console.print(f"{why}: results in {run_dir}" + (f" (best: {best})" if best.is_file() else ""))


def resume_command(checkpoint: Path, overrides: Iterable[str] = ()) -> str:
    return f"Resume with: python train.py resume={checkpoint}" + "".join(f" {o}" for o in overrides)


def stopped_message(fault: Fault) -> str:
    """A fault's line: what happened, what was kept, and the command that resumes the run."""
    if fault.checkpoint is None:
        return f"{fault}. Start the run again once that is fixed"
    return f"{fault}. {resume_command(fault.checkpoint, fault.resume_overrides)}"
