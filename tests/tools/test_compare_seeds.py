"""The multi-seed head-to-head without training: the statistics against hand-computed values, the
seed list, the cache keys, the reuse of finished seeds (and the retraining of partial ones) and the
reports. The end-to-end run that trains both sides: test_compare.py, test_compare_train_mode_head_to_head."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from detector.errors import ConfigError
from detector.tools.compare.cache import (
    TRAINED_JSON,
    Side,
    TrainedSeed,
    cache_key,
    data_identity,
    read_trained,
    seed_dir,
    seed_list,
    source_digest,
    their_key_inputs,
    trained_seed,
)
from detector.tools.compare.headtohead import TrainedRun
from detector.tools.compare.stats import Paired, sample_sd, summarize, t_interval

T_975_DF2 = 4.302652729911275  # Student-t 0.975 quantile, 2 degrees of freedom
OURS = [0.40, 0.42, 0.38]
THEIRS = [0.41, 0.40, 0.39]


# --------------------------------------------------------------------------- statistics


def test_paired_statistics_by_hand() -> None:
    s = summarize("mAP50-95", Paired(OURS, THEIRS))
    assert s.n == 3
    assert s.ours_mean == pytest.approx(0.40) and s.ours_sd == pytest.approx(0.02)  # sqrt((0 + 4e-4 + 4e-4) / 2)
    assert s.theirs_mean == pytest.approx(0.40) and s.theirs_sd == pytest.approx(0.01)  # sqrt((1e-4 + 0 + 1e-4) / 2)

    # differences -0.01, +0.02, -0.01: mean 0, sd sqrt(6e-4 / 2) = 0.017320508, half width t * sd / sqrt(3) = t * 0.01
    assert s.difference is not None
    assert s.difference.mean == pytest.approx(0.0, abs=1e-12)
    assert s.difference.low == pytest.approx(-T_975_DF2 * 0.01)
    assert s.difference.high == pytest.approx(T_975_DF2 * 0.01)

    # ratios 0.40/0.41, 0.42/0.40, 0.38/0.39
    ratios = [0.975609756097561, 1.05, 0.9743589743589743]
    m = sum(ratios) / 3
    sd = math.sqrt(sum((r - m) ** 2 for r in ratios) / 2)
    assert s.ratio.mean == pytest.approx(m)
    assert (s.ratio.low, s.ratio.high) == pytest.approx(
        (m - T_975_DF2 * sd / math.sqrt(3), m + T_975_DF2 * sd / math.sqrt(3))
    )
    assert (s.ratio.mean, s.ratio.low, s.ratio.high) == pytest.approx((0.9999896, 0.8923896, 1.1075895), abs=1e-7)


def test_one_seed_has_no_interval() -> None:
    s = summarize("mAP50", Paired([0.5], [0.4]))
    assert s.ratio.mean == pytest.approx(1.25) and s.difference.mean == pytest.approx(0.1)
    for value in (s.ratio.low, s.ratio.high, s.difference.low, s.difference.high, s.ours_sd, s.theirs_sd):
        assert math.isnan(value)
    assert math.isnan(sample_sd([1.0])) and math.isnan(t_interval([]).mean)


def test_unpaired_summary_is_the_ratio_of_means_and_zero_is_undefined() -> None:
    s = summarize("train images/s", Paired([10.0, 30.0], [10.0, 10.0]), paired=False)
    assert s.ratio.mean == pytest.approx(2.0) and math.isnan(s.ratio.low) and s.difference is None
    zero = summarize("mAP50-95", Paired([0.1, 0.2], [0.0, 0.1]))  # a ratio over 0 is undefined, so is its mean
    assert math.isnan(zero.ratio.mean) and zero.difference.mean == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same seeds"):
        Paired([0.1], [0.1, 0.2])


# --------------------------------------------------------------------------- seeds


def test_seed_list() -> None:
    assert seed_list([], 7) == [7]
    assert seed_list([3, 0, 1], 7) == [3, 0, 1]
    with pytest.raises(ConfigError, match=r"seeds=\[0, 1, 0\]: each seed once \(repeated: 0\)"):
        seed_list([0, 1, 0], 7)


def test_repeated_seeds_are_refused_before_any_work(tmp_path, monkeypatch) -> None:
    from tests.helpers import run_task

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="each seed once"):
        run_task("compare.py", "mode=train", "seeds=[1,1]", "device=cpu")
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- cache keys


@pytest.fixture
def sides(tmp_path, monkeypatch):
    """``sides(root, *overrides, digest=..., threads=...)``: the keys of the two training sides of a
    compare config (nothing is trained or generated), with our source digest ``digest`` and the
    process's torch thread count ``threads``."""
    import torch
    from omegaconf import OmegaConf

    import detector.tasks.compare as task
    from detector.config import compose

    def keys(root: Path, *overrides: str, digest: str = "code-a", threads: int = 2) -> dict[str, str]:
        monkeypatch.setattr(task, "source_digest", lambda *a: digest)
        cfg = compose("compare", ["mode=train", "device=cpu", f"data.root={root}", *overrides])
        settings = OmegaConf.to_object(cfg)
        ours = settings.recipe.threads or threads
        found = task.training_sides(
            cfg.data, settings, settings.recipe, "yolov8n.yaml", torch.device("cpu"), tmp_path / "d.yaml", ours
        )
        return {s.name: s.key for s in found}

    return keys


def test_cache_keys(tmp_path, sides) -> None:
    root = tmp_path / "shapes"
    base = sides(root)
    # not in the keys: the seed (it is the folder), the run's name and project, where generated data lies
    assert base == sides(tmp_path / "moved", "recipe.seed=5", "seeds=[3]", "name=other", "project=elsewhere")
    lr = sides(root, "recipe.lr=0.02")
    assert lr["ours"] != base["ours"] and lr["ultralytics"] != base["ultralytics"]
    data = sides(root, "data.num_train=20")
    assert data["ours"] != base["ours"] and data["ultralytics"] != base["ultralytics"]
    code = sides(root, digest="code-b")  # our code changed: ours retrains, theirs is reused
    assert code["ours"] != base["ours"] and code["ultralytics"] == base["ultralytics"]
    only_ours = sides(root, "recipe.ours=['train.clip=5.0']")
    assert only_ours["ours"] != base["ours"] and only_ours["ultralytics"] == base["ultralytics"]
    # our torch thread count changes our trajectory (theirs is their trainer's own)
    for threads in (sides(root, threads=1), sides(root, "recipe.threads=1")):
        assert threads["ours"] != base["ours"] and threads["ultralytics"] == base["ultralytics"]
    assert sides(root, "recipe.threads=2", threads=1) == base
    # the seed is the folder, not the key
    assert seed_dir(tmp_path, "ours", base["ours"], 0) != seed_dir(tmp_path, "ours", base["ours"], 1)


def test_a_negative_thread_count_is_refused() -> None:
    from detector.config.schemas import CompareRecipeConfig
    from detector.tools.compare.headtohead import check_recipe_model

    assert check_recipe_model(CompareRecipeConfig(threads=1)) == "yolov8n.yaml"
    with pytest.raises(ConfigError, match=r"recipe.threads=-1"):
        check_recipe_model(CompareRecipeConfig(threads=-1))


def test_source_digest_and_data_identity(tmp_path) -> None:
    package, configs = tmp_path / "detector", tmp_path / "configs"
    (package / "sub").mkdir(parents=True)
    configs.mkdir()
    (package / "sub" / "a.py").write_text("x = 1\n")
    (configs / "c.yaml").write_text("a: 1\n")
    before = source_digest(package, configs)
    (package / "sub" / "a.pyc").write_bytes(b"compiled")  # not source
    (tmp_path / "notes.txt").write_text("elsewhere")
    assert source_digest(package, configs) == before
    (configs / "c.yaml").write_text("a: 2\n")
    assert source_digest(package, configs) != before

    shapes = {"_target_": "detector.data.sources.ShapesSource", "root": "/a", "num_train": 8}
    assert data_identity(shapes) == data_identity({**shapes, "root": "/b"})
    assert data_identity(shapes) != data_identity({**shapes, "num_train": 9})
    crowd = {**shapes, "_target_": "detector.data.sources.CrowdSource"}
    assert data_identity(crowd)["generator"] != data_identity(shapes)["generator"]
    (tmp_path / "data.yaml").write_text("names: [a]\n")
    yolo = {"_target_": "detector.data.sources.YoloSource", "file": str(tmp_path / "data.yaml")}
    first = cache_key(data_identity(yolo))
    (tmp_path / "data.yaml").write_text("names: [b]\n")
    assert cache_key(data_identity(yolo)) != first
    assert their_key_inputs("yolov8n.yaml", {"seed": 1, "project": "p", "lr0": 0.01}, shapes, {})["args"] == {
        "lr0": 0.01
    }


# --------------------------------------------------------------------------- reuse


def fake_training(checkpoint: Path, calls: list[int]):
    """A side's ``train``: no training, our checkpoint placed where a run would put its best.pt."""

    def train(seed: int, folder: Path) -> TrainedRun:
        calls.append(seed)
        run_dir = folder / "train" / "ours"
        (run_dir / "weights").mkdir(parents=True)
        shutil.copy(checkpoint, run_dir / "weights" / "best.pt")
        return TrainedRun(run_dir / "weights" / "best.pt", run_dir, 2, 16, 1.5, 3.0, 2, 1, [(1, 0.1), (2, 0.2)])

    return train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from tests.tools.test_compare import write_ours

    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    write_ours(path)
    return path


def test_finished_seeds_are_reused_and_partial_ones_retrained(tmp_path, checkpoint) -> None:
    calls: list[int] = []
    side = Side("ours", "abc123", {"side": "ours", "x": 1}, fake_training(checkpoint, calls))
    cache = tmp_path / "trained"

    first = trained_seed(side, 0, cache, reuse=True, log=lambda m: None)
    assert calls == [0] and not first.reused
    record = json.loads((first.folder / TRAINED_JSON).read_text())
    assert record["run"]["weights"] == "train/ours/weights/best.pt" and record["inputs"] == side.inputs
    assert record["run"]["curve"] == [[1, 0.1], [2, 0.2]] and record["key"] == "abc123" and record["seed"] == 0

    mtime = (first.folder / TRAINED_JSON).stat().st_mtime_ns
    again = trained_seed(side, 0, cache, reuse=True, log=lambda m: None)
    assert calls == [0] and again.reused and (first.folder / TRAINED_JSON).stat().st_mtime_ns == mtime
    assert again.run.curve == [(1, 0.1), (2, 0.2)] and again.run.workers == 2 and again.run.threads == 1
    assert again.run.weights == first.folder / "train" / "ours" / "weights" / "best.pt"
    assert again.run.images_per_s == pytest.approx(16 / 1.5)

    # a partial folder (no trained.json): removed and trained from scratch
    partial = seed_dir(cache, "ours", "abc123", 1)
    (partial / "train" / "ours" / "weights").mkdir(parents=True)
    (partial / "stale.txt").write_text("left by an interrupted run")
    done = trained_seed(side, 1, cache, reuse=True, log=lambda m: None)
    assert calls == [0, 1] and not done.reused and not (partial / "stale.txt").exists()
    assert (partial / TRAINED_JSON).is_file()

    # reuse=false retrains a finished seed; a missing best.pt or another key is not a finished seed
    assert not trained_seed(side, 0, cache, reuse=False, log=lambda m: None).reused and calls == [0, 1, 0]
    (first.folder / "train" / "ours" / "weights" / "best.pt").unlink()
    assert read_trained(first.folder, "abc123", 0) is None
    assert read_trained(partial, "other", 1) is None and read_trained(partial, "abc123", 2) is None
    (partial / TRAINED_JSON).write_text("{not json")
    assert read_trained(partial, "abc123", 1) is None


def test_ours_trains_on_the_thread_count_it_is_given(tmp_path, checkpoint) -> None:
    """Whatever count the process has (Ultralytics' device selection sets its own), our side trains
    on the count it is given, and the run records it."""
    import torch

    from detector.checkpoint import write_checkpoint
    from detector.tools.compare.headtohead import train_ours

    seen: list[int] = []

    def train() -> Path:
        seen.append(torch.get_num_threads())
        (tmp_path / "weights").mkdir()
        write_checkpoint(
            tmp_path / "weights" / "last.pt",
            {"format": "detector", "train": {"state": {"epoch": 1, "stale_epochs": 0}}},
        )
        shutil.copy(checkpoint, tmp_path / "weights" / "best.pt")
        (tmp_path / "metrics.csv").write_text("epoch,epoch_time_s,images_per_s,mAP50-95\n0,2.0,8.0,0.1\n")
        return tmp_path

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as Ultralytics' trainer leaves it on a 2-core machine
    try:
        run = train_ours(train, epochs=1, workers=0, patience=100, threads=3)
    finally:
        torch.set_num_threads(before)
    assert seen == [3] and run.threads == 3
    assert run.train_images == 16 and run.curve == [(1, 0.1)]


def test_an_interrupted_run_of_ours_is_not_finished(tmp_path) -> None:
    """Our loop returns normally after Ctrl-C; its last.pt's loop state tells an interrupt from the end."""
    from detector.checkpoint import write_checkpoint
    from detector.tools.compare.headtohead import training_finished

    def last(epoch: int, stale: int) -> Path:
        state = {"epoch": epoch, "stale_epochs": stale}
        return write_checkpoint(tmp_path / "last.pt", {"format": "detector", "train": {"state": state}})

    assert training_finished(last(epoch=3, stale=0), epochs=3, patience=100)  # every epoch
    assert training_finished(last(epoch=2, stale=5), epochs=3, patience=5)  # stopped for patience
    assert not training_finished(last(epoch=2, stale=0), epochs=3, patience=100)  # interrupted
    assert not training_finished(tmp_path / "missing.pt", epochs=3, patience=100)


# --------------------------------------------------------------------------- reports


def test_reports_of_made_up_seeds(tmp_path) -> None:
    from detector.tools.compare.seeds_report import (
        SeedResult,
        plot_curves,
        summary_cells,
        write_csv,
        write_markdown,
        write_summary_csv,
    )

    def seed(n: int, ours: float, theirs: float, reused: bool) -> SeedResult:
        trained, rows = {}, {}
        for side, value in (("ours", ours), ("ultralytics", theirs)):
            threads = 0 if reused else 3  # a seed cached before threads were recorded has none
            run = TrainedRun(
                Path(f"{side}{n}.pt"), Path("."), 2, 100, 10.0, 20.0, 0, threads, [(1, value / 2), (2, value)]
            )
            trained[side] = TrainedSeed(side, n, run, tmp_path / side, reused)
            rows[side] = {"model": f"{side}{n}.pt", "kind": side, "mAP50-95": value, "mAP50": value + 0.1}
        return SeedResult(n, trained, rows)

    results = [seed(0, 0.40, 0.41, True), seed(1, 0.42, 0.40, False), seed(2, 0.38, 0.39, False)]
    write_markdown(tmp_path / "compare.md", "Same-recipe head-to-head over 3 seeds", results, [], {"k": "v"}, ["note"])
    text = (tmp_path / "compare.md").read_text()
    assert "## Per seed" in text and "## Summary" in text and "t-interval over the per-seed paired values" in text
    assert f"+0.0000 [{-T_975_DF2 * 0.01:+.4f}, {T_975_DF2 * 0.01:+.4f}]" in text
    assert "0.4000 ± 0.0200" in text and "0.4000 ± 0.0100" in text
    assert summary_cells(results)[-2] == ["seeds reused", "0", "0", "", ""]
    assert summary_cells(results)[-3] == ["torch CPU threads", "?, 3", "?, 3", "", ""]

    write_csv(tmp_path / "compare.csv", results)
    with open(tmp_path / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["side"]) for r in rows] == [
        (str(s), side) for s in (0, 1, 2) for side in ("ours", "ultralytics")
    ]
    write_summary_csv(tmp_path / "summary.csv", results)
    with open(tmp_path / "summary.csv", newline="") as f:
        summary = {r["metric"]: r for r in csv.DictReader(f)}
    assert float(summary["mAP50-95"]["difference_ci_high"]) == pytest.approx(T_975_DF2 * 0.01)
    assert summary["train images/s"]["ratio_is"] == "ratio of means" and summary["wall time s"]["difference"] == ""
    assert plot_curves(tmp_path / "curves.png", results).stat().st_size > 0

    one = [seed(4, 0.5, 0.4, False)]
    cells = summary_cells(one)
    assert cells[0][1:] == ["0.5000", "0.4000", "1.250", "+0.1000"]  # n = 1: no sd, no interval
