"""The training loop end to end, on tiny models and a handful of generated images."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO, run_task

TRAIN = str(REPO / "train.py")


def train(
    tmp_path, *args: str, check: bool = True, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    # not the WANDB_* of this process: a wandb service started by another test would be inherited
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    result = subprocess.run(
        [sys.executable, TRAIN, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**inherited, **(env or {})},
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def rows(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_directory_holds_everything(tmp_path, tiny_run) -> None:
    run_task("train.py", *tiny_run, "train.epochs=2")
    run = tmp_path / "runs" / "train" / "exp"
    for name in (
        "config.yaml",
        "metrics.csv",
        "results.png",
        "weights/last.pt",
        "weights/best.pt",
        "metrics.json",
        "pr_curves.png",
        "confusion_matrix.png",
    ):
        assert (run / name).is_file(), name
    table = rows(run / "metrics.csv")
    assert [r["epoch"] for r in table] == ["0", "1"]
    for key in (
        "train/box",
        "train/cls",
        "train/dfl",
        "lr/weights",
        "mAP50-95",
        "mAP50",
        "precision",
        "recall",
        "epoch_time_s",
    ):
        assert key in table[0]
    checkpoint = torch.load(run / "weights" / "last.pt", weights_only=True)
    assert {"raw_model", "optimizer", "scaler", "ema_updates", "state", "rng", "config"} <= set(checkpoint["train"])
    assert checkpoint["epoch"] == 2


@pytest.mark.slow  # a subprocess run of two epochs
def test_a_training_log_file_reads_well(tmp_path, tiny_run) -> None:
    """``python train.py > train.log 2>&1``: one progress line per epoch and the final table row by row,
    nothing wrapped at 80 columns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "COLUMNS"}
    with open(tmp_path / "train.log", "w") as log:
        subprocess.run(
            [sys.executable, TRAIN, *tiny_run, "train.epochs=2"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,  # no terminal anywhere, as in CI or a cluster job
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=600,
            check=True,
        )
    lines = (tmp_path / "train.log").read_text().splitlines()
    progress = [line for line in lines if re.match(r"epoch \d/2 ", line)]
    whole = r"epoch \d/2 ━{40} 2/2 \d+:\d\d:\d\d box \S+ cls \S+ dfl \S+ lr \S+ inst \d+ \S+ img/s$"
    assert len(progress) == 2 and all(re.match(whole, p) for p in progress)  # at 80 columns: a shorter bar, "0…"
    assert any(re.match(r"[\d,]+ parameters, .* process\(es\), cpu; run directory \S+$", line) for line in lines)
    assert any(re.match(r"mAP50-95 \S+  mAP50 \S+  mAP75 \S+  AR100 \S+$", line) for line in lines)  # the title
    assert any(re.match(r"┃ class +┃ +images ┃ +instances ┃ +AP50-95 ┃$", line) for line in lines)
    assert any(re.match(r"│ rectangle +│ +\d+ │ +\d+ │ +\S+ │$", line) for line in lines)
    assert not any(line.startswith(("checking", "validating", "evaluating")) for line in lines)  # short work: no lines


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_run) -> None:
    run_task("train.py", *tiny_run, "train.epochs=3", "train.save_period=1")
    run = tmp_path / "runs" / "train" / "exp"
    uninterrupted = rows(run / "metrics.csv")
    final = torch.load(run / "weights" / "last.pt", weights_only=True)
    # an interruption after epoch 1: continue from that epoch's checkpoint, in the same run directory
    run_task("train.py", f"resume={run / 'weights' / 'epoch1.pt'}")
    resumed = rows(run / "metrics.csv")
    assert [r["epoch"] for r in resumed] == ["0", "1", "2"]
    for a, b in zip(uninterrupted, resumed):
        for key in a:
            if key not in ("epoch_time_s", "images_per_s"):
                assert a[key] == b[key], (a["epoch"], key)
    again = torch.load(run / "weights" / "last.pt", weights_only=True)
    for name in ("raw_model", "optimizer"):
        ours, theirs = final["train"][name], again["train"][name]
        if name == "optimizer":
            ours, theirs = ours["state"], theirs["state"]
            ours = {f"{k}.{n}": v for k, d in ours.items() for n, v in d.items()}
            theirs = {f"{k}.{n}": v for k, d in theirs.items() for n, v in d.items()}
        for key in ours:
            torch.testing.assert_close(theirs[key], ours[key], atol=1e-6, rtol=0)
    for key in final["model"]:
        torch.testing.assert_close(again["model"][key], final["model"][key], atol=1e-6, rtol=0)
    assert again["train"]["state"]["best_fitness"] == pytest.approx(final["train"]["state"]["best_fitness"], abs=1e-6)


@pytest.mark.slow  # resuming is covered by test_resume_reproduces_the_uninterrupted_run in the default run
def test_extending_a_finished_run(tmp_path, tiny_run) -> None:
    run_task("train.py", *tiny_run, "train.epochs=1")
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    run_task("train.py", f"resume={last}", "train.epochs=2")
    table = rows(tmp_path / "runs" / "train" / "exp" / "metrics.csv")
    assert [r["epoch"] for r in table] == ["0", "1"]


def test_sigterm_writes_last_and_says_how_to_resume(tmp_path, tiny_run) -> None:
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *tiny_run, "train.epochs=200", "train.batch=2", "train.nbs=2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "Resume with: python train.py resume=" in err.replace("\n", "")
    state = torch.load(last, weights_only=True)["train"]["state"]
    assert state["epoch"] < 200


@pytest.mark.slow
def test_sigkill_never_leaves_a_broken_last_checkpoint(tmp_path, tiny_run) -> None:
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    for delay in (0.0, 0.35, 0.7):
        proc = subprocess.Popen(
            [
                sys.executable,
                TRAIN,
                *tiny_run,
                "train.epochs=200",
                "exist_ok=true",
                "train.save_period=1",
                "train.val=false",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 240
        while not last.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=60)
        checkpoint = torch.load(last, weights_only=True)
        assert checkpoint["format"] == "detector"
        last.unlink()


@pytest.mark.slow  # a subprocess run; tests/train/test_loggers.py's offline W&B test stays in the default suite
def test_wandb_offline_leaves_a_syncable_run(tmp_path, tiny_run) -> None:
    env = {
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }
    train(tmp_path, *tiny_run, "train.epochs=1", "logger=wandb", "logger.wandb.mode=offline", env=env)
    runs = list((tmp_path / "runs" / "train" / "exp" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = b"".join(p.read_bytes() for p in runs[0].glob("run-*.wandb"))
    assert b"mAP50" in data and b"train/box" in data


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path, tiny_run) -> None:
    torchrun = shutil.which("torchrun") or str(REPO / "torchrun")
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", TRAIN, *tiny_run, "train.epochs=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs" / "train").iterdir())
    assert [p.name for p in runs] == ["exp"]  # one run directory
    table = rows(runs[0] / "metrics.csv")
    assert len(table) == 1
    assert torch.load(runs[0] / "weights" / "last.pt", weights_only=True)["train"]["state"]["global_step"] >= 2


def test_non_finite_losses_stop_the_run_and_keep_the_last_checkpoint(tmp_path, monkeypatch, tiny_run) -> None:
    import detector.tasks.train as entry
    from detector.config import compose
    from detector.errors import ConfigError

    class Exploding:
        def __init__(self, *args, **kwargs):
            from detector.losses import build_loss

            self.inner = build_loss(*args, **kwargs)
            self.calls = 0

        def __call__(self, out, targets, batch_size):
            self.calls += 1
            loss, items = self.inner(out, targets, batch_size)
            return (loss * float("nan"), items) if self.calls > 2 else (loss, items)

    monkeypatch.setattr(entry, "build_loss", Exploding)
    cfg = compose(
        "train",
        [
            *tiny_run,
            "train.epochs=5",
            "train.max_nonfinite=3",
            "train.batch=2",
            "train.nbs=2",
        ],
    )
    with pytest.raises(ConfigError, match="3 non-finite losses in a row"):
        entry.run(cfg)
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the first epoch's checkpoint is intact


def write_easy_dataset(root) -> str:
    """Four 128-px images, three large solid squares or discs each: what a working loop must learn."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(4):
        image = np.full((128, 128, 3), 40, np.uint8)
        lines = []
        for k in range(3):
            c, s = int(rng.integers(0, 2)), int(rng.integers(28, 48))
            x, y = int(rng.integers(0, 128 - s)), k * 40 + 2
            if c == 0:
                cv2.rectangle(image, (x, y), (x + s - 1, y + s - 1), (230, 60, 60), -1)
            else:
                cv2.circle(image, (x + s // 2, y + s // 2), s // 2, (60, 200, 60), -1)
            lines.append(f"{c} {(x + s / 2) / 128:.6f} {(y + s / 2) / 128:.6f} {s / 128:.6f} {s / 128:.6f}")
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        (root / "labels" / f"{i}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images\nval: images\nnames: [square, disc]\n")
    return str(data)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["yolov8n", "yolo26n"])
def test_it_learns(tmp_path, model: str) -> None:
    """yolov8n (and YOLO26n: end-to-end loss, scored by its one-to-one branch's top-k) trained on four
    images reaches mAP50 >= 0.9 on those same images."""
    import json

    data = write_easy_dataset(tmp_path / "easy")
    train(
        tmp_path,
        "data=yolo",
        f"data.file={data}",
        f"model={model}",
        "imgsz=128",
        "augment=none",
        "device=cpu",
        "train.epochs=90",
        "train.batch=2",
        "train.nbs=2",
        "train.workers=0",
        "schedule.warmup_epochs=0",
        "schedule.final_lr_ratio=1.0",
        "optim.lr=0.01",
        timeout=1500,  # YOLO26n: 100 s on 2 idle cores, 10 min on busy ones (its one-to-one branch learns late)
    )
    metrics = json.loads((tmp_path / "runs" / "train" / "exp" / "metrics.json").read_text())
    assert metrics["mAP50"] >= 0.9, metrics
