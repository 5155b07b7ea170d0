"""The benchmark's output: ``benchmark.json`` (rewritten after every figure) and the terminal table."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from rich import box
from rich.table import Table

from detector.interop import ultralytics as ul
from detector.runs import write_text_atomic
from detector.tools.benchmark.figure import Figure


class Report:
    """The figures so far, rewritten to ``benchmark.json`` (atomically) after each one."""

    def __init__(self, path: Path, arch: str, data: str, weights: str, threads: int, settings: dict[str, Any]) -> None:
        """``settings``: the whole resolved configuration, as plain containers."""
        import cv2

        self.path = path
        self.figures: list[Figure] = []
        self.extra: dict[str, Any] = {}  # summaries written after the figures (deploy_best)
        self.start = time.perf_counter()
        self.header = {
            "ratio_is": "ours / ultralytics, for every figure: above 1 means ours is faster for images/s, "
            "below 1 means ours is faster for ms and s",
            "weights": weights,
            "arch": arch,
            "data": data,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": settings,
            "torch_threads": threads,
            "versions": {
                "detector": metadata.version("detector"),
                "torch": torch.__version__,
                "ultralytics": ul.version(),
                "python": platform.python_version(),
                "opencv": cv2.__version__,
            },
            "machine": machine(),
        }
        self.load_at_start = load_average()

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        self.write()

    def add_extra(self) -> None:
        """Rewrite the file with :attr:`extra` as it is now."""
        self.write()

    def write(self) -> None:
        head, rest = dict(list(self.header.items())[:4]), dict(list(self.header.items())[4:])
        content = {
            **head,
            "figures": [f.to_json() for f in self.figures],
            **self.extra,
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
    title = f"ours vs Ultralytics: {model}, {weights}"
    table = Table(
        title=title,
        caption=caption,
        min_width=max(len(title), len(caption)),  # title and caption on one line where the console allows
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    for column in ("measurement", "device", "unit", "ours", "ultralytics", "ours /\nultralytics", "goal", "met"):
        table.add_column(column, justify="left" if column in ("measurement", "device", "unit") else "right")
    labels = {"train_step": "train step", "loader": "loader", "predict": "predict", "val": "val"}
    for f in figures:
        if f.part not in labels:  # the deploy figures have a table of their own
            continue
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


def deploy_table(figures: list[Figure], model: str, weights: str, best: dict[str, Any] | None) -> Table:
    """One row per runtime: latency at batch 1, throughput at the deploy batch, mAP50-95 of each side."""
    title = f"deployment, ours vs Ultralytics' own export: {model}, {weights}"
    caption = "median over repeats; ratios ours / ultralytics; mAP50-95 by our evaluator from each side's predictor"
    if best is not None:
        caption += (
            f"; best runtime at batch 1: ours {best['ours']['runtime']} {number(best['ours']['ms'])} ms, "
            f"Ultralytics {best['ultralytics']['runtime']} {number(best['ultralytics']['ms'])} ms, "
            f"ratio {best['ratio']:.2f} (goal <= 0.80: {'met' if best['met'] else 'not met'})"
        )
    table = Table(
        title=title, caption=caption, min_width=len(title), box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1)
    )
    columns = ("runtime", "b1 ms\nours", "b1 ms\nultralytics", "ratio\n(<= 0.8)", "b{n} img/s\nours")
    columns += ("b{n} img/s\nultralytics", "ratio\n(>= 1.25)", "mAP50-95\nours", "mAP50-95\nultralytics")
    rows: dict[str, dict[str, Figure]] = {}
    for f in figures:
        if f.part in ("deploy_latency", "deploy_throughput"):
            rows.setdefault(f.settings["runtime"], {})[f.part] = f
    batch = next((r["deploy_throughput"].settings["batch"] for r in rows.values() if "deploy_throughput" in r), 8)
    for column in columns:
        table.add_column(column.format(n=batch), justify="left" if column == "runtime" else "right")
    for runtime, parts in rows.items():
        cells = [runtime]
        for part in ("deploy_latency", "deploy_throughput"):
            f = parts.get(part)
            if f is None:
                cells += ["", "", ""]
                continue
            colour = "green" if f.met else "red"
            ratio = f"[{colour}]{f.ratio:.2f}[/{colour}]"
            cells += [number(f.medians["ours"]), number(f.medians["ultralytics"]), ratio]
        scores = next(iter(parts.values())).notes.get("map", {})
        cells += [f"{scores[s]['mAP50-95']:.4f}" if s in scores else "" for s in ("ours", "ultralytics")]
        table.add_row(*cells)
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
