"""Prediction's progress: a bar on a terminal, plain periodic lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from detector.predict.progress import PredictProgress


def test_plain_lines_where_the_output_is_not_a_terminal() -> None:
    out = io.StringIO()
    with PredictProgress(Console(file=out, force_terminal=False), total=3, unit="frames", interval=0.0) as progress:
        for _ in range(3):
            progress.advance()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "predict: 1/3 frames (33%)",
        "predict: 2/3 frames (67%)",
        "predict: 3/3 frames (100%)",
        "predict: 3/3 frames (100%)",  # the closing line
    ]
    assert lines[-1].endswith("frames/s")


def test_lines_come_every_interval_and_a_stream_has_no_total() -> None:
    out = io.StringIO()
    with PredictProgress(Console(file=out, force_terminal=False), total=None, interval=3600.0) as progress:
        for _ in range(50):
            progress.advance()
    assert out.getvalue().splitlines()[0].startswith("predict: 50 images, ")  # only the closing line


def test_a_bar_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with PredictProgress(console, total=4) as progress:
        for _ in range(4):
            progress.advance()
        progress.print("a line above the bar")
    text = out.getvalue()
    assert "4/4" in text and "images" in text and "a line above the bar" in text
    assert "predict: 4/4" not in text  # no plain line
