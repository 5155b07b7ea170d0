"""Same-recipe head-to-head: our trainer and Ultralytics' on the same data, architecture, image
size, epochs, batch, optimizer settings, schedule, augmentation and seed.

Ours runs through ``train.py``'s task on the ``train`` config of :func:`our_overrides` (the compare
task composes and runs it); theirs through ``YOLO(<model yaml>).train(...)``
(:func:`detector.interop.ultralytics.train`). Each writes its own run directory; their ``best.pt``
is afterwards read with :func:`detector.interop.ultralytics_weights.read`, never with their loader.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from detector.config.models import model_config
from detector.config.schemas import CompareRecipeConfig
from detector.errors import ConfigError
from detector.interop import ultralytics as ul
from detector.tools.compare.contenders import ULTRALYTICS_YAML
from detector.tools.timing import clock
from detector.types import LossGains

# the recipe's loss gains are the defaults of both libraries
LOSS_GAINS = asdict(LossGains())
THEIR_MAP = "metrics/mAP50-95(B)"  # their results.csv column of validation mAP50-95


Recipe = CompareRecipeConfig  # one training recipe, given to both trainers (``recipe.*`` of configs/compare.yaml)


def _schedule(recipe: Recipe) -> str:
    return recipe.schedule.value


@dataclass
class TrainedRun:
    """What one trainer produced."""

    weights: Path  # best.pt
    run_dir: Path
    epochs: int
    train_images: int  # images seen by the optimizer over all epochs
    train_time_s: float  # time inside the training epochs (validation and setup excluded)
    wall_time_s: float  # the whole call: setup, epochs, per-epoch validation, final evaluation
    workers: int = 0  # loader workers the trainer used
    threads: int = 0  # torch CPU threads while it trained (0: not recorded)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch from 1, validation mAP50-95)

    @property
    def images_per_s(self) -> float:
        return self.train_images / max(self.train_time_s, 1e-9)


def our_overrides(recipe: Recipe, imgsz: int, device: str, workers: int, project: Path) -> list[str]:
    """The ``train.py`` overrides of the recipe (our run lands in ``<project>/train/ours``)."""
    return [
        f"model={recipe.model}",
        "augment=default",
        f"augment.close_mosaic={recipe.close_mosaic}",
        f"optim={recipe.optimizer.value}",
        f"optim.lr={recipe.lr}",
        f"optim.momentum={recipe.momentum}",
        "optim.nesterov=true",
        f"optim.weight_decay={recipe.weight_decay}",
        f"schedule={_schedule(recipe)}",
        f"schedule.final_lr_ratio={recipe.final_lr_ratio}",
        f"schedule.warmup_epochs={recipe.warmup_epochs}",
        f"schedule.warmup_momentum={recipe.warmup_momentum}",
        f"schedule.warmup_bias_lr={recipe.warmup_bias_lr}",
        f"train.epochs={recipe.epochs}",
        f"train.batch={recipe.batch}",
        f"train.nbs={recipe.nbs}",
        f"train.seed={recipe.seed}",
        f"train.deterministic={str(recipe.deterministic).lower()}",
        f"train.workers={workers}",
        f"train.amp={'null' if recipe.amp else 'false'}",
        f"train.patience={recipe.patience}",
        *(f"train.{k}={v}" for k, v in LOSS_GAINS.items()),
        "train.fitness=mAP50-95",
        "train.val=true",
        "logger=csv",
        f"imgsz={imgsz}",
        f"device={device}",
        f"project={project}",
        "name=ours",
        "exist_ok=true",
        *recipe.ours,
    ]


def train_ours(train: Callable[[], str | Path], epochs: int, workers: int, patience: int, threads: int) -> TrainedRun:
    """Train with our loop (``train()`` runs ``train.py``'s task and returns its run directory) on
    ``threads`` torch CPU threads (set before it: Ultralytics' device selection, in their trainer
    and validator, sets the process's count to theirs); images/s and the validation curve from the
    run's ``metrics.csv`` (training time of each epoch, our evaluator's mAP50-95 after it). A run that
    Ctrl-C or SIGTERM stopped early (our loop then returns normally) is a :class:`ConfigError`: it
    must not count as trained."""
    torch.set_num_threads(threads)
    start = clock()
    run_dir = Path(train())
    wall = clock() - start
    if not training_finished(run_dir / "weights" / "last.pt", epochs, patience):
        raise ConfigError(
            f"our training in {run_dir} stopped before its last epoch (interrupted): it does not count as "
            "trained; the same command again resumes the study (finished seeds are reused, this one retrained)"
        )
    images = seconds = 0.0
    curve = []
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            s = float(row["epoch_time_s"])
            seconds += s
            images += float(row["images_per_s"]) * s
            if row.get("mAP50-95"):
                curve.append((int(row["epoch"]) + 1, float(row["mAP50-95"])))  # ours counts epochs from 0
    weights = run_dir / "weights" / "best.pt"
    if not weights.is_file():
        raise ConfigError(f"our training in {run_dir} wrote no weights/best.pt")
    return TrainedRun(weights, run_dir, epochs, round(images), seconds, wall, workers, threads, curve)


def their_batches(recipe: Recipe, data_yaml: Path, imgsz: int, seed: int) -> Callable[[], Any]:
    """For ``recipe.our_loader=ultralytics``: makes Ultralytics' training loader at ``seed`` for our
    loop, mosaic closed for the recipe's last ``close_mosaic`` epochs, as their trainer closes it.
    Our side's ``recipe.ours`` may not change what their loader would ignore (augmentation, fraction)."""
    ignored = [o for o in recipe.ours if o.lstrip("+~").startswith(("augment", "train.fraction", "train.cache"))]
    if ignored:
        raise ConfigError(
            f"recipe.our_loader=ultralytics trains on Ultralytics' batches, which {', '.join(ignored)} would not "
            "change: drop it from recipe.ours"
        )
    close = recipe.epochs - recipe.close_mosaic if recipe.close_mosaic > 0 else None
    return lambda: ul.UltralyticsTrainingBatches(data_yaml, imgsz, recipe.batch, recipe.workers, seed, close)


def training_finished(last: Path, epochs: int, patience: int) -> bool:
    """Whether our run whose ``last.pt`` this is went through all ``epochs`` or stopped for ``patience``
    (its loop state, saved after every epoch and at an interrupt, says which)."""
    from detector.checkpoint import read_checkpoint

    if not last.is_file():
        return False
    state = read_checkpoint(last).get("train", {}).get("state", {})
    return state.get("epoch", 0) >= epochs or state.get("stale_epochs", 0) >= patience


def check_recipe_model(recipe: Recipe) -> str:
    """The Ultralytics YAML name of the recipe's model; only models both libraries build qualify.
    Also refuses a negative ``recipe.threads``, before any long work."""
    if recipe.threads < 0:
        raise ConfigError(f"recipe.threads={recipe.threads}: give a positive count, or 0 for the process's own")
    name = f"{recipe.model}.yaml"
    if not ULTRALYTICS_YAML.match(name):
        raise ConfigError(
            f"recipe.model={recipe.model}: the head-to-head needs a model both libraries build: "
            "yolov8n-x, yolo11n-x, yolo26n-x"
        )
    return name


def ultralytics_amp(recipe: Recipe, device: torch.device) -> bool | str:
    """Their ``amp`` for ours: bf16 autocast where ours uses it, fp16 with a scaler otherwise, off on CPU."""
    if not recipe.amp or device.type != "cuda":
        return False
    return "bf16" if torch.cuda.is_bf16_supported() else True


def ultralytics_train_args(
    recipe: Recipe, data_yaml: Path, imgsz: int, device: str, amp: bool | str, workers: int, project: Path
) -> dict[str, Any]:
    """``YOLO.train`` arguments of the recipe (their run lands in ``<project>/ultralytics``)."""
    return {
        "data": str(Path(data_yaml).resolve()),
        "epochs": recipe.epochs,
        "batch": recipe.batch,
        "imgsz": imgsz,
        "nbs": recipe.nbs,
        "optimizer": {"sgd": "SGD", "musgd": "MuSGD"}[recipe.optimizer.value],
        "lr0": recipe.lr,
        "lrf": recipe.final_lr_ratio,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "cos_lr": _schedule(recipe) == "cosine",
        "warmup_epochs": recipe.warmup_epochs,
        "warmup_momentum": recipe.warmup_momentum,
        "warmup_bias_lr": recipe.warmup_bias_lr,
        "close_mosaic": recipe.close_mosaic,
        "seed": recipe.seed,
        "deterministic": recipe.deterministic,
        "workers": workers,
        "device": device,
        "amp": amp,
        "patience": recipe.patience,
        **LOSS_GAINS,
        "pretrained": False,
        "cache": False,
        "rect": False,
        "fraction": 1.0,
        "single_cls": False,
        "val": True,
        "plots": False,
        "save": True,
        "save_period": -1,
        "project": str(Path(project).resolve()),  # absolute: a relative one lands under their own runs_dir
        "name": "ultralytics",
        "exist_ok": True,
        "verbose": False,
        # an end-to-end model (YOLO26): validate, and so choose best.pt, by the one-to-one branch as ours
        # does (their default is the one-to-many branch with NMS)
        **({"nms": False} if end_to_end(recipe) else {}),
        **ul.TRAIN_AUGMENT,
    }


def train_ultralytics(model_yaml: str, args: dict[str, Any]) -> TrainedRun:
    """``YOLO(model_yaml).train(**args)`` (a YAML name such as ``yolov8n.yaml``: built offline, random
    weights), timing each training epoch from their epoch callbacks; the validation curve from their
    ``results.csv`` (their validator's mAP50-95 after each epoch); the torch thread count as their
    trainer set it (read at the start of each epoch)."""
    epochs: list[tuple[int, float]] = []
    started: list[float] = []
    threads: set[int] = set()

    def epoch_start() -> None:
        threads.add(torch.get_num_threads())
        started.append(clock())

    start = clock()
    save_dir, workers = ul.train(model_yaml, args, epoch_start, lambda n: epochs.append((n, clock() - started[-1])))
    wall = clock() - start
    run_dir = _relative(save_dir)
    weights = run_dir / "weights" / "best.pt"
    if not weights.is_file():
        raise ConfigError(f"Ultralytics' training in {run_dir} wrote no weights/best.pt")
    images, seconds = sum(n for n, _ in epochs), sum(s for _, s in epochs)
    return TrainedRun(
        weights, run_dir, len(epochs), images, seconds, wall, workers, max(threads, default=0), their_curve(run_dir)
    )


def their_curve(run_dir: Path) -> list[tuple[int, float]]:
    """``(epoch, mAP50-95)`` per epoch from Ultralytics' ``results.csv`` (column ``metrics/mAP50-95(B)``,
    epochs counted from 1); empty when the file is missing."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        return []
    curve = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if row.get("epoch") and row.get(THEIR_MAP):
                curve.append((int(float(row["epoch"])), float(row[THEIR_MAP])))
    return curve


def recipe_notes(
    recipe: Recipe,
    device: torch.device,
    workers: int,
    amp: bool | str,
    seeds: Sequence[int] = (),
    threads: tuple[int, int] = (0, 0),
) -> list[str]:
    """What the two runs share, and what differs by design of the two trainers (``seeds``: every seed
    both trained at, default ``recipe.seed``; ``threads``: the torch CPU threads ours and theirs
    trained on, 0 for a count not recorded)."""
    seed = f"seed {recipe.seed}" if len(seeds) < 2 else f"seeds {', '.join(map(str, seeds))} (both sides at each)"
    ours_threads = "recipe.threads" if recipe.threads else "the count the run started with, what python train.py uses"
    swap = (
        [
            "Loader swap (recipe.our_loader=ultralytics): our trainer trained on Ultralytics' training loader and "
            "augmentation, not ours; both sides saw Ultralytics' kind of batches."
        ]
        if recipe.our_loader.value == "ultralytics"
        else []
    )
    return swap + [
        f"Matched: architecture {recipe.model} (the same layers and parameter "
        f"count in both libraries), data and splits, imgsz, {recipe.epochs} epochs, batch {recipe.batch}, nominal "
        f"batch {recipe.nbs} (gradient accumulation and weight-decay scaling), {_optimizer(recipe)} with Nesterov momentum "
        f"{recipe.momentum}, lr {recipe.lr}, weight decay {recipe.weight_decay} on weights only, {_schedule(recipe)} "
        f"decay to lr x {recipe.final_lr_ratio}, warmup {recipe.warmup_epochs} epochs (momentum from "
        f"{recipe.warmup_momentum}, bias lr from {recipe.warmup_bias_lr}), loss gains "
        f"{' / '.join(f'{k} {v}' for k, v in LOSS_GAINS.items())}, "
        f"gradient clipping at norm 10, EMA (decay 0.9999, tau 2000), augmentation (mosaic, scale 0.5-1.5, "
        f"translate 0.1, HSV 0.015/0.7/0.4, horizontal flip 0.5; Ultralytics' settings in "
        f"detector.interop.ultralytics.TRAIN_AUGMENT), mosaic off for the last {recipe.close_mosaic} epochs, "
        f"{seed}, deterministic={recipe.deterministic}, {workers} loader workers, "
        f"AMP {({'bf16': 'bf16', True: 'fp16'}).get(amp, 'off')} on {device.type}, best.pt chosen by validation mAP50-95{_branch_note(recipe)}, patience {recipe.patience}.",
        "Not matched: initial weights (each library draws its own from the seed); random streams of augmentation "
        "and shuffling; the augmentation implementations (albumentations for ours, Ultralytics' own for theirs); "
        "where a mosaic's three partner images come from (ours: the sample's own batch, or with "
        "augment.mosaic_window=N the N samples before it, null min(8 x batch, 1000) of them; theirs: a "
        "buffer of the last min(8 x batch, 1000) images it loaded); "
        "ours also steps at the end of every epoch with what is accumulated (Ultralytics carries it into the "
        "next epoch); the validation that picks best.pt "
        "(ours: our COCO evaluator, square letterbox; theirs: their validator with rectangular batches).",
        "Loader workers: both are given the same number; on a CPU Ultralytics' trainer replaces it by 0 (its own "
        "rule: it loads in the training process), ours uses the workers."
        + f" Torch CPU threads: ours {threads[0] or '?'} ({ours_threads}), Ultralytics {threads[1] or '?'} (its "
        "trainer sets cpu_count - 1, 1 to 8, on a CPU).",
        "train images/s: images through the optimizer over the time inside the training epochs (validation, "
        "setup and checkpoints excluded); wall time: the whole training call, including per-epoch validation "
        "and each trainer's final evaluation (ours also draws its plots). Ours trains first, in the same process: "
        "one-off start-up costs (first kernel selections, allocations) fall in its first epoch, which shows "
        "in runs of an epoch or two and vanishes over real ones.",
    ]


def _optimizer(recipe: Recipe) -> str:
    if recipe.optimizer.value == "musgd":
        return "MuSGD (Muon on conv weights, x 0.2, plus SGD; class branches at lr x 3)"
    return "SGD"


def end_to_end(recipe: Recipe) -> bool:
    """Whether the recipe's model has an end-to-end head (YOLO26), as its model config says."""
    return bool(model_config(recipe.model, 1)["head"].get("end2end"))


def _branch_note(recipe: Recipe) -> str:
    if not end_to_end(recipe):
        return ""
    return " of the end-to-end (one-to-one) branch (theirs with nms=False), each trained with its end-to-end loss"


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (as our run directories are)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
