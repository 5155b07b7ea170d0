"""The comparison report: ``compare.md`` (the table, the settings every model shared and how to
read the figures), ``compare.csv``, ``map_vs_latency.png`` and the terminal table."""

from __future__ import annotations

import csv
import io
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from detector.config.schemas import CompareConfig
from detector.data.index import SplitIndex
from detector.eval.postprocess import PostProcess
from detector.images import save_figure
from detector.interop import ultralytics as ul
from detector.runs import write_text_atomic
from detector.tools.compare.data import data_where
from detector.tools.markdown import markdown_table

COLUMNS = [
    ("model", "model"),
    ("kind", "kind"),
    ("classes", "classes"),
    ("mAP50-95", "mAP50-95"),
    ("mAP50", "mAP50"),
    ("branch", "branch scored"),
    ("other_mAP50-95", "mAP50-95 other branch"),
    ("other_mAP50", "mAP50 other branch"),
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
    if key.startswith(("mAP", "ultralytics_mAP", "other_mAP")):
        return f"{value:.4f}"
    if key in ("gflops", "latency_ms", "ultralytics_latency_ms", "train_images_per_s", "train_time_s", "wall_time_s"):
        return f"{value:.2f}" if value < 100 else f"{value:.1f}"
    return str(value)


def columns_in_use(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The table columns, without the training ones when nothing was trained and without the branch
    ones when no model is end-to-end."""
    trained = any(row.get("train_time_s") is not None for row in rows)
    two_branches = any(row.get("branch") is not None for row in rows)
    return [
        (k, t)
        for k, t in COLUMNS
        if (trained or k not in ("train_images_per_s", "train_time_s", "wall_time_s"))
        and (two_branches or k not in ("branch", "other_mAP50-95", "other_mAP50"))
    ]


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """``compare.csv``: every column, raw numbers, empty where not measured."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([k for k, _ in COLUMNS])
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row[k] for k, _ in COLUMNS])
    return write_text_atomic(path, buffer.getvalue())


def rows_table(rows: Sequence[dict[str, Any]]) -> str:
    """The models' markdown table: the columns in use, each value formatted by :func:`fmt`."""
    columns = columns_in_use(rows)
    return markdown_table([t for _, t in columns], [[fmt(k, row.get(k)) for k, _ in columns] for row in rows])


def write_markdown(
    path: Path, title: str, rows: Sequence[dict[str, Any]], settings: dict[str, Any], notes: Sequence[str]
) -> Path:
    """``compare.md``: the table, the settings every model shared, and how to read the figures."""
    parts = [f"# {title}", "", rows_table(rows), "", "## Settings", ""]
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
    return save_figure(fig, path)


CURVE_LABELS = {"ours": "ours (our evaluator)", "ultralytics": "Ultralytics (their validator)"}


def plot_seed_curves(path: Path, curves: dict[str, list[list[tuple[int, float]]]]) -> Path:
    """Validation mAP50-95 per epoch during training, per side (``ours``, ``ultralytics``) one list of
    ``(epoch, value)`` curves, one per seed: a thin line per seed, the mean over the seeds that
    reached each epoch in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, (side, seeds) in enumerate(curves.items()):
        color = plt.cm.tab10(i)
        by_epoch: dict[int, list[float]] = {}
        for curve in seeds:
            if curve:
                ax.plot(*zip(*curve), color=color, lw=0.8, alpha=0.4)
            for epoch, value in curve:
                by_epoch.setdefault(epoch, []).append(value)
        if by_epoch:
            epochs = sorted(by_epoch)
            means = [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]
            label = f"{CURVE_LABELS.get(side, side)}: mean of {len(seeds)} seed(s)"
            ax.plot(epochs, means, color=color, lw=2.5, marker="o" if len(epochs) == 1 else None, label=label)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(
        xlabel="epoch",
        ylabel="mAP50-95 (each trainer's own validator)",
        title="Validation mAP50-95 during training (thin: one seed, bold: mean)",
    )
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def write_reports(
    run_dir: Path,
    title: str,
    rows: list[dict[str, Any]],
    settings: CompareConfig,
    post: PostProcess,
    source: Any,
    index: SplitIndex,
    device: torch.device,
    notes: list[str],
    data_yaml: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """``compare.md``, ``compare.csv`` and ``map_vs_latency.png`` in ``run_dir``. ``notes``: more lines
    for "Reading the table"; ``overrides``: the command line, as typed."""
    shared = shared_settings(rows, settings, post, source, index, device, data_yaml, overrides)
    write_markdown(run_dir / "compare.md", title, rows, shared, reading_notes(settings, notes))
    write_csv(run_dir / "compare.csv", rows)
    plot_map_vs_latency(run_dir / "map_vs_latency.png", rows, str(device))


def shared_settings(
    rows: Sequence[dict[str, Any]],
    settings: CompareConfig,
    post: PostProcess,
    source: Any,
    index: SplitIndex,
    device: torch.device,
    data_yaml: Path | None,
    overrides: tuple[str, ...],
) -> dict[str, Any]:
    """The settings every model of ``rows`` was scored with, for the report's "Settings"."""
    versions = f"torch {torch.__version__}"
    if any(r["kind"].startswith("ultralytics") for r in rows) or settings.mode.value == "train":
        versions += f", ultralytics {ul.version()}"
    return {
        "data": f"{data_where(source, settings.split)} ({settings.split}: {len(index)} images, {index.instances} instances, "
        f"{len(index.names)} classes)",
        "letterbox": f"longest side resized to {settings.imgsz}, padded to {settings.imgsz} x {settings.imgsz} "
        "(centred, grey 114)",
        "post-processing": f"conf {post.conf}, IoU {post.iou} (class-aware NMS, every class above conf "
        f"a candidate), max_det {post.max_det}",
        "evaluation batch": settings.batch,
        "latency": f"batch 1 on {device} ({_device_name(device)}), fused, forward + decoding + NMS, median of "
        f"{settings.latency_repeats} after {settings.latency_warmup} warm-up runs, the split's first image",
        "Ultralytics' validator": (
            "not run"
            if not settings.ultralytics_val
            else f"DetectionValidator, rect={settings.ultralytics_rect}, same imgsz, batch, conf, "
            f"IoU, max_det, data.yaml {data_yaml}"
        ),
        "versions": versions,
        "command": " ".join(("python scripts/compare.py", *overrides)),
    }


def reading_notes(settings: CompareConfig, notes: Sequence[str]) -> list[str]:
    """How to read the figures (for "Reading the table"), then ``notes``."""
    return [
        "mAP50-95 and mAP50 are from our evaluator (COCO metrics by faster-coco-eval: 101-point interpolated "
        "precision, at most 100 detections per image counted, crowd regions ignored) for every model; an "
        "Ultralytics model goes through our import of it, whose outputs agree with their module (largest "
        "differences in models/<name>/metrics.json, 'parity').",
        "Ultralytics val mAP50-95 / mAP50 are what Ultralytics' own validator reports for their module with the "
        "same weights and settings: its AP is the area under its own interpolated precision-recall curve and it "
        "keeps every detection up to max_det, so small differences from our figures come from the metric "
        "definitions, not from the models.",
        "Latency (our module): our fused model, decoding and our NMS. Latency (Ultralytics module): their fused "
        "DetectionModel, their NMS and box rescaling. Both on the same device and input, in the same process.",
        "Params count every parameter of the model as given (its full class list); GFLOPs are one forward pass "
        f"at {settings.imgsz} x {settings.imgsz} (2 x multiply-accumulates, as Ultralytics counts).",
        "A model trained on a superset of the data's classes is matched by class name: detections of classes "
        "the data lacks are dropped before NMS. A model lacking one of the data's classes is refused.",
        *notes,
    ]


TERMINAL_TITLES = {
    "ultralytics_mAP50-95": "U mAP50-95",
    "ultralytics_mAP50": "U mAP50",
    "latency_ms": "ms",
    "ultralytics_latency_ms": "U ms",
    "train_images_per_s": "img/s",
    "train_time_s": "train s",
    "wall_time_s": "wall s",
}


def results_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The table for the terminal: short titles (U: Ultralytics' validator / module), short names."""
    caption = "U: Ultralytics' own validator / module; ms: latency per image, batch 1, fused"
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        min_width=max(len(title), len(caption)),  # title and caption on one line where the console allows
    )
    columns = [(k, TERMINAL_TITLES.get(k, t)) for k, t in columns_in_use(rows) if k != "notes"]
    for key, text in columns:
        table.add_column(text, justify="left" if key in ("model", "kind") else "right")
    for row in rows:
        cells = [fmt(k, row.get(k)) for k, _ in columns]
        cells[0] = _short(row["model"])
        table.add_row(*cells)
    return table


def _short(label: str) -> str:
    """``runs/train/exp/weights/best.pt`` -> ``exp/best.pt``; other paths by file name."""
    path = Path(label)
    if path.parent.name == "weights" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{path.name}"
    return path.name or label


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
