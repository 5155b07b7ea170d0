"""``python scripts/benchmark.py``: ours against Ultralytics, one figure per part and device, a
table and ``runs/benchmark/<name>/benchmark.json``.

The parts (``parts=[train_step,loader,predict,val]``) run on the CPU and, where CUDA is present
(``device=all``), on the GPU as well; the loader runs once (its workers are CPU processes). Both
sides get the same weights, inputs and settings; :mod:`detector.tools.benchmark` holds how each
part drives and times them. This module reads the config, once, and wires the parts.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from detector.config import instantiate_node
from detector.config.schemas import BenchmarkConfig, BenchmarkPart, DeployRuntime
from detector.console import make_console
from detector.data.build import AugmentSettings, load_split, train_dataset
from detector.data.index import SplitIndex
from detector.data.sources import YoloSource
from detector.device import cpu_has_native_bf16, select_device
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.interop import ultralytics as ul
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine
from detector.tools.benchmark import deploy, loader, predict, train_step, val
from detector.tools.benchmark.figure import Figure
from detector.tools.benchmark.report import Report, deploy_table, results_table
from detector.tools.benchmark.weights import reference_weights
from detector.tools.timing import alternate


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    console = make_console()
    settings: BenchmarkConfig = OmegaConf.to_object(cfg)
    check_settings(settings)
    devices = benchmark_devices(settings.device)
    source = instantiate_node(cfg.data, "data")
    if not isinstance(source, YoloSource) or not Path(source.where).is_file():
        raise ConfigError(
            "the benchmark needs a dataset with an Ultralytics data.yaml (data=shapes, data=crowd, or data=yolo data.file=...)"
        )
    try:  # before anything is measured: its process-wide settings apply to both sides
        ul.require()
    except ImportError as err:
        raise ConfigError('ultralytics is not installed; the benchmark needs it: pip install -e ".[compare]"') from err

    threads = settings.threads or ul.cpu_threads()
    reference = reference_weights(settings.arch, settings.checkpoint, settings.seed, list(settings.data.names))
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    report = Report(run_dir / "benchmark.json", settings.arch, source.where, reference.described, threads, resolved)
    console.print(f"weights: {reference.described}")
    console.print(f"torch CPU threads for both sides: {threads}; results in {run_dir}")
    turns = partial(alternate, repeats=settings.repeats, warmup=settings.warmup, threads=threads, log=console.print)
    indexes: dict[str, SplitIndex] = {}

    def index(split: str) -> SplitIndex:
        if split not in indexes:
            indexes[split] = load_split(source, split, log=console.print)
        return indexes[split]

    make_optimizer = instantiate_node(cfg.optim, "optim")
    optimizer = OmegaConf.to_container(cfg.optim, resolve=True)  # its settings, for the report
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        checkpoint = reference.write_checkpoint(Path(tmp) / "weights.pt")
        s = settings
        branch = reference.ours().head.inference  # an end-to-end model (YOLO26): both sides predict by top-k

        def measure(part: BenchmarkPart, device: torch.device, dtype: torch.dtype | None = None) -> Figure:
            if part is BenchmarkPart.train_step:
                return train_step.measure(
                    s.train_step, reference, index("train"), make_optimizer, optimizer, device, turns, dtype
                )
            if part is BenchmarkPart.loader:
                augment = AugmentSettings(**instantiate_node(cfg.augment, "augment"))
                dataset = train_dataset(index("train"), augment, s.loader.imgsz, seed=s.seed, epochs=None)
                return loader.measure(s.loader, dataset, source.where, s.seed, turns)
            if part is BenchmarkPart.predict:
                post = PostProcess(s.predict.conf, s.predict.iou, s.predict.max_det, agnostic=False, multi_label=False)
                post = post.for_branch(branch)
                return predict.measure(s.predict, post, reference, checkpoint, device, run_dir, s.seed, turns, dtype)
            post = PostProcess(s.val.conf, s.val.iou, s.val.max_det).for_branch(branch)
            return val.measure(s.val, post, reference, source, index(s.val.split), device, run_dir, turns, dtype)

        def measure_deploy() -> None:
            post = PostProcess(s.deploy.conf, s.deploy.iou, s.deploy.max_det, agnostic=False, multi_label=False)
            post = post.for_branch(branch)
            for runtime in s.deploy.runtimes:
                if runtime is DeployRuntime.openvino_bf16 and not cpu_has_native_bf16():
                    console.print("deploy: openvino_bf16 left out (this CPU has no native bf16: AVX512-BF16 or AMX)")
                    continue
                console.print(f"[bold]deploy[/bold] on cpu: {runtime.value}")
                figures = deploy.measure(
                    runtime, s.deploy, post, reference, checkpoint, index(s.deploy.split), index("train"),
                    Path(source.where), Path(tmp) / "deploy", turns,
                )  # fmt: skip
                for figure in figures:
                    report.add(figure)
            report.extra["deploy_best"] = deploy.best_runtimes(report.figures)
            report.add_extra()

        once_done: set[BenchmarkPart] = set()  # the loader and deploy parts run on the CPU only, once
        for device in devices:
            if device.type == "cuda":
                torch.cuda.set_device(device)  # the timers synchronise the current device
            for part in settings.parts:
                if part in once_done:
                    continue
                if part is BenchmarkPart.deploy:
                    once_done.add(part)
                    measure_deploy()
                    continue
                if part is BenchmarkPart.loader:
                    once_done.add(part)
                console.print(f"[bold]{part.value}[/bold] on {'cpu' if part is BenchmarkPart.loader else device}")
                report.add(measure(part, device))
                if part is not BenchmarkPart.loader and device.type == "cpu" and s.cpu_bf16 and cpu_has_native_bf16():
                    console.print(f"[bold]{part.value}[/bold] on cpu, ours in bf16 autocast")
                    report.add(measure(part, device, torch.bfloat16))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    shutil.rmtree(run_dir / "ultralytics", ignore_errors=True)  # Ultralytics' (empty) save directories
    if any(not f.part.startswith("deploy") for f in report.figures):
        console.print(results_table(report.figures, settings.arch, reference.described))
    if BenchmarkPart.deploy in settings.parts:
        console.print(deploy_table(report.figures, settings.arch, reference.described, report.extra["deploy_best"]))
    console.print(f"wrote {report.path}")
    return run_dir


def check_settings(settings: BenchmarkConfig) -> None:
    """Values a schema cannot check, each as one ConfigError line."""
    parts = [p.value for p in settings.parts]
    if not parts or len(set(parts)) != len(parts):
        raise ConfigError(
            f"parts={parts}: name each of {', '.join(p.value for p in BenchmarkPart)} at most once, at least one"
        )
    if settings.repeats < 1:
        raise ConfigError(f"repeats={settings.repeats} must be >= 1")
    for key in ("warmup", "threads"):
        if getattr(settings, key) < 0:
            raise ConfigError(f"{key}={getattr(settings, key)} must be >= 0")
    for part in BenchmarkPart:
        node = getattr(settings, part.value)
        if node.imgsz < 32 or node.imgsz % 32:
            raise ConfigError(
                f"{part.value}.imgsz={node.imgsz} must be a positive multiple of 32 (the largest model stride)"
            )
        for key in ("batch", "batch_cuda", "steps", "batches", "calls", "int8_images"):
            if hasattr(node, key) and getattr(node, key) < 1:
                raise ConfigError(f"{part.value}.{key}={getattr(node, key)} must be >= 1")
        for key in ("workers", "warmup"):
            if hasattr(node, key) and getattr(node, key) < 0:
                raise ConfigError(f"{part.value}.{key}={getattr(node, key)} must be >= 0")

    runtimes = [r.value for r in settings.deploy.runtimes]
    if not runtimes or len(set(runtimes)) != len(runtimes):
        raise ConfigError(
            f"deploy.runtimes={runtimes}: name each of {', '.join(r.value for r in DeployRuntime)} at most once, "
            "at least one"
        )


def benchmark_devices(spec: str) -> list[torch.device]:
    """``all``: the CPU, and the first GPU where CUDA is present; anything else: that one device."""
    if spec.strip().lower() == "all":
        return [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])
    device = select_device(spec)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={spec}: the benchmark runs on cpu or cuda")
    return [device]
