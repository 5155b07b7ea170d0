"""``python scripts/check_data.py``: the dataset doctor on its own, with a table per split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from detector.config import instantiate_node
from detector.config.schemas import CheckDataConfig
from detector.console import make_console, progress_report
from detector.data.index import SplitIndex
from detector.data.verify import PROBLEM_KINDS, verify_split
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine

# box-size bins: square root of the box area in pixels of the original image (COCO's small /
# medium / large boundaries are 32 and 96)
SIZE_EDGES = (0, 8, 16, 32, 64, 96, 128, 256, float("inf"))


def size_histogram(index: SplitIndex) -> list[tuple[str, int]]:
    boxes = index.boxes[~index.crowd]
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    counts, _ = np.histogram(side, bins=np.array(SIZE_EDGES))
    labels = [f"{a:g}-{b:g}" if b != float("inf") else f">={a:g}" for a, b in zip(SIZE_EDGES, SIZE_EDGES[1:])]
    return list(zip(labels, counts.tolist()))


def split_table(index: SplitIndex) -> Table:
    title = f"{index.name}: {index.summary().split(': ', 1)[1]}"
    table = Table(title=title, title_justify="left", min_width=len(title))  # the title whole on one line
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("images listed", f"{index.num_listed:,}")
    table.add_row("images usable", f"{len(index):,}")
    table.add_row("backgrounds (no objects)", f"{index.backgrounds:,}")
    table.add_row("instances", f"{index.instances:,}")
    if index.crowd.any():
        table.add_row("crowd regions", f"{int(index.crowd.sum()):,}")
    counts = np.bincount(index.classes[~index.crowd], minlength=len(index.names))
    table.add_section()
    for c, name in enumerate(index.names):
        table.add_row(f"class {c}: {name}", f"{int(counts[c]):,}")
    table.add_section()
    for label, n in size_histogram(index):
        table.add_row(f"box size {label} px", f"{n:,}")
    return table


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    """Check every configured split, print its table and every problem, write the reports."""
    settings: CheckDataConfig = OmegaConf.to_object(cfg)
    console = make_console()
    source = instantiate_node(settings.data, "data")
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    for split in settings.splits:
        with progress_report(console, f"checking {split}") as report:
            index = verify_split(source.split(split), progress=report)
        console.print(split_table(index))
        if index.problems:
            title = f"{split}: {len(index.problems)} problems"
            problems = Table(title=title, title_justify="left", min_width=len(title))
            for column in ("file", "line", "problem", "detail"):
                problems.add_column(column, overflow="fold")
            for p in index.problems:
                problems.add_row(p.file, str(p.line or ""), p.kind, p.message)
            console.print(problems)
        report = index.write_report(run_dir / f"{split}_problems.txt")
        console.print(f"{index.summary()} (report: {report})")
    known = ", ".join(PROBLEM_KINDS)
    console.print(f"[dim]problem kinds checked: {known}[/dim]")
    return run_dir
