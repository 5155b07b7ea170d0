"""Our detectors and Ultralytics' side by side: one split, one evaluator, one device.

Every contender is scored by *our* evaluator (:func:`detector.eval.coco.evaluate`: the same
letterbox, conf, IoU, max_det and COCO metrics); an Ultralytics model goes through our imported
equivalent of it (:func:`detector.interop.ultralytics_weights.load`). Ultralytics models are also scored
by Ultralytics' own validator, run on their own module built from the same safely-read weights, so
that a difference in metric definitions shows. Latency is the median of repeated forward +
post-processing passes at batch 1 on fused modules, after a warm-up.

This module imports ``ultralytics`` only inside the functions that run their side.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from detector.data.sources import CocoJsonSource, YoloSource
from detector.errors import ConfigError, DataError
from detector.models.detector import Detector
from detector.runs import write_atomic, write_text_atomic

# Ultralytics model YAML names our zoo mirrors layer for layer (an untrained baseline each)
ULTRALYTICS_YAML = re.compile(r"^(yolov8|yolo11)([nsmlx])\.ya?ml$")

KIND_OURS = "ours"
KIND_OURS_UNTRAINED = "ours (untrained)"
KIND_ULTRALYTICS = "ultralytics"
KIND_ULTRALYTICS_UNTRAINED = "ultralytics (untrained yaml)"


@dataclass
class Contender:
    """One model to compare, as given: all of its classes, eval mode, on the CPU."""

    label: str  # what was asked for: a path or a name
    kind: str  # one of the KIND_* values
    model: Detector  # ours, or our import of an Ultralytics model
    names: list[str]  # the model's class names, in class-index order
    ultralytics: nn.Module | None = None  # their DetectionModel, for their validator and their latency
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- contenders


def model_config_names() -> list[str]:
    """Our model config names (``configs/model/*.yaml``)."""
    from detector.config import CONFIG_DIR

    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def load_contender(spec: str, data_names: Sequence[str], seed: int = 0) -> Contender:
    """A contender from what the user wrote: one of our checkpoints, an Ultralytics checkpoint (read
    without unpickling code), an Ultralytics YAML name such as ``yolov8n.yaml`` (an untrained
    baseline, built for the data's classes) or one of our model config names (untrained, likewise).

    Untrained models are initialised after ``torch.manual_seed(seed)``. Mistakes raise
    :class:`ConfigError` with one line.
    """
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    match = ULTRALYTICS_YAML.match(path.name)
    if match and not path.is_file():
        return _ultralytics_baseline(spec, match.group(1), match.group(2), list(data_names), seed)
    if spec in model_config_names():
        from detector.models.zoo import build_model

        torch.manual_seed(seed)
        model = build_model(spec, num_classes=len(data_names)).eval()
        return Contender(spec, KIND_OURS_UNTRAINED, model, list(data_names), notes=["untrained (random weights)"])
    if path.suffix.lower() in {".yaml", ".yml"}:
        raise ConfigError(
            f"models: {spec} is not an Ultralytics model name this project mirrors "
            "(yolov8n.yaml ... yolov8x.yaml, yolo11n.yaml ... yolo11x.yaml)"
        )
    if path.suffix.lower() != ".pt" and not path.is_file():
        raise ConfigError(
            f"models: unknown model {spec!r}: give a checkpoint path (.pt), an Ultralytics YAML name "
            f"(yolov8n.yaml, yolo11s.yaml, ...) or one of our model configs: {', '.join(model_config_names())}"
        )
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path} (compare.py never downloads weights)")
    return _checkpoint_contender(path)


def _checkpoint_contender(path: Path) -> Contender:
    from detector.checkpoint import FORMAT, load_checkpoint, read_checkpoint

    try:
        ours = read_checkpoint(path).get("format") == FORMAT
    except ConfigError:
        ours = False
    if ours:
        model, meta = load_checkpoint(path)
        return Contender(str(path), KIND_OURS, model.eval(), list(meta["names"]))
    from detector.interop import ultralytics as ul
    from detector.interop import ultralytics_weights as ulw

    try:
        checkpoint = ulw.read(path)
    except (ConfigError, ValueError, OSError, RuntimeError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path} is neither a detector checkpoint nor an Ultralytics detection checkpoint ({_one_line(err)})"
        ) from err
    model = ulw.to_detector(checkpoint).eval()
    theirs = ul.ultralytics_model(checkpoint).eval()
    return Contender(str(path), KIND_ULTRALYTICS, model, list(checkpoint.names), theirs)


def _ultralytics_baseline(spec: str, family: str, scale: str, names: list[str], seed: int) -> Contender:
    """Ultralytics' own model from its YAML (offline, random weights) and ours with its tensors."""
    from ultralytics.nn.tasks import DetectionModel

    from detector.models.zoo import build_model

    torch.manual_seed(seed)
    theirs = DetectionModel(f"{family}{scale}.yaml", nc=len(names), verbose=False).eval()
    theirs.names = dict(enumerate(names))
    ours = build_model(f"{family}{scale}", num_classes=len(names))
    copy_by_position(ours, theirs.state_dict())
    return Contender(spec, KIND_ULTRALYTICS_UNTRAINED, ours.eval(), names, theirs, ["untrained (random weights)"])


def copy_by_position(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` (another library's names, the same tensors in the same order) into ``model``."""
    own = model.state_dict()
    if len(own) != len(state) or any(a.shape != b.shape for a, b in zip(own.values(), state.values())):
        raise ConfigError("the Ultralytics model and ours do not line up tensor for tensor")
    model.load_state_dict({k: v.detach().float().clone() for k, v in zip(own, state.values())})


# --------------------------------------------------------------------------- classes matched by name


def class_map(model_names: Sequence[str], data_names: Sequence[str], label: str) -> list[int] | None:
    """For each class of the data, the model's class of the same name; ``None`` when they are the
    same list. A model must know every class of the data (one that lacks some is an error: its
    mAP over the data's classes would be meaningless)."""
    model_names, data_names = list(model_names), list(data_names)
    if model_names == data_names:
        return None
    missing = [n for n in data_names if n not in model_names]
    if missing:
        shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
        raise ConfigError(
            f"{label} has no class named {shown} (the data's classes are matched to the model's by name, "
            f"and the model knows {len(model_names)} classes: {', '.join(model_names[:6])}"
            f"{' ...' if len(model_names) > 6 else ''})"
        )
    duplicated = sorted({n for n in data_names if model_names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{label} has several classes named {', '.join(duplicated)}: cannot match by name")
    return [model_names.index(n) for n in data_names]


def _sliced_conv(conv: nn.Conv2d, keep: Sequence[int]) -> nn.Conv2d:
    """A copy of a (1x1, class-output) conv with only the output channels ``keep``, in that order."""
    out = nn.Conv2d(
        conv.in_channels,
        len(keep),
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
    )
    index = torch.as_tensor(list(keep), dtype=torch.long)
    with torch.no_grad():
        out.weight.copy_(conv.weight[index])
        if conv.bias is not None:
            out.bias.copy_(conv.bias[index])
    return out.to(conv.weight.device)


def restrict_classes(model: Detector, keep: Sequence[int]) -> Detector:
    """A copy of ``model`` predicting only its classes ``keep`` (in that order): the last conv of each
    class branch keeps those output channels. Class scores are independent sigmoids, so this equals
    dropping the other classes' scores before NMS."""
    model = copy.deepcopy(model)
    head = model.head
    branches = getattr(head, "cls", None)
    if branches is None or not all(isinstance(b, nn.Sequential) and isinstance(b[-1], nn.Conv2d) for b in branches):
        raise ConfigError(f"cannot match classes by name for a {type(head).__name__} head")
    for branch in branches:
        branch[-1] = _sliced_conv(branch[-1], keep)
    head.num_classes = len(keep)
    return model.eval()


def restrict_ultralytics_classes(model: nn.Module, keep: Sequence[int], names: Sequence[str]) -> nn.Module | None:
    """The same restriction on a copy of an Ultralytics ``DetectionModel``: the last conv of each
    ``Detect.cv3`` branch keeps the channels ``keep`` and the head's class count follows. ``None``
    when the head is not laid out that way (then their validator is not run on it)."""
    model = copy.deepcopy(model)
    detect = model.model[-1]
    branches = getattr(detect, "cv3", None)
    if (
        branches is None
        or not all(isinstance(b, nn.Sequential) and isinstance(b[-1], nn.Conv2d) for b in branches)
        or not hasattr(detect, "reg_max")
        or getattr(detect, "end2end", False)
    ):
        return None
    for branch in branches:
        branch[-1] = _sliced_conv(branch[-1], keep)
    detect.nc = len(keep)
    detect.no = len(keep) + 4 * detect.reg_max
    model.nc = len(keep)
    if isinstance(getattr(model, "yaml", None), dict):
        model.yaml["nc"] = len(keep)
    model.names = dict(enumerate(names))
    return model.eval()


# --------------------------------------------------------------------------- Ultralytics' side


def ultralytics_can_read(source: Any) -> bool:
    """Whether Ultralytics can read the data (YOLO text labels; not COCO JSON)."""
    return isinstance(source, YoloSource)


def ultralytics_data_yaml(source: Any, names: Sequence[str], path: Path) -> Path | None:
    """Write a data.yaml Ultralytics reads exactly as our source reads the data (absolute ``path``
    and split entries; Ultralytics would resolve a relative ``path`` against the working directory,
    ours against the yaml's folder). ``None`` for COCO JSON data, which their validator cannot read."""
    if not ultralytics_can_read(source):
        return None
    content: dict[str, Any] = {"path": str(source.root)}
    for split in ("train", "val", "test"):
        try:
            entries = source.entries(split)
        except DataError:
            continue
        content[split] = [str(e) for e in entries]
    content["names"] = dict(enumerate(names))
    write_text_atomic(path, yaml.safe_dump(content, sort_keys=False))
    return path


def data_where(source: Any, split: str) -> str:
    """Where a split comes from, for the report: the data.yaml, or the COCO JSON file."""
    if isinstance(source, YoloSource):
        return source.where
    if isinstance(source, CocoJsonSource):
        return str(source.splits.get(split, (None, None))[0])
    return type(source).__name__


def ultralytics_device(device: torch.device) -> str:
    """Our device as Ultralytics' ``device`` argument."""
    if device.type == "cuda":
        return str(device.index or 0)
    return device.type


def ultralytics_validate(
    model: nn.Module,
    data_yaml: Path,
    split: str,
    imgsz: int,
    batch: int,
    conf: float,
    iou: float,
    max_det: int,
    device: torch.device,
    save_dir: Path,
    rect: bool = False,
) -> dict[str, Any]:
    """Ultralytics' own ``DetectionValidator`` (what ``YOLO.val`` runs) on a copy of ``model``, with
    our settings, plots and JSON off. ``rect=False`` letterboxes every image to a square ``imgsz``
    as our evaluator does (``YOLO.val`` defaults to rectangular batches)."""
    from ultralytics.models.yolo.detect import DetectionValidator

    args = {
        "task": "detect",
        "mode": "val",
        "data": str(data_yaml),
        "split": split,
        "imgsz": imgsz,
        "batch": batch,
        "conf": conf,
        "iou": iou,
        "max_det": max_det,
        "device": ultralytics_device(device),
        "rect": rect,
        "plots": False,
        "save_json": False,
        "save_txt": False,
        "verbose": False,
        "workers": 0,
    }
    validator = DetectionValidator(save_dir=Path(save_dir), args=args)
    validator(model=copy.deepcopy(model).float())
    if Path(save_dir).is_dir() and not any(Path(save_dir).iterdir()):
        Path(save_dir).rmdir()  # it makes the folder even when it has nothing to write
    box = validator.metrics.box
    return {
        "mAP50-95": float(box.map),
        "mAP50": float(box.map50),
        "images": int(getattr(validator, "seen", 0)),
        "speed_ms_per_image": {k: float(v) for k, v in dict(validator.speed).items()},
        "rect": rect,
    }


def _ultralytics_nms() -> Callable[..., Any]:
    try:
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:  # older releases keep it in ops
        from ultralytics.utils.ops import non_max_suppression
    return non_max_suppression


def ultralytics_step(
    model: nn.Module, x: torch.Tensor, conf: float, iou: float, max_det: int, orig_size: tuple[int, int]
) -> Callable[[], Any]:
    """Their inference step: their fused module, their NMS (as their validator calls it) and their
    box rescaling, for ``x`` ``[1, 3, H, W]``."""
    from ultralytics.utils.ops import scale_boxes

    nms = _ultralytics_nms()
    fused = copy.deepcopy(model).float().fuse(verbose=False).eval().to(x.device)

    def step() -> Any:
        out = nms(fused(x), conf, iou, multi_label=True, max_det=max_det)
        return [scale_boxes(x.shape[2:], d[:, :4], orig_size) for d in out]

    return step


def ultralytics_versions() -> str:
    import ultralytics

    return ultralytics.__version__


# --------------------------------------------------------------------------- our side: latency, parity


def ours_step(
    model: Detector, x: torch.Tensor, post: Any, letterbox: torch.Tensor, orig_sizes: torch.Tensor
) -> Callable[[], Any]:
    """Our inference step: the fused model, decoding and :class:`PostProcess` (letterbox undone)."""
    fused = copy.deepcopy(model).fuse().to(x.device)

    def step() -> Any:
        boxes, scores = fused.head.decode(fused(x))
        return post(boxes, scores, letterbox, orig_sizes)

    return step


@torch.inference_mode()
def median_latency_ms(step: Callable[[], Any], device: torch.device, warmup: int = 10, repeats: int = 50) -> float:
    """Median wall time of ``step()`` in milliseconds over ``repeats`` calls after ``warmup`` calls
    (CUDA synchronised around each call)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    for _ in range(max(warmup, 0)):
        step()
    sync()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


@torch.no_grad()
def parity(ours: Detector, theirs: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Largest differences between our import and their module on ``x``: class scores and box
    coordinates (pixels), decoded, before NMS."""
    from detector.boxes import cxcywh_to_xyxy

    ours, theirs = ours.eval(), theirs.eval()
    boxes, scores = ours.head.decode(ours(x))
    out = theirs(x)
    decoded = (out[0] if isinstance(out, (tuple, list)) else out).float()  # [B, 4 + nc, A] cxcywh, scores
    their_boxes = cxcywh_to_xyxy(decoded[:, :4].transpose(1, 2))
    return {
        "max_abs_score_diff": float((scores - decoded[:, 4:].transpose(1, 2)).abs().max()),
        "max_abs_box_diff_px": float((boxes - their_boxes).abs().max()),
    }


# --------------------------------------------------------------------------- the report

COLUMNS = [
    ("model", "model"),
    ("kind", "kind"),
    ("classes", "classes"),
    ("mAP50-95", "mAP50-95"),
    ("mAP50", "mAP50"),
    ("ultralytics_mAP50-95", "Ultralytics val mAP50-95"),
    ("ultralytics_mAP50", "Ultralytics val mAP50"),
    ("params", "params"),
    ("gflops", "GFLOPs"),
    ("latency_ms", "latency ms (our module)"),
    ("ultralytics_latency_ms", "latency ms (Ultralytics module)"),
    ("train_images_per_s", "train images/s"),
    ("train_time_s", "train time s"),
    ("wall_time_s", "wall time s"),
    ("notes", "notes"),
]


def fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "params":
        return f"{int(value):,}"
    if key.startswith(("mAP", "ultralytics_mAP")):
        return f"{value:.4f}"
    if key in ("gflops", "latency_ms", "ultralytics_latency_ms", "train_images_per_s", "train_time_s", "wall_time_s"):
        return f"{value:.2f}" if value < 100 else f"{value:.1f}"
    return str(value)


def columns_in_use(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The table columns, without the training ones when nothing was trained."""
    trained = any(row.get("train_time_s") is not None for row in rows)
    return [(k, t) for k, t in COLUMNS if trained or k not in ("train_images_per_s", "train_time_s", "wall_time_s")]


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """``compare.csv``: every column, raw numbers, empty where not measured."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([k for k, _ in COLUMNS])
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row[k] for k, _ in COLUMNS])
    return write_text_atomic(path, buffer.getvalue())


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    columns = columns_in_use(rows)
    lines = ["| " + " | ".join(t for _, t in columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        cells = [fmt(k, row.get(k)).replace("|", "\\|") for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(
    path: Path, title: str, rows: Sequence[dict[str, Any]], settings: dict[str, Any], notes: Sequence[str]
) -> Path:
    """``compare.md``: the table, the settings every model shared, and how to read the figures."""
    parts = [f"# {title}", "", markdown_table(rows), "", "## Settings", ""]
    parts += [f"- **{k}**: {v}" for k, v in settings.items()]
    parts += ["", "## Reading the table", ""]
    parts += [f"- {n}" for n in notes]
    return write_text_atomic(path, "\n".join(parts) + "\n")


def plot_map_vs_latency(path: Path, rows: Sequence[dict[str, Any]], device: str) -> Path:
    """mAP50-95 (our evaluator) against latency per image: filled markers for our module, hollow ones
    joined to them for Ultralytics' module of the same model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for i, row in enumerate(rows):
        color = plt.cm.tab10(i % 10)
        x, y = row.get("latency_ms"), row.get("mAP50-95")
        if x is None or y is None:
            continue
        ax.scatter([x], [y], color=color, s=40, zorder=3, label=row["model"])
        ax.annotate(row["model"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
        theirs = row.get("ultralytics_latency_ms")
        if theirs is not None:
            ax.scatter([theirs], [y], facecolors="none", edgecolors=[color], s=40, zorder=3)
            ax.plot([x, theirs], [y, y], color=color, lw=0.8, ls=":")
    ax.set(
        xlabel=f"latency per image, ms (batch 1, fused, {device})",
        ylabel="mAP50-95 (our evaluator)",
        title="mAP against latency (hollow: Ultralytics' module)",
    )
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7, loc="best")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, lambda f: f.write(buffer.getvalue()))


def write_model_outputs(folder: Path, metrics: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    write_text_atomic(folder / "metrics.json", json.dumps(metrics, indent=2))
    write_text_atomic(folder / "predictions.json", json.dumps(predictions))


def slug(label: str, used: set[str]) -> str:
    """A folder name for a model: the file stem (or name), made unique."""
    path = Path(label)
    base = path.stem if path.suffix.lower() in {".pt", ".yaml", ".yml"} else path.name or label
    if path.suffix.lower() == ".pt" and path.parent.name == "weights" and path.parent.parent.name:
        base = f"{path.parent.parent.name}_{path.stem}"  # runs/train/exp/weights/best.pt -> exp_best
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "model"
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
