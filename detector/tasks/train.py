"""``python train.py``: the one place the training config is read."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from torch import nn

from detector.checkpoint import checkpoint_payload, load_checkpoint, read_checkpoint, write_checkpoint
from detector.config import describe_error, instantiate_node, validate
from detector.config.schemas import _SCHEMAS, TrainConfig
from detector.data.build import build_source, load_split, train_dataset, val_dataset
from detector.data.loader import build_loader
from detector.device import autocast_dtype, memory_format, select_device
from detector.errors import ConfigError
from detector.interop.weights import load_weights
from detector.losses import DetectionLoss
from detector.models.summary import summary
from detector.models.zoo import instantiate_model
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.train.distributed import Process, barrier, setup, teardown
from detector.train.ema import ModelEMA
from detector.train.loop import (
    Collaborators,
    LoopState,
    StopTraining,
    make_validate,
    restore_rng,
    rng_state,
    train_epochs,
)
from detector.train.optim import build_optimizer
from detector.train.surgery import copy_fitting, freeze

RESUMABLE = ("train.", "device", "logger.")  # what a resumed run may change on the command line


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    """Train from a composed, validated config (or resume a run); returns the run directory."""
    console = Console(stderr=True)
    payload = None
    resume = cfg.resume
    if resume:
        payload = read_checkpoint(resume)
        if "train" not in payload:
            raise ConfigError(f"{resume} holds weights only, no training state: use train.init={resume}")
        cfg = resumed_config(payload["train"]["config"], list(command_line.overrides))
    device = select_device(cfg.device)
    process = setup(device)
    if process.distributed and device.type == "cuda":
        device = torch.device("cuda", process.local_rank)
    try:
        return _train(cfg, payload, resume, device, process, console)
    except StopTraining as err:
        raise ConfigError(str(err)) from err
    finally:
        teardown(process)


def _train(
    cfg: DictConfig, payload: dict | None, resume: str | None, device: torch.device, process: Process, console: Console
) -> Path:
    loop = cfg.train
    torch.manual_seed(loop.seed)
    if loop.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    model = instantiate_model(cfg.model)
    if loop.init and payload is None:
        source, _ = load_weights(loop.init)
        copied, skipped = copy_fitting(model, source)
        console.print(
            f"train.init: {copied}/{copied + len(skipped)} tensors from {loop.init}"
            + (f"; kept fresh: {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}" if skipped else "")
        )
    freeze(model, loop.freeze)
    if process.distributed and loop.sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=memory_format(device))

    source = build_source(cfg.data)
    log = console.print if process.main else (lambda *a, **k: None)
    train_index = load_split(source, "train", log=log)
    val_index = load_split(source, "val", log=log) if loop.val else None
    if loop.fraction < 1.0:
        train_index = train_index.head(max(1, round(len(train_index) * loop.fraction)))
    per_process = max(loop.batch // process.world_size, 1)
    dataset = train_dataset(train_index, cfg.augment, cfg.imgsz, loop.seed, loop.epochs, loop.cache_images)
    loader = build_loader(dataset, per_process, shuffle=True, workers=loop.workers, seed=loop.seed, drop_last=False)

    optimizer = build_optimizer(
        model, instantiate_node(cfg.optim, "optim"), cfg.optim.weight_decay, loop.batch, loop.nbs
    )
    plain_config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    schedule = instantiate_node(OmegaConf.create(plain_config["schedule"]), "schedule")(epochs=loop.epochs)
    amp_dtype = autocast_dtype(device, loop.amp, "train.amp")
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = ModelEMA(model, loop.ema_decay, loop.ema_tau)
    criterion = DetectionLoss(model.num_classes, model.head.reg_max, box=loop.box, cls=loop.cls, dfl=loop.dfl)
    parts = Collaborators(model, optimizer, schedule, ema, criterion, scaler, amp_dtype, memory_format(device))

    state = LoopState()
    if payload is not None:
        t = payload["train"]
        model.load_state_dict(t["raw_model"])
        optimizer.load_state_dict(t["optimizer"])
        scaler.load_state_dict(t["scaler"])
        ema.load_state_dict({"model": payload["model"], "updates": t["ema_updates"]})
        state = LoopState(**t["state"])
        restore_rng(t["rng"], loader.generator)
        if state.iteration:
            loader.sampler.set_epoch(state.epoch, start=state.iteration * per_process)
            dataset.set_epoch(state.epoch)
        run_dir = Path(payload["train"]["run_dir"])
    else:
        run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok) if process.main else Path(".")

    loggers = None
    if process.main:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        run_id = payload["train"].get("logger_run_id") if payload else None
        make_loggers = instantiate_node(OmegaConf.create(plain_config["logger"]), "logger")
        loggers = make_loggers(run_dir, run_id=run_id, name=cfg.name)
        loggers.log_config(plain_config)
        info = summary(model, cfg.imgsz)
        console.print(
            f"{info['params']:,} parameters, {info['gflops']:.1f} GFLOPs at {cfg.imgsz}; "
            f"{len(train_index)} train images, batch {loop.batch} on {process.world_size} process(es), "
            f"{device}; run directory {run_dir}"
        )

    weights = run_dir / "weights"

    def save(s: LoopState, which: str) -> None:
        if not process.main:
            return
        ckpt = checkpoint_payload(
            ema.module,
            plain_config["model"],
            list(cfg.data.names),
            imgsz=cfg.imgsz,
            epoch=s.epoch,
            best_fitness=s.best_fitness,
            train={
                "raw_model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "ema_updates": ema.updates,
                "state": asdict(s),
                "rng": rng_state(loader.generator),
                "config": plain_config,
                "logger_run_id": loggers.run_id if loggers else None,
                "run_dir": str(run_dir.resolve()),
            },
        )
        write_checkpoint(weights / "last.pt", ckpt)
        if which == "best":
            write_checkpoint(weights / "best.pt", ckpt)
        if loop.save_period > 0 and which != "interrupt" and s.epoch % loop.save_period == 0:
            write_checkpoint(weights / f"epoch{s.epoch}.pt", ckpt)

    validate = None
    val_ds = None
    if val_index is not None and process.main:
        val_ds = val_dataset(val_index, cfg.imgsz, loop.cache_images)
        validate = make_validate(val_index, val_ds, loop, device, console)

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        if loggers is not None:
            loggers.log_epoch(epoch, row)

    why = train_epochs(parts, state, loader, validate, save, log_epoch, loop.epochs, loop, process, device, console)
    barrier(process)
    if process.main:
        finish(run_dir, weights, why, val_index, val_ds, cfg, device, loggers, console)
    return run_dir


def finish(run_dir, weights, why, val_index, val_ds, cfg, device, loggers, console) -> None:
    """Evaluate best.pt with plots into the run directory, hand the plots to the loggers."""
    from detector.eval.coco import evaluate
    from detector.eval.postprocess import PostProcess
    from detector.eval.report import EvalSettings, results_table, write_outputs

    best = weights / "best.pt"
    if why != "interrupted" and val_index is not None and best.is_file():
        model, _ = load_checkpoint(best)
        result = evaluate(
            model.to(device), val_index, val_ds, PostProcess(), device, cfg.train.batch, cfg.train.workers
        )
        write_outputs(run_dir, result, val_index, EvalSettings(str(best), "val", cfg.imgsz), plots=True)
        console.print(results_table(result, val_index))
    if loggers is not None:
        loggers.log_files(sorted(run_dir.glob("*.png")))
        loggers.finish()
    if why == "interrupted":
        console.print(
            f"interrupted: {weights / 'last.pt'} written. Resume with: python train.py resume={weights / 'last.pt'}"
        )
    else:
        console.print(f"{why}: results in {run_dir}" + (f" (best: {best})" if best.is_file() else ""))


def resumed_config(saved: dict, overrides: list[str]) -> DictConfig:
    """The saved config with the command line's ``train.*``, ``device`` and ``logger.*`` values on
    top, read by Hydra's override parser (``resume=`` itself is skipped); anything else is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    saved = upgraded(saved)
    cfg = OmegaConf.structured(TrainConfig)
    cfg.logger = OmegaConf.structured(schema_of("logger", saved["logger"]))  # the saved option's own keys
    try:
        cfg = OmegaConf.merge(cfg, saved)
        for override in OverridesParser.create().parse_overrides(overrides):
            key = override.key_or_group
            if key == "resume":
                continue
            if not key.startswith(RESUMABLE) or override.is_sweep_override():
                raise ConfigError(
                    f"{override.input_line}: a resumed run keeps its model, data and augmentation; only "
                    "train.*, device and logger.* can change, one value each"
                )
            OmegaConf.update(cfg, key, None if override.is_delete() else override.value(), merge=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(describe_error(err)) from err
    cfg.resume = None
    validate(cfg)
    return cfg


def schema_of(group: str, node: dict) -> type:
    """The schema registered for a saved ``group`` node, found by its ``_target_``."""
    for schema in _SCHEMAS[f"schema/{group}"].values():
        if schema._target_ == node.get("_target_"):
            return schema
    raise ConfigError(f"{group}._target_={node.get('_target_')!r} is none of the {group} options")


def upgraded(saved: dict) -> dict:
    """A config saved before ``schedule`` and ``logger`` were ``_target_`` nodes (``schedule.shape``,
    ``logger.backend``), rewritten as the option it named."""
    saved = dict(saved)
    for group, name_key in (("schedule", "shape"), ("logger", "backend")):
        node = dict(saved.get(group) or {})
        if name_key in node:
            schema = _SCHEMAS[f"schema/{group}"][str(node.pop(name_key))]
            keys = {f.name for f in fields(schema)}
            saved[group] = {"_target_": schema._target_, **{k: v for k, v in node.items() if k in keys}}
    return saved
