"""``python scripts/benchmark.py``: ours against Ultralytics, one figure per part and device, a
table and ``runs/benchmark/<name>/benchmark.json``.

The parts (``parts=[train_step,loader,predict,val]``) run on the CPU and, where CUDA is present
(``device=all``), on the GPU as well; the loader runs once (its workers are CPU processes). Both
sides get the same weights, inputs and settings; see :mod:`detector.tools.benchmark.measure` for how
each side is driven and timed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich import box
from rich.console import Console
from rich.table import Table

from detector.checkpoint import save_checkpoint
from detector.config import compose, instantiate_node
from detector.data.build import AugmentSettings, load_split
from detector.data.sources import YoloSource
from detector.device import autocast_dtype, cpu_has_native_bf16, select_device
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.interop.weights import load_weights
from detector.models import build_model
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine
from detector.tools.benchmark import measure as bench
from detector.tools.benchmark.measure import Clock, Figure, alternate

PARTS = ("train_step", "loader", "predict", "val")
GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}  # the loss gains of train.yaml (they do not change the work)


@dataclass
class Context:
    """What every part needs: the configuration, the data, the reference weights, where to write."""

    cfg: DictConfig
    source: YoloSource
    weights: dict[str, torch.Tensor]  # our state_dict keys; line up one to one with Ultralytics'
    names: list[str]
    checkpoint: Path  # the reference weights as a checkpoint of ours (what our predictor loads)
    threads: int
    run_dir: Path
    log: Callable[[str], None]
    indexes: dict[str, Any] = field(default_factory=dict)

    def index(self, split: str) -> Any:
        if split not in self.indexes:
            self.indexes[split] = load_split(self.source, split, log=self.log)
        return self.indexes[split]

    def alternate(self, ours: bench.Measure, theirs: bench.Measure) -> dict[str, list[float]]:
        return alternate(ours, theirs, self.cfg.repeats, self.cfg.warmup, self.threads, self.log)


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    console = Console()
    check_settings(cfg)
    devices = benchmark_devices(str(cfg.device))
    parts = [str(getattr(p, "value", p)) for p in cfg.parts]
    source = instantiate_node(cfg.data, "data")
    if not isinstance(source, YoloSource) or not Path(source.where).is_file():
        raise ConfigError(
            "the benchmark needs a dataset with an Ultralytics data.yaml (data=shapes, or data=yolo data.file=...)"
        )
    try:
        import ultralytics  # noqa: F401  (before anything is measured: its process-wide settings apply to both sides)
    except ImportError as err:
        raise ConfigError('ultralytics is not installed; the benchmark needs it: pip install -e ".[compare]"') from err

    threads = int(cfg.threads) or bench.ultralytics_threads()
    weights, names, described = reference_weights(cfg, list(cfg.data.names))
    run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok)
    report = Report(run_dir / "benchmark.json", cfg, source.where, described, threads)
    console.print(f"weights: {described}")
    console.print(f"torch CPU threads for both sides: {threads}; results in {run_dir}")
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        checkpoint = write_reference_checkpoint(Path(tmp) / "weights.pt", str(cfg.arch), names, weights)
        ctx = Context(cfg, source, weights, names, checkpoint, threads, run_dir, console.print)
        loader_done = False
        for device in devices:
            for part in parts:
                if part == "loader" and loader_done:
                    continue
                loader_done |= part == "loader"
                console.print(f"[bold]{part}[/bold] on {'cpu' if part == 'loader' else device}")
                report.add(MEASURE[part](ctx, device))
                if part != "loader" and device.type == "cpu" and cfg.cpu_bf16 and cpu_has_native_bf16():
                    console.print(f"[bold]{part}[/bold] on cpu, ours in bf16 autocast")
                    report.add(MEASURE[part](ctx, device, torch.bfloat16))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    shutil.rmtree(run_dir / "ultralytics", ignore_errors=True)  # Ultralytics' (empty) save directories
    console.print(results_table(report.figures, str(cfg.arch), described))
    console.print(f"wrote {report.path}")
    return run_dir


# --------------------------------------------------------------------------- settings and weights


def check_settings(cfg: DictConfig) -> None:
    """Values a schema cannot check, each as one ConfigError line."""
    parts = [str(getattr(p, "value", p)) for p in cfg.parts]
    if not parts or len(set(parts)) != len(parts):
        raise ConfigError(f"parts={parts}: name each of {', '.join(PARTS)} at most once, at least one")
    if cfg.repeats < 1:
        raise ConfigError(f"repeats={cfg.repeats} must be >= 1")
    for key in ("warmup", "threads"):
        if cfg[key] < 0:
            raise ConfigError(f"{key}={cfg[key]} must be >= 0")
    for part in PARTS:
        node = cfg[part]
        if node.imgsz < 32 or node.imgsz % 32:
            raise ConfigError(f"{part}.imgsz={node.imgsz} must be a positive multiple of 32 (the largest model stride)")
        for key in ("batch", "batch_cuda", "steps", "batches", "calls"):
            if key in node and node[key] < 1:
                raise ConfigError(f"{part}.{key}={node[key]} must be >= 1")
        for key in ("workers", "warmup"):
            if key in node and node[key] < 0:
                raise ConfigError(f"{part}.{key}={node[key]} must be >= 0")


def benchmark_devices(spec: str) -> list[torch.device]:
    """``all``: the CPU, and the first GPU where CUDA is present; anything else: that one device."""
    if spec.strip().lower() == "all":
        return [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])
    device = select_device(spec)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={spec}: the benchmark runs on cpu or cuda")
    return [device]


def reference_weights(cfg: DictConfig, data_names: list[str]) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """The weights both sides get, the class names, and a line that says what they are.

    Without ``checkpoint``: Ultralytics' initialisation of ``<arch>.yaml`` (seeded), copied onto
    ours by position. With it: the checkpoint's weights (it must hold the architecture ``arch``
    names, since Ultralytics builds that from its own YAML)."""
    name = str(cfg.arch)
    if cfg.checkpoint:
        from detector.tasks.evaluate import check_names

        model, meta = load_weights(cfg.checkpoint)
        names = list(meta["names"])
        check_names(names, data_names, cfg.checkpoint)
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        described = f"checkpoint {cfg.checkpoint}, the same on both sides"
    else:
        names = data_names
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            theirs = build_ultralytics(name, len(names))
        keys = build_model(name, num_classes=len(names)).state_dict().keys()
        weights = dict(zip(keys, (t.detach().clone() for t in theirs.state_dict().values())))
        described = f"untrained: Ultralytics' initialisation of {name}.yaml (seed {cfg.seed}), the same on both sides"
    try:
        bench.our_model(name, len(names), weights)
        build_ultralytics(name, len(names), weights)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"the weights do not fit arch={name} on both sides: {str(err).splitlines()[0]}") from err
    return weights, names, described


def build_ultralytics(name: str, num_classes: int, weights: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    try:
        return bench.ultralytics_twin(name, num_classes, weights)
    except FileNotFoundError as err:
        raise ConfigError(
            f"arch={name}: Ultralytics has no {name}.yaml; benchmark a model both libraries build (yolov8n-x, yolo11n-x)"
        ) from err


def write_reference_checkpoint(path: Path, name: str, names: list[str], weights: dict[str, torch.Tensor]) -> Path:
    model_cfg = compose("model_only", [f"model={name}", f"data.num_classes={len(names)}"]).model
    return save_checkpoint(path, bench.our_model(name, len(names), weights), model_cfg, names)


# --------------------------------------------------------------------------- the parts


def device_label(device: torch.device, our_dtype: torch.dtype | None) -> str:
    """The device column: ``cpu``, or ``cpu, ours bf16`` for the opt-in bf16 figures."""
    return f"{device}, ours bf16" if our_dtype is not None else str(device)


def measure_train_step(ctx: Context, device: torch.device, our_dtype: torch.dtype | None = None) -> Figure:
    """``our_dtype``: ours autocasts to it (a CPU figure of the opt-in ``train.amp=true``), theirs not."""
    c = ctx.cfg.train_step
    batch = c.batch_cuda if device.type == "cuda" else c.batch
    images, targets = bench.fixed_batch(ctx.index("train"), c.imgsz, batch)
    make_optimizer = instantiate_node(ctx.cfg.optim, "optim")
    decay = float(ctx.cfg.optim.weight_decay)
    name, nc = str(ctx.cfg.arch), len(ctx.names)
    dtype = autocast_dtype(device, None if c.amp else False)  # our loop's default: CUDA only; given to both sides
    ours = bench.our_train_step(
        bench.our_model(name, nc, ctx.weights),
        images,
        targets,
        device,
        make_optimizer,
        decay,
        GAINS,
        our_dtype or dtype,
    )
    theirs = bench.ultralytics_train_step(
        bench.ultralytics_twin(name, nc, ctx.weights), images, targets, device, make_optimizer, decay, GAINS, dtype
    )
    clock = Clock(device)
    results = ctx.alternate(
        lambda: bench.throughput(ours, c.steps, batch, clock), lambda: bench.throughput(theirs, c.steps, batch, clock)
    )
    return Figure(
        "train_step",
        device_label(device, our_dtype),
        f"training step: forward, loss, backward, clipping, optimizer step, EMA ({name}, imgsz {c.imgsz}, batch {batch})",
        "images/s",
        "higher",
        results["ours"],
        results["ultralytics"],
        settings={
            "imgsz": c.imgsz,
            "batch": batch,
            "steps_per_repeat": c.steps,
            "targets": len(targets.classes),
            "optimizer": OmegaConf.to_container(ctx.cfg.optim, resolve=True),
            "loss_gains": GAINS,
            "autocast": {
                "ours": str(our_dtype or dtype or "off (float32)"),
                "ultralytics": str(dtype or "off (float32)"),
            },
        },
    )


def measure_loader(ctx: Context, device: torch.device) -> Figure:
    c, cfg = ctx.cfg.loader, ctx.cfg
    index = ctx.index("train")
    augment = AugmentSettings(**instantiate_node(cfg.augment, "augment"))
    loaders = bench.training_loaders(ctx.source, index, augment, c.imgsz, c.batch, c.workers, seed=int(cfg.seed))
    batches = len(loaders["ours"].loader)  # type: ignore[arg-type]
    if batches < c.warmup + c.batches:
        for timed in loaders.values():
            timed.stop()
        raise ConfigError(f"an epoch has {batches} batches: loader.warmup + loader.batches must not exceed it")

    def measure(side: str) -> bench.Measure:
        t = loaders[side]
        return lambda: bench.images_per_second(t.loader, t.count, c.warmup, c.batches, t.stop)

    results = ctx.alternate(measure("ours"), measure("ultralytics"))
    return Figure(
        "loader",
        "cpu",
        f"training loader, full augmentation (imgsz {c.imgsz}, batch {c.batch}, {c.workers} workers)",
        "images/s",
        "higher",
        results["ours"],
        results["ultralytics"],
        settings={
            "imgsz": c.imgsz,
            "batch": c.batch,
            "workers": c.workers,
            "batches_per_repeat": c.batches,
            "warmup_batches": c.warmup,
            "images": len(index),
        },
    )


def measure_predict(ctx: Context, device: torch.device, our_dtype: torch.dtype | None = None) -> Figure:
    c = ctx.cfg.predict
    path = Path(c.image).expanduser() if c.image else predict_image(ctx.run_dir, c.imgsz, int(ctx.cfg.seed))
    try:
        rgb, bgr = bench.image_pair(path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"predict.image={path}: {err}") from err
    post = PostProcess(conf=c.conf, iou=c.iou, max_det=c.max_det, agnostic=False, multi_label=False)
    ours = bench.our_predictor(ctx.checkpoint, device, c.imgsz, post, our_dtype)
    yolo = bench.yolo_with(str(ctx.cfg.arch), len(ctx.names), ctx.names, ctx.weights)
    theirs = bench.ultralytics_predict(yolo, device, c.imgsz, post, ctx.run_dir / "ultralytics" / "predict")
    clock = Clock(device)
    results = ctx.alternate(
        lambda: bench.latency_ms(lambda: ours(rgb), c.calls, clock),
        lambda: bench.latency_ms(lambda: theirs(bgr), c.calls, clock),
    )
    detections = {"ours": bench.detections_count(ours(rgb)), "ultralytics": bench.detections_count(theirs(bgr))}
    return Figure(
        "predict",
        device_label(device, our_dtype),
        f"prediction latency of one {rgb.shape[1]}x{rgb.shape[0]} image: letterbox, fused forward, NMS (imgsz {c.imgsz})",
        "ms",
        "lower",
        results["ours"],
        results["ultralytics"],
        settings={
            "image": str(path),
            "imgsz": c.imgsz,
            "calls_per_repeat": c.calls,
            "conf": c.conf,
            "iou": c.iou,
            "max_det": c.max_det,
        },
        notes={"detections": detections},
    )


def measure_val(ctx: Context, device: torch.device, our_dtype: torch.dtype | None = None) -> Figure:
    c = ctx.cfg.val
    batch = c.batch_cuda if device.type == "cuda" else c.batch
    workers = (
        c.workers if device.type == "cuda" else 0
    )  # Ultralytics' validator uses none on a CPU, whatever it is given
    name, nc = str(ctx.cfg.arch), len(ctx.names)
    post = PostProcess(conf=c.conf, iou=c.iou, max_det=c.max_det)
    index = ctx.index(c.split)
    ours = bench.our_validation(
        bench.our_model(name, nc, ctx.weights), ctx.source, c.split, c.imgsz, batch, workers, post, device, our_dtype
    )
    yolo = bench.yolo_with(name, nc, ctx.names, ctx.weights)
    theirs = bench.ultralytics_validation(
        yolo, ctx.source.where, c.split, c.imgsz, batch, workers, post, device, ctx.run_dir / "ultralytics" / "val"
    )
    clock = Clock(device)
    metrics: dict[str, dict[str, float]] = {}

    def timed(side: str, call: Callable[[], dict[str, float]]) -> bench.Measure:
        def measure() -> float:
            start = clock.now()
            metrics[side] = call()
            return clock.now() - start

        return measure

    results = ctx.alternate(timed("ours", ours), timed("ultralytics", theirs))
    return Figure(
        "val",
        device_label(device, our_dtype),
        f"validation of the '{c.split}' split, {len(index)} images: data, inference, NMS, metrics (imgsz {c.imgsz}, batch {batch})",
        "s",
        "lower",
        results["ours"],
        results["ultralytics"],
        settings={
            "split": c.split,
            "images": len(index),
            "imgsz": c.imgsz,
            "batch": batch,
            "workers": workers,
            "conf": c.conf,
            "iou": c.iou,
            "max_det": c.max_det,
        },
        notes={"metrics": metrics},
    )


MEASURE: dict[str, Callable[..., Figure]] = {
    "train_step": measure_train_step,
    "loader": measure_loader,
    "predict": measure_predict,
    "val": measure_val,
}


def predict_image(run_dir: Path, imgsz: int, seed: int) -> Path:
    """A generated shapes image of ``imgsz x imgsz`` pixels, kept in the run directory as ``predict.jpg``."""
    from detector.data.shapes import ensure_shapes

    with tempfile.TemporaryDirectory(prefix="shapes-") as tmp:
        data_yaml = ensure_shapes(Path(tmp) / "shapes", num_train=1, num_val=1, imgsz=imgsz, seed=seed)
        image = next((data_yaml.parent / "images" / "val").iterdir())
        target = run_dir / f"predict{image.suffix}"
        shutil.copyfile(image, target)
    return target


# --------------------------------------------------------------------------- output


class Report:
    """The figures so far, rewritten to ``benchmark.json`` (atomically) after each one."""

    def __init__(self, path: Path, cfg: DictConfig, data: str, weights: str, threads: int) -> None:
        import cv2
        import ultralytics

        import detector

        self.path = path
        self.figures: list[Figure] = []
        self.start = time.perf_counter()
        self.header = {
            "ratio_is": "ours / ultralytics, for every figure: above 1 means ours is faster for images/s, "
            "below 1 means ours is faster for ms and s",
            "weights": weights,
            "arch": str(cfg.arch),
            "data": data,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
            "torch_threads": threads,
            "versions": {
                "detector": detector.__version__,
                "torch": torch.__version__,
                "ultralytics": ultralytics.__version__,
                "python": platform.python_version(),
                "opencv": cv2.__version__,
            },
            "machine": machine(),
        }
        self.load_at_start = load_average()

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        head, rest = dict(list(self.header.items())[:4]), dict(list(self.header.items())[4:])
        content = {
            **head,
            "figures": [f.to_json() for f in self.figures],
            **rest,
            "seconds": round(time.perf_counter() - self.start, 1),
            "load_average": {
                "at_start": self.load_at_start,
                "now": load_average(),
                "cpus": os.cpu_count(),
                "note": "1, 5 and 15 minute averages of runnable processes",
            },
        }
        write_text_atomic(self.path, json.dumps(content, indent=2) + "\n")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def results_table(figures: list[Figure], model: str, weights: str) -> Table:
    caption = (
        "ours / ultralytics is the ratio of the medians: for images/s above 1 means ours is faster, "
        "for ms and s below 1 means ours is faster"
    )
    table = Table(
        title=f"ours vs Ultralytics: {model}, {weights}",
        caption=caption,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    for column in ("measurement", "device", "unit", "ours", "ultralytics", "ours /\nultralytics", "goal", "met"):
        table.add_column(column, justify="left" if column in ("measurement", "device", "unit") else "right")
    labels = {"train_step": "train step", "loader": "loader", "predict": "predict", "val": "val"}
    for f in figures:
        m = f.medians
        op, bound = f.goal
        table.add_row(
            labels[f.part],
            f.device,
            f.unit,
            number(m["ours"]),
            number(m["ultralytics"]),
            f"{f.ratio:.2f}",
            f"{op} {bound:.2f}",
            "[green]yes[/green]" if f.met else "[red]no[/red]",
        )
    return table


def number(value: float) -> str:
    """Three significant digits or more, no exponent: 0.123, 1.23, 12.3, 123, 1234."""
    return (
        f"{value:.0f}"
        if value >= 100
        else f"{value:.1f}"
        if value >= 10
        else f"{value:.2f}"
        if value >= 1
        else f"{value:.3f}"
    )
