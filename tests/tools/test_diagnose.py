"""scripts/diagnose.py: the batch statistics against hand-computed values, the probe against itself
on both trainers' steps (same weights, same batch: everything it reads must agree), and the script
end to end (slow: it trains both)."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from detector.data.shapes import SHAPE_NAMES
from detector.tools.diagnose.batches import BatchStats
from detector.tools.diagnose.probe import TrainingProbe, assignment_positives
from detector.types import Targets
from tests.helpers import REPO, run_script


def test_batch_stats_hand_computed() -> None:
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[0] = 114  # all grey
    images[1, 0] = 200  # pure red: R 200, G 0, B 0
    targets = Targets(
        torch.tensor([0, 0]),
        torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 1.0]]),  # sides 2 and 2 (sqrt 4), short sides 2 and 1
        torch.tensor([1, 3]),
    )
    stats = BatchStats()
    stats.add(images, targets)
    s = stats.summary()
    assert stats.objects == [2, 0] and s["objects_per_image"] == 1.0 and s["images_without_objects"] == 0.5
    assert s["box_side_median"] == pytest.approx(2.0) and s["min_short_side"] == 1.0 and s["boxes_under_8px"] == 1.0
    assert s["grey_fraction"] == 0.5  # image 0 entirely, image 1 not at all
    assert s["R_mean"] == pytest.approx((114 + 200) / 2) and s["G_mean"] == pytest.approx(57)
    assert s["R_std"] == pytest.approx(43.0)  # half the pixels 114, half 200
    assert s["saturation_mean"] == pytest.approx(255 / 2)  # grey 0, pure red 255
    assert stats.size_histogram()[1] == 0.0 and stats.size_histogram()[0] == 1.0  # both in 0-4 px


def test_assignment_positives_hand_computed() -> None:
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 24.0, 24.0], [0.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    pred = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 22.0, 22.0], [50, 50, 60, 60.0]]])
    fg = torch.tensor([[True, True, False, False]])  # two points for the first box, none for the second
    index = torch.tensor([[0, 0, 1, 0]])
    (side0, n0, iou0), (side1, n1, iou1) = assignment_positives(pred, gt, mask, fg, index)
    assert (side0, n0, iou0) == (10.0, 2, pytest.approx((1.0 + 0.5) / 2))
    assert (side1, n1) == (4.0, 0) and math.isnan(iou1)


def test_probe_reads_the_same_step_from_both_trainers(tiny_shapes) -> None:
    """Ours and Ultralytics' training step, same weights and batch: the probe must record the same
    positives, IoUs, gradient norm, weight decay and BatchNorm settings from each."""
    from detector.data.build import load_split
    from detector.data.sources import ShapesSource
    from detector.interop import ultralytics as ul
    from detector.tools.benchmark.train_step import GAINS, fixed_batch, our_train_step
    from detector.tools.benchmark.weights import reference_weights

    source = ShapesSource(list(SHAPE_NAMES), 6, str(tiny_shapes), num_train=8, num_val=4, imgsz=96)
    images, targets = fixed_batch(load_split(source, "val", log=lambda _: None), 64, 2)
    reference = reference_weights("yolov8n", None, 0, list(SHAPE_NAMES))
    make = functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9, nesterov=True)
    cpu = torch.device("cpu")
    ours = our_train_step(reference.ours(), images, targets, cpu, make, 5e-4, GAINS)
    theirs = ul.train_step(reference.theirs(), images, targets, cpu, make, 5e-4, GAINS)
    with TrainingProbe() as probe:
        probe.side = "ours"
        ours()
        probe.side = "ultralytics"
        theirs()
    assert torch.nn.utils.clip_grad_norm_.__name__ == "clip_grad_norm_"  # restored on exit
    a, b = probe.records["ours"], probe.records["ultralytics"]
    assert a.batches == b.batches == 1 and len(a.steps) == len(b.steps) == 1
    assert a.steps[0]["accumulated"] == 1
    assert len(a.positives) == len(b.positives) == len(targets.classes) > 0
    for (side_a, n_a, iou_a), (side_b, n_b, iou_b) in zip(a.positives, b.positives):
        assert side_a == pytest.approx(side_b) and n_a == n_b
        assert (math.isnan(iou_a) and math.isnan(iou_b)) or iou_a == pytest.approx(iou_b, abs=1e-5)
    assert a.grad_norms[0] == pytest.approx(b.grad_norms[0], rel=1e-4)
    assert a.batchnorm == b.batchnorm and a.batchnorm == {(1e-3, 0.03): 57}  # yolov8n's 57 BatchNorms
    assert a.summary()["groups"] == b.summary()["groups"]


@pytest.mark.slow
def test_diagnose_script_end_to_end(tmp_path) -> None:
    result = run_script(
        "scripts/diagnose.py",
        "device=cpu",
        "imgsz=64",
        "data.num_train=8",
        "data.num_val=4",
        "data.imgsz=96",
        f"data.root={tmp_path / 'shapes'}",
        "recipe.epochs=2",
        "recipe.batch=4",
        "recipe.nbs=8",
        "recipe.close_mosaic=1",
        "recipe.warmup_epochs=1",
        "recipe.workers=0",
        "batches=2",
        f"project={tmp_path / 'runs'}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "diagnose" / "exp"
    content = json.loads((run / "diagnose.json").read_text())
    assert set(content["batches"]) == {
        "ours first epoch (mosaic)",
        "ultralytics first epoch (mosaic)",
        "ours last epoch (no mosaic)",
        "ultralytics last epoch (no mosaic)",
    }
    for side in ("ours", "ultralytics"):
        probe = content["probe"][side]
        assert probe["batches"] == 4 and probe["optimizer_steps"] >= 2  # 2 batches per epoch, 2 epochs
        assert probe["batchnorm"] == {"eps=0.001 momentum=0.03": 57}
        assert len(content["epochs"][side]) == 2
    # warmup: one epoch (2 batches) on both sides, then the epoch's lr; the schedule agrees to the step
    assert content["ema_decay"]["ours"]["100"] == pytest.approx(content["ema_decay"]["ultralytics"]["100"])
    markdown = (run / "diagnose.md").read_text()
    for heading in ("## Augmented training batches", "## Optimizer, schedule and EMA", "## Per epoch"):
        assert heading in markdown
    assert all((run / f).is_file() for f in ("boxes.png", "schedule.png", "epochs.png"))


def test_initial_weights_are_drawn_alike() -> None:
    """Every tensor of a fresh yolov8n has the mean and spread of Ultralytics' fresh one (their box
    branch's last bias is the constant 2.0: ours too since the diagnostics found it)."""
    from detector.tools.diagnose.initial import initial_differences

    initial = initial_differences("yolov8n", 6, seed=0)
    assert initial["compared"] > 200 and initial["differing"] == []


def test_source_images_per_batch_are_counted_on_both_loaders(tiny_shapes) -> None:
    """Four-image mosaics: every sample loads four images, so a batch of 4 records 16 loads on both
    sides; ours takes its partners within the batch (4 distinct images), theirs from a buffer of
    recently loaded ones."""
    from detector.config import compose, instantiate_node
    from detector.data.build import AugmentSettings, load_split, train_dataset
    from detector.data.loader import build_loader, set_epoch
    from detector.data.sources import ShapesSource
    from detector.interop import ultralytics as ul
    from detector.tools.diagnose.batches import count_sources, record_our_loads

    source = ShapesSource(list(SHAPE_NAMES), 6, str(tiny_shapes), num_train=8, num_val=4, imgsz=96)
    augment = AugmentSettings(**instantiate_node(compose("train", ["imgsz=64"]).augment, "augment"))
    dataset = train_dataset(load_split(source, "train", log=lambda _: None), augment, 64, seed=0, epochs=None)
    loader = build_loader(dataset, 4, shuffle=True, workers=0, seed=0)
    set_epoch(loader, 0)
    ours, theirs = BatchStats(), BatchStats()
    loads = record_our_loads(dataset)
    count_sources(loader, loads, 2, ours)
    assert len(loads) == 2 * 4 * 4 and ours.sources == [4, 4]
    dataset.partner_window = None  # drawn from the 8 batches before (here all 7 other samples)
    windowed = BatchStats()
    count_sources(loader, loads, 2, windowed)
    assert sum(windowed.sources) > 8 and all(4 <= n <= 8 for n in windowed.sources)
    their_loader = ul.ultralytics_train_loader(tiny_shapes / "data.yaml", 64, 4, 0, seed=0)
    their_loads = ul.record_loads(their_loader.dataset)
    count_sources(their_loader, their_loads, 2, theirs)
    assert len(their_loads) == 2 * 4 * 4 and all(4 <= n <= 8 for n in theirs.sources)
