"""The diagnostics report: ``diagnose.md`` (every figure, ours beside Ultralytics'),
``diagnose.json`` (the same numbers) and the plots ``schedule.png``, ``grad_norm.png``,
``boxes.png``, ``epochs.png``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from detector.images import save_figure
from detector.runs import write_text_atomic
from detector.tools.compare.headtohead import THEIR_MAP
from detector.tools.diagnose.batches import SIZE_EDGES, BatchStats
from detector.tools.diagnose.probe import SideRecord, groups_at
from detector.tools.markdown import markdown_table

SIDES = ("ours", "ultralytics")
COLOURS = {"ours": "tab:blue", "ultralytics": "tab:orange"}

# per-epoch columns: ours (metrics.csv) and theirs (results.csv) under one name
EPOCH_COLUMNS = {
    "box": ("train/box", "train/box_loss"),
    "cls": ("train/cls", "train/cls_loss"),
    "dfl": ("train/dfl", "train/dfl_loss"),
    "l1": ("train/l1", "train/l1_loss"),  # YOLO26 (reg_max 1): the L1 distance term in place of DFL
    "val mAP50-95": ("mAP50-95", THEIR_MAP),
    "val mAP50": ("mAP50", "metrics/mAP50(B)"),
}


def read_epochs(path: Path, side: str) -> list[dict[str, float]]:
    """Per-epoch rows of a run's CSV under the names of :data:`EPOCH_COLUMNS`."""
    column = SIDES.index(side)
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            raw = {k.strip(): v for k, v in raw.items() if k}
            rows.append({name: _float(raw.get(keys[column])) for name, keys in EPOCH_COLUMNS.items()})
    return rows


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def best_epoch(rows: list[dict[str, float]], key: str = "val mAP50-95") -> int:
    """The epoch (0-based) that a strictly-greater rule keeps as best: the first maximum."""
    values = [r[key] for r in rows]
    return int(np.nanargmax(values)) if values and not all(math.isnan(v) for v in values) else -1


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table of ``rows``, each value formatted by :func:`fmt`."""
    return markdown_table(header, [[fmt(v) for v in row] for row in rows])


def batch_section(stats: dict[str, BatchStats]) -> str:
    summaries = {k: s.summary() for k, s in stats.items()}
    keys = list(next(iter(summaries.values())))
    rows = [[key, *(summaries[k][key] for k in stats)] for key in keys]
    hist = [
        [f"{lo}-{hi if hi < 10_000 else ''} px", *(s.size_histogram()[i] for s in stats.values())]
        for i, (lo, hi) in enumerate(zip(SIZE_EDGES[:-1], SIZE_EDGES[1:]))
    ]
    return (
        table(["", *stats], rows)
        + "\n\nBox side (square root of the area) distribution, fraction of boxes:\n\n"
        + table(["side", *stats], hist)
    )


def initial_section(initial: dict[str, Any]) -> str:
    head = (
        f"Each library's fresh model (seeded alike): {initial['compared']} floating tensors of {initial['tensors']} "
        "compared by position; "
    )
    if not initial["differing"]:
        return head + "every one has the same mean and spread (within 15 %)."
    rows = [list(d) for d in initial["differing"]]
    return (
        head
        + "these differ by more than 15 %:\n\n"
        + table(["ours", "Ultralytics", "our mean", "their mean", "our std", "their std"], rows)
    )


def schedule_section(records: dict[str, SideRecord], ema: dict[str, dict[str, float]]) -> str:
    rows = []
    for side, rec in records.items():
        for name, g in (groups_at(rec.steps[-1]) if rec.steps else {}).items():
            rows.append([side, name, g["params"], g["weight_decay"], g["nesterov"]])
    groups = table(["trainer", "group", "parameters", "weight decay applied", "nesterov"], rows)
    steps = []
    for side, rec in records.items():
        acc = [st["accumulated"] for st in rec.steps]
        first = rec.steps[0]["groups"] if rec.steps else []
        last = rec.steps[-1]["groups"] if rec.steps else []
        steps.append(
            [
                side,
                rec.batches,
                len(rec.steps),
                f"{min(acc)}-{max(acc)}" if acc else "-",
                " / ".join(f"{g['lr']:.4g}" for g in first),
                " / ".join(f"{g['lr']:.4g}" for g in last),
                " / ".join(f"{g['momentum']:.4g}" for g in first),
                " / ".join(f"{g['momentum']:.4g}" for g in last),
            ]
        )
    header = ["trainer", "batches", "optimizer steps", "batches per step", "first lr", "last lr"]
    header += ["first momentum", "last momentum"]
    ema_rows = [[side, *(v for v in d.values())] for side, d in ema.items()]
    ema_header = ["trainer", *(f"decay at update {k}" for k in next(iter(ema.values())))]
    return f"{groups}\n\n{table(header, steps)}\n\nEMA decay per update (each trainer's own EMA class):\n\n" + table(
        ema_header, ema_rows
    )


def plot_schedule(path: Path, records: dict[str, SideRecord]) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for side, rec in records.items():
        x = [st["batches"] for st in rec.steps]
        for gi in range(len(rec.steps[0]["groups"]) if rec.steps else 0):
            name = rec.steps[0]["groups"][gi]["name"]
            style = ["-", "--", ":", "-."][gi % 4]
            axes[0].plot(
                x, [st["groups"][gi]["lr"] for st in rec.steps], style, color=COLOURS[side], label=f"{side} {name}"
            )
        axes[1].plot(x, [st["groups"][0]["momentum"] for st in rec.steps], color=COLOURS[side], label=side)
        axes[2].plot(x, [st["accumulated"] for st in rec.steps], ".", color=COLOURS[side], label=side, markersize=3)
        axes[3].plot(range(len(rec.grad_norms)), rec.grad_norms, color=COLOURS[side], label=side, linewidth=0.7)
    titles = ["learning rate per group", "momentum", "batches per optimizer step", "gradient norm before clipping"]
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("optimizer step" if "norm" in title else "training batch")
        ax.legend(fontsize=7)
    axes[3].set_yscale("log")
    return save_figure(fig, path)


def plot_boxes(path: Path, stats: dict[str, BatchStats]) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    bins = np.arange(0, 8.5, 0.25)
    for label, s in stats.items():
        side = label.split(" ")[0]
        style = "-" if "first" in label else "--"
        axes[0].hist(
            np.log2(np.maximum(s.sides, 1)),
            bins=bins,
            histtype="step",
            density=True,
            linestyle=style,
            color=COLOURS[side],
            label=label,
        )
        axes[1].hist(
            s.objects, bins=30, histtype="step", density=True, linestyle=style, color=COLOURS[side], label=label
        )
    axes[0].set_title("box side per augmented image (log2 px)")
    axes[1].set_title("objects per augmented image")
    for ax in axes:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def present(epochs: dict[str, list[dict[str, float]]]) -> list[str]:
    """The :data:`EPOCH_COLUMNS` some run has a value for (``dfl`` or ``l1``, as the head has)."""
    return [n for n in EPOCH_COLUMNS if any(not math.isnan(r[n]) for rows in epochs.values() for r in rows)]


def plot_epochs(path: Path, epochs: dict[str, list[dict[str, float]]]) -> Path:
    import matplotlib.pyplot as plt

    names = present(epochs)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5))
    for side, rows in epochs.items():
        for ax, name in zip(axes, names):
            ax.plot(range(1, len(rows) + 1), [r[name] for r in rows], "o-", color=COLOURS[side], label=side)
    for ax, name in zip(axes, names):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def epochs_section(epochs: dict[str, list[dict[str, float]]]) -> str:
    n = max(len(r) for r in epochs.values())
    names = present(epochs)
    header = ["epoch", *(f"{side} {name}" for name in names for side in epochs)]
    rows = []
    for e in range(n):
        row: list[Any] = [e + 1]
        for name in names:
            for side in epochs:
                rows_ = epochs[side]
                row.append(rows_[e][name] if e < len(rows_) else math.nan)
        rows.append(row)
    best = ", ".join(f"{side}: epoch {best_epoch(r) + 1}" for side, r in epochs.items())
    return (
        table(header, rows)
        + f"\n\nBest epoch (validation mAP50-95 during training, each trainer's own validator): {best}. "
        "Losses are each trainer's epoch means of the gain-weighted components."
    )


def write(run_dir: Path, content: dict[str, Any], markdown: str) -> None:
    write_text_atomic(run_dir / "diagnose.json", json.dumps(content, indent=2, default=float))
    write_text_atomic(run_dir / "diagnose.md", markdown)
