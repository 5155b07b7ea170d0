"""Hyper-parameter search: train.py's task returns the run's fitness, and ``-m hparams_search=optuna``
runs each trial in its own run directory and writes the best parameters at the end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from detector.config import compose
from detector.errors import ConfigError
from detector.tasks.command_line import CommandLine
from detector.tasks.train import objective, run_fitness
from tests.helpers import REPO, run_script

TRAIN_IMAGES = 8  # the tiny dataset's train split


def box_fitness(run_dir: Path) -> float:
    """The fitness without validation, from metrics.csv: minus the smallest epoch box-loss sum."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return max(-float(row["train/box"]) * TRAIN_IMAGES for row in csv.DictReader(f))


def test_objective_is_the_runs_fitness(tmp_path: Path, tiny_run: list[str], capsys) -> None:
    cfg = compose("train", [*tiny_run, "train.epochs=2", "train.val=false"])
    value = objective(cfg, CommandLine(job=3))
    run_dir = tmp_path / "runs" / "train" / "exp"
    assert isinstance(value, float) and value == run_fitness(run_dir)
    assert value < 0 and value == pytest.approx(box_fitness(run_dir), rel=1e-5)  # the CSV keeps 6 digits
    said = capsys.readouterr().err.replace("\n", "")  # rich wraps long lines
    assert f"job 3: fitness {value:.6g}, minus the box loss (train.val=false), in {run_dir}" in said
    with pytest.raises(ConfigError, match="exist_ok=true in a sweep"):
        objective(compose("train", [*tiny_run, "exist_ok=true"]), CommandLine(job=0))


@pytest.mark.slow  # 20 s on an idle machine (the command line's start and two runs); the objective: above
def test_optuna_sweep_of_two_trials(tmp_path: Path, tiny_run: list[str]) -> None:
    result = run_script(
        str(REPO / "train.py"),
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        *tiny_run,
        "train.epochs=1",
        "train.val=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs" / "train"
    assert sorted(p.name for p in runs.iterdir()) == ["exp", "exp2", "sweeps"]  # a run directory per trial
    assert "job 0: fitness" in result.stderr and "job 1: fitness" in result.stderr
    fitness = {name: run_fitness(runs / name) for name in ("exp", "exp2")}
    for name, value in fitness.items():
        assert value == pytest.approx(box_fitness(runs / name), rel=1e-5)
    configs = {name: OmegaConf.load(runs / name / "config.yaml") for name in fitness}
    params = yaml.safe_load((REPO / "configs" / "hparams_search" / "optuna.yaml").read_text())["hydra"]["sweeper"]
    searched = list(params["params"])
    assert [OmegaConf.select(configs["exp"], k) for k in searched] != [
        OmegaConf.select(configs["exp2"], k) for k in searched
    ]
    assert 0.001 <= configs["exp"].optim.lr <= 0.05 and 4.0 <= configs["exp"].train.box <= 12.0

    (sweep,) = (runs / "sweeps").iterdir()
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(fitness, key=fitness.get)
    assert results["best_value"] == pytest.approx(fitness[best], rel=1e-12)
    assert sorted(results["best_params"]) == sorted(searched)
    for key, value in results["best_params"].items():
        assert OmegaConf.select(configs[best], key) == pytest.approx(value, rel=1e-12), key
