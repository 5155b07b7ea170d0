"""Output where no terminal is: tables at their natural width (or COLUMNS), progress as a line now and
then; at a terminal, a progress bar. The tasks print through ``detector.console``."""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from detector.console import NATURAL_WIDTH, ProgressReport, make_console
from tests.helpers import REPO


def test_a_console_without_terminal_takes_the_natural_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert not make_console().is_terminal  # pytest captures stdout
    assert make_console().width == make_console(stderr=True).width == NATURAL_WIDTH
    monkeypatch.setenv("COLUMNS", "132")
    assert make_console().width == 132


def test_every_task_prints_through_make_console() -> None:
    """No module of detector/ builds a rich Console itself, but detector/console.py (predict.py is
    another change's)."""
    builders = []
    for path in sorted((REPO / "detector").rglob("*.py")):
        if path.name == "console.py" and path.parent.name == "detector" or path.name == "predict.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Console":
                builders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert builders == []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_terminal_progress_is_a_line_every_interval() -> None:
    out = io.StringIO()
    clock = Clock()
    report = ProgressReport(Console(file=out, width=NATURAL_WIDTH), "checking train", interval=30, clock=clock)
    for done in range(1, 1001):
        clock.now = done * 0.1  # 100 s for 1,000 images
        report(done, 1000)
    report.close()
    assert out.getvalue().splitlines() == [
        "checking train: 300/1,000 images (30%), 0:30",
        "checking train: 600/1,000 images (60%), 1:00",
        "checking train: 900/1,000 images (90%), 1:30",
        "checking train: 1,000/1,000 images (100%), 1:40",
    ]
    quiet = io.StringIO()
    short = ProgressReport(Console(file=quiet), "evaluating val", interval=30, clock=Clock())
    short(10, 10)
    short.close()
    assert quiet.getvalue() == ""  # work shorter than the interval writes nothing


def test_at_a_terminal_progress_is_a_bar() -> None:
    out = io.StringIO()
    report = ProgressReport(Console(file=out, force_terminal=True, width=100), "checking val", interval=30)
    for done in range(1, 6):
        report(done, 5)
    report.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "checking val" in text and "5/5 images" in text and "━" in text


def test_tables_keep_their_width_in_a_log_file(tmp_path) -> None:
    """``inspect_layers.py > file``: every layer's row on one line, whole (at 80 columns its path was
    folded over several lines), and the caption too."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    command = [sys.executable, str(REPO / "scripts" / "inspect_layers.py"), "model=yolov8n", "imgsz=64"]
    log = tmp_path / "layers.log"
    with open(log, "w") as f:
        subprocess.run(
            command,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.PIPE,
            env=env,
            timeout=300,
            check=True,
        )
    lines = log.read_text().splitlines()
    rows = [
        line for line in lines if re.match(r"^\s*\d+\s+(backbone|neck|head)\.\S+\s+(regular|pointwise|depthwise)", line)
    ]
    assert len(rows) == 64  # yolov8n's 64 convolutions
    assert any(re.match(r"^\s*0\s+backbone\.stem\.conv\s+regular\s+3->16\s+3x3 s2 p1\s", line) for line in rows)
    assert not any(re.match(r"^\s+[a-z0-9.]+\s*$", line) for line in lines)  # no folded remainder of a path
    assert any(re.match(r"^64 convolutions, .* output sizes disagree with the formula\s*$", line) for line in lines)
