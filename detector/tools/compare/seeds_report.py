"""The report of a multi-seed head-to-head: ``compare.md`` (per-seed table, summary with
t-intervals, the first seed's full model table, settings and how to read them), ``compare.csv``
(one row per seed and side), ``summary.csv`` (one row per statistic), ``models.csv`` and
``map_vs_latency.png`` (every model scored at the first seed), ``curves.png`` (validation mAP50-95
per epoch) and the terminal tables."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from detector.runs import write_text_atomic
from detector.tools.compare.cache import TrainedSeed
from detector.tools.compare.report import plot_seed_curves, rows_table
from detector.tools.compare.stats import LEVEL, Paired, Summary, summarize
from detector.tools.markdown import markdown_table

SIDES = ("ours", "ultralytics")


@dataclass
class SeedResult:
    """One seed: each side's trained run and its scoring row (from :func:`compare_models`)."""

    seed: int
    trained: dict[str, TrainedSeed]  # by side
    rows: dict[str, dict[str, Any]]  # by side


def _values(results: Sequence[SeedResult], key: str) -> Paired:
    return Paired(*([float(r.rows[s][key]) for r in results] for s in SIDES))


def _runs(results: Sequence[SeedResult], attribute: str) -> Paired:
    return Paired(*([float(getattr(r.trained[s].run, attribute)) for r in results] for s in SIDES))


def summaries(results: Sequence[SeedResult]) -> list[Summary]:
    """mAP50-95 and mAP50 (our evaluator) paired per seed, and for end-to-end models the mAP50-95 of
    the branch not predicted with; training images/s and wall time as the ratio of the means."""
    other = []
    if all(r.rows[s].get("other_mAP50-95") is not None for r in results for s in SIDES):
        other = [summarize("mAP50-95 other branch", _values(results, "other_mAP50-95"))]
    return [
        summarize("mAP50-95", _values(results, "mAP50-95")),
        summarize("mAP50", _values(results, "mAP50")),
        *other,
        summarize("train images/s", _runs(results, "images_per_s"), paired=False),
        summarize("wall time s", _runs(results, "wall_time_s"), paired=False),
    ]


def _num(value: Any, digits: int = 4, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if metric.startswith("mAP") else 2


def _interval(mean: float, low: float, high: float, digits: int, sign: bool = False) -> str:
    if math.isnan(low):
        return _num(mean, digits, sign)
    return f"{_num(mean, digits, sign)} [{_num(low, digits, sign)}, {_num(high, digits, sign)}]"


def _reused(result: SeedResult) -> str:
    reused = [s for s in SIDES if result.trained[s].reused]
    return "both" if len(reused) == 2 else (reused[0] if reused else "no")


PER_SEED = [
    "seed",
    "ours mAP50-95",
    "theirs mAP50-95",
    "ratio",
    "difference",
    "ours mAP50",
    "theirs mAP50",
    "ours U-val mAP50-95",
    "theirs U-val mAP50-95",
    "ours img/s",
    "theirs img/s",
    "ours wall s",
    "theirs wall s",
    "reused",
]


def per_seed_cells(results: Sequence[SeedResult]) -> list[list[str]]:
    """The per-seed table's cells (columns :data:`PER_SEED`); theirs is Ultralytics'."""
    lines = []
    for r in results:
        ours, theirs = r.rows["ours"], r.rows["ultralytics"]
        pair = Paired([ours["mAP50-95"]], [theirs["mAP50-95"]])
        lines.append(
            [
                str(r.seed),
                _num(ours["mAP50-95"]),
                _num(theirs["mAP50-95"]),
                _num(pair.ratios[0], 3),
                _num(pair.differences[0], 4, sign=True),
                _num(ours["mAP50"]),
                _num(theirs["mAP50"]),
                _num(ours.get("ultralytics_mAP50-95")),
                _num(theirs.get("ultralytics_mAP50-95")),
                _num(r.trained["ours"].run.images_per_s, 2),
                _num(r.trained["ultralytics"].run.images_per_s, 2),
                _num(r.trained["ours"].run.wall_time_s, 1),
                _num(r.trained["ultralytics"].run.wall_time_s, 1),
                _reused(r),
            ]
        )
    return lines


SUMMARY = ["", "ours", "Ultralytics", "ratio ours / Ultralytics", "difference ours - Ultralytics"]


def summary_cells(results: Sequence[SeedResult]) -> list[list[str]]:
    """The summary table's cells (columns :data:`SUMMARY`): mean +- sd per side, the mean paired
    ratio and difference with their t-intervals, the throughput and time ratios, the workers and
    torch threads used ('?': a seed cached before threads were recorded), the reused seeds."""
    lines = []
    for s in summaries(results):
        d = _digits(s.metric)
        sides = [
            f"{_num(m, d)} ± {_num(sd, d)}" if not math.isnan(sd) else _num(m, d)
            for m, sd in ((s.ours_mean, s.ours_sd), (s.theirs_mean, s.theirs_sd))
        ]
        ratio = _interval(s.ratio.mean, s.ratio.low, s.ratio.high, 3)
        if not s.paired:
            ratio += " (of the means)"
        difference = (
            "-"
            if s.difference is None
            else _interval(s.difference.mean, s.difference.low, s.difference.high, d, sign=True)
        )
        name = f"{s.metric} (our evaluator)" if s.paired else f"{s.metric}, mean"
        lines.append([name, *sides, ratio, difference])
    workers = [sorted({r.trained[side].run.workers for r in results}) for side in SIDES]
    lines.append(["loader workers used", *(", ".join(map(str, w)) for w in workers), "", ""])
    threads = [sorted({r.trained[side].run.threads for r in results}) for side in SIDES]
    lines.append(["torch CPU threads", *(", ".join(str(t or "?") for t in ts) for ts in threads), "", ""])
    reused = [[r.seed for r in results if r.trained[side].reused] for side in SIDES]
    lines.append(["seeds reused", *(", ".join(map(str, s)) or "none" for s in reused), "", ""])
    lines.append(["seeds", ", ".join(str(r.seed) for r in results), "", f"n = {len(results)}", ""])
    return lines


def statistics_notes(n: int) -> list[str]:
    level = round(LEVEL * 100)
    return [
        f"Seeds: each seed trains both sides with the one recipe at that seed; ratio and difference are paired "
        f"per seed (ours / Ultralytics, ours - Ultralytics of our evaluator's mAP). The summary gives per side "
        f"the mean ± sample standard deviation (ddof=1) over the {n} seed(s), and the mean of the per-seed "
        f"ratios and of the per-seed differences, each with its {level} % Student-t interval over the "
        f"per-seed paired values: mean ± t(0.975, n-1) · sd / √n (no interval with one seed: '-'). A ratio "
        f"over a zero mAP is undefined ('-').",
        "train images/s and wall time: the mean over the seeds per side and the ratio of the two means (no "
        "interval); reused seeds report the figures measured when they were trained.",
        "Latency is measured at the first seed only (the 'All models' table); params and GFLOPs do not "
        "depend on the seed. U-val: Ultralytics' own validator on their DetectionModel carrying each side's "
        "weights.",
        "curves.png: validation mAP50-95 after each epoch as each trainer measured it during training (ours: "
        "our evaluator; Ultralytics: their validator, rectangular batches), so the two sides' curves come "
        "from different validators; thin lines per seed, bold the mean over the seeds.",
    ]


def write_markdown(
    path: Path,
    title: str,
    results: Sequence[SeedResult],
    models: Sequence[dict[str, Any]],
    shared: dict[str, Any],
    reading: Sequence[str],
) -> Path:
    first = results[0].seed
    parts = [f"# {title}", "", "## Per seed", "", markdown_table(PER_SEED, per_seed_cells(results)), ""]
    parts += ["## Summary", "", markdown_table(SUMMARY, summary_cells(results)), ""]
    parts += [
        f"Per side: mean ± sample sd over the seeds. Ratio and difference of mAP: the mean of the per-seed "
        f"values and, in brackets, its {round(LEVEL * 100)} % t-interval over the per-seed paired values "
        "(none with one seed).",
        "",
    ]
    parts += [f"## All models at seed {first} (params, GFLOPs, latency)", "", rows_table(models), ""]
    parts += ["## Settings", "", *(f"- **{k}**: {v}" for k, v in shared.items()), ""]
    parts += ["## Reading the tables", "", *(f"- {n}" for n in [*statistics_notes(len(results)), *reading])]
    return write_text_atomic(path, "\n".join(parts) + "\n")


CSV_COLUMNS = ["mAP50-95", "mAP50", "ultralytics_mAP50-95", "ultralytics_mAP50", "params", "gflops", "latency_ms"]
RUN_COLUMNS = ["epochs", "train_images", "train_time_s", "images_per_s", "wall_time_s", "workers", "threads"]


def write_csv(path: Path, results: Sequence[SeedResult]) -> Path:
    """``compare.csv``: one row per seed and side, raw numbers (latency at the first seed only)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["seed", "side", "model", "reused", *CSV_COLUMNS, *RUN_COLUMNS, "cache"])
    for r in results:
        for side in SIDES:
            row, trained = r.rows[side], r.trained[side]
            cells = ["" if row.get(k) is None else row[k] for k in CSV_COLUMNS]
            runs = [getattr(trained.run, k) for k in RUN_COLUMNS]
            writer.writerow([r.seed, side, row["model"], trained.reused, *cells, *runs, trained.folder])
    return write_text_atomic(path, buffer.getvalue())


def write_summary_csv(path: Path, results: Sequence[SeedResult]) -> Path:
    """``summary.csv``: one row per statistic (``ratio_is`` says how its ratio is formed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "metric",
            "n",
            "ours_mean",
            "ours_sd",
            "ultralytics_mean",
            "ultralytics_sd",
            "ratio",
            "ratio_ci_low",
            "ratio_ci_high",
            "ratio_is",
            "difference",
            "difference_ci_low",
            "difference_ci_high",
        ]
    )

    def raw(v: float | None) -> Any:
        return "" if v is None or math.isnan(v) else v

    for s in summaries(results):
        d = s.difference
        how = "mean of per-seed ratios" if s.paired else "ratio of means"
        writer.writerow(
            [
                s.metric,
                s.n,
                *map(
                    raw, (s.ours_mean, s.ours_sd, s.theirs_mean, s.theirs_sd, s.ratio.mean, s.ratio.low, s.ratio.high)
                ),
                how,
                *map(raw, (None, None, None) if d is None else (d.mean, d.low, d.high)),
            ]
        )
    return write_text_atomic(path, buffer.getvalue())


def plot_curves(path: Path, results: Sequence[SeedResult]) -> Path:
    """``curves.png``: each side's validation mAP50-95 per epoch, every seed (:func:`plot_seed_curves`)."""
    return plot_seed_curves(path, {side: [r.trained[side].run.curve for r in results] for side in SIDES})


TERMINAL_PER_SEED = {0: "seed", 1: "ours", 2: "Ultralytics", 3: "ratio", 4: "difference", 13: "reused"}
TERMINAL_SUMMARY = ["", "ours", "Ultralytics", "ours / U", "ours - U"]


def terminal_tables(results: Sequence[SeedResult], title: str) -> list[Table]:
    """For the terminal: mAP50-95 per seed (the other columns are in compare.md) and the summary."""
    per_seed = [[row[k] for k in TERMINAL_PER_SEED] for row in per_seed_cells(results)]
    tables = []
    for name, header, cells in (
        (f"{title}: mAP50-95 (our evaluator) per seed", list(TERMINAL_PER_SEED.values()), per_seed),
        (
            f"Summary: mean ± sd; ratio and difference with the {round(LEVEL * 100)} % t-interval over the "
            "per-seed paired values (U: Ultralytics)",
            TERMINAL_SUMMARY,
            summary_cells(results),
        ),
    ):
        table = Table(title=name, title_justify="left", min_width=len(name))
        for k, text in enumerate(header):
            table.add_column(text, justify="left" if k == 0 else "right")
        for row in cells:
            table.add_row(*row)
        tables.append(table)
    return tables
