"""``python scripts/inspect_layers.py``: the conv layers of a checkpoint or an untrained model.

The configuration is read here and only here; everything below takes plain arguments.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from detector.config.schemas import InspectConfig, ModelConfig
from detector.console import make_console
from detector.device import select_device
from detector.errors import ConfigError
from detector.images import save_png
from detector.inspect.layers import (
    find_conv,
    find_module,
    inspect_layers,
    select_layers,
)
from detector.inspect.report import FORMATS, layers_table, render, weights_table
from detector.inspect.stats import compare_weights
from detector.inspect.viz import feature_grid, feature_maps, kernel_grid, load_image
from detector.interop.weights import load_weights
from detector.models.zoo import instantiate_model
from detector.runs import make_run_dir, write_text_atomic
from detector.tasks.command_line import CommandLine

SUFFIXES = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown"}


def image_size(imgsz: int | list[int]) -> tuple[int, int]:
    """``640`` or ``[640]`` -> ``(640, 640)``; ``[H, W]`` -> ``(H, W)`` (validated by the schema check)."""
    if isinstance(imgsz, (list, tuple)):
        sizes = [int(s) for s in imgsz]
        return (sizes[0], sizes[-1])
    return int(imgsz), int(imgsz)


def load_model(checkpoint: str | None, model: ModelConfig | None) -> nn.Module:
    """The checkpoint's model, or an untrained one from a model config; float32, eval mode."""
    if checkpoint and model is not None:
        raise ConfigError(f"give checkpoint=PATH or model=NAME, not both (got checkpoint={checkpoint} and a model)")
    if checkpoint:
        built, _ = load_weights(checkpoint)
    elif model is not None:
        built = instantiate_model(model)
    else:
        raise ConfigError(
            "give checkpoint=PATH (our .pt or an Ultralytics .pt) or model=NAME (an untrained model, e.g. model=yolov8n)"
        )
    return built.float().eval()


def output_target(fmt: str | None, out: str | None) -> str | None:
    """The file format to write (None: terminal tables only); from ``format``, else from ``out``'s suffix."""
    if fmt == "table":
        if out:
            raise ConfigError(f"format=table prints to the terminal; for out={out} give format=csv, json or markdown")
        return None
    if fmt is None and out:
        fmt = SUFFIXES.get(Path(out).suffix.lower())
        if fmt is None:
            raise ConfigError(f"out={out}: cannot tell the format from its suffix; add format=csv, json or markdown")
    return fmt


def model_label(checkpoint: str | None, choices: dict[str, str]) -> str:
    """The checkpoint path, or ``model=NAME`` as chosen on the command line."""
    if checkpoint:
        return str(checkpoint)
    choice = choices.get("model")
    return f"model={choice} (untrained)" if choice else "untrained model"


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path | None:
    settings: InspectConfig = OmegaConf.to_object(cfg)
    console = make_console()
    size = image_size(settings.imgsz)
    fmt = output_target(None if settings.format is None else settings.format.value, settings.out)
    if settings.feature_maps and not settings.image:
        raise ConfigError("feature_maps=... needs image=PATH: the image whose feature maps are drawn")
    model = load_model(settings.checkpoint, settings.model)
    other = load_model(settings.compare_to, None) if settings.compare_to else None
    if settings.fuse:
        for m in (model, other):
            if m is not None and hasattr(m, "fuse"):
                m.fuse()
    kernels = settings.kernels
    if kernels not in (None, "", "first"):
        find_conv(model, kernels, "kernels")
    maps = list(settings.feature_maps)
    for path in maps:
        find_module(model, path, "feature_maps")
    image = load_image(settings.image, size) if settings.image else None

    device = select_device(settings.device)
    model.to(device)
    console.print(
        f"{model_label(settings.checkpoint, command_line.choices)}: {sum(p.numel() for p in model.parameters()):,} "
        f"parameters, input {size[0]}x{size[1]}, {device}"
    )
    report = inspect_layers(model, size, zero_tol=settings.zero_tol)
    kind = None if settings.kind is None else settings.kind.value
    layers = select_layers(report.layers, settings.layers, kind)
    changes = compare_weights(model, other) if other is not None else None
    console.print(layers_table(report, layers, console.width))
    console.print(weights_table(layers, {c.path: c for c in changes} if changes is not None else None, console.width))
    if changes is not None:
        only = [c.path for c in changes if c.shape is None]
        if only:
            console.print(f"only in {settings.compare_to}: {', '.join(only)}")

    run_dir: Path | None = None

    def folder() -> Path:
        nonlocal run_dir
        if run_dir is None:
            run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
        return run_dir

    written: list[Path] = []
    if fmt is not None:
        target = Path(settings.out) if settings.out else folder() / f"layers{FORMATS[fmt]}"
        written.append(write_text_atomic(target, render(fmt, report, layers, changes)))
    if kernels is not None:
        path = kernels if kernels not in ("", "first") else report.layers[0].path
        written.append(save_png(folder() / f"kernels_{path}.png", kernel_grid(find_conv(model, path, "kernels"))))
    if image is not None:
        paths = maps or [report.layers[0].path]
        for path, fmap in feature_maps(model, image, paths).items():
            written.append(save_png(folder() / f"features_{path}.png", feature_grid(fmap)))
    for path in written:
        console.print(f"wrote {path}")
    return run_dir
