"""scripts/check_data.py and scripts/show_batch.py, run as a user runs them."""

from __future__ import annotations

import os

import cv2

from tests.data.fixtures import write_problem_dataset
from tests.helpers import REPO, run_script

CHECK = str(REPO / "scripts" / "check_data.py")
SHOW = str(REPO / "scripts" / "show_batch.py")


def small_shapes(tmp_path) -> list[str]:
    return ["data.num_train=12", "data.num_val=4", "data.imgsz=128", f"data.root={tmp_path / 'shapes'}"]


def test_check_data_on_the_built_in_dataset_prints_the_table(tmp_path) -> None:
    result = run_script(CHECK, *small_shapes(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("images usable", "backgrounds", "instances", "class 0: circle", "class 5: cross", "box size"):
        assert expected in out
    assert "train: 12 images" in out and "val: 4 images" in out
    titles = [line for line in out.splitlines() if line.startswith(("train: ", "val: ")) and "instances; " in line]
    assert len(titles) == 4  # per split the table's title and the summary line, each whole on one line
    assert (tmp_path / "runs" / "check_data" / "exp" / "train_problems.txt").is_file()


def test_check_data_lists_every_problem(tmp_path) -> None:
    data_yaml, expected = write_problem_dataset(tmp_path / "bad")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # piped: the natural width, paths whole
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, CHECK, "data=yolo", f"data.file={data_yaml}", "splits=[train]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "runs" / "check_data" / "exp" / "train_problems.txt").read_text()
    for kind, places in expected.items():
        for name, line in places:
            assert f"{name}:{line}: {kind}" in report or (line == 0 and f"{name}: {kind}" in report)
            assert kind in result.stdout
    assert f"{sum(len(v) for v in expected.values())} problems" in result.stdout


def test_check_data_on_a_missing_path_is_one_line(tmp_path) -> None:
    result = run_script(CHECK, "data=yolo", f"data.file={tmp_path / 'nope.yaml'}", cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope.yaml" in lines[0] and "Traceback" not in result.stderr


def test_show_batch_writes_a_grid(tmp_path) -> None:
    result = run_script(SHOW, *small_shapes(tmp_path), "imgsz=96", "batch=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(tmp_path / "runs" / "show_batch" / "exp" / "train_batch.png"))
    assert image is not None and image.shape == (2 * 96 + 4, 2 * 96 + 4, 3)  # 2 x 2 grid, 4 px gap
