"""The YOLO26 losses against Ultralytics' own, on the outputs of Ultralytics' YOLO26n: the plain
reg_max-1 loss (L1 instead of DFL) against ``v8DetectionLoss``, the end-to-end two-branch loss against
``E2ELoss`` (components, gradients, the epoch's branch weights), the one-to-one assignment (one
positive per object, the same points as theirs); the weight schedule by hand, and the factory."""

from __future__ import annotations

import types

import pytest
import torch
from torch import Tensor, nn

from detector.boxes import decode_boxes
from detector.interop.ultralytics import batch_dict
from detector.losses import (
    Assignment,
    DetectionLoss,
    EndToEndLoss,
    TaskAlignedAssigner,
    branch_weights,
    build_loss,
)
from detector.losses.loss import pad_targets
from detector.types import HeadOutput, Targets

NUM_CLASSES = 3
BATCH, HEIGHT, WIDTH = 3, 160, 128  # not square: the L1 term divides x by the width, y by the height
STRIDES = (8, 16, 32)
GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}
BRANCHES = ("one2many", "one2one")

# Boxes of all sizes (xyxy input pixels, class): 4 px ones, one inside another, one the whole image;
# image 1 has none.
BOXES = {
    0: [([10, 20, 100, 150], 0), ([60, 30, 90, 70], 1), ([40, 100, 44, 104], 2), ([100, 10, 110, 16], 1)],
    2: [([0, 0, 128, 160], 2), ([30, 40, 34, 44], 0), ([70, 80, 120, 150], 1)],
}


# ---------------------------------------------------------------- fixtures and helpers


def make_targets() -> Targets:
    rows = [(image, box, cls) for image, boxes in BOXES.items() for box, cls in boxes]
    return Targets(
        torch.tensor([r[0] for r in rows]),
        torch.tensor([r[1] for r in rows], dtype=torch.float32),
        torch.tensor([r[2] for r in rows]),
    )


@pytest.fixture(scope="module")
def yolo26() -> nn.Module:
    """Ultralytics' YOLO26n (3 classes) with its default hyper-parameters, its weights moved off
    their initial values (so predictions and assignments are not those of a fresh model), train mode."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo26n.yaml", nc=NUM_CLASSES, verbose=False)
    model.args = get_cfg(overrides=GAINS)  # their losses read the gains and ``epochs`` from here
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1 * (p.std() if p.numel() > 1 else 1.0))
    return model.train()


@pytest.fixture(scope="module")
def raw_outputs(yolo26: nn.Module) -> dict[str, dict]:
    """Their training output on one seeded input, detached: ``{branch: {boxes, scores, feats}}``."""
    x = torch.rand(BATCH, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = yolo26(x)
    return {name: {k: v for k, v in out[name].items()} for name in BRANCHES}


def leaves(raw: dict[str, dict]) -> dict[str, dict]:
    """A fresh copy of the outputs whose ``boxes`` and ``scores`` are leaves that require grad."""
    return {
        name: {
            **branch,
            "boxes": branch["boxes"].clone().requires_grad_(),
            "scores": branch["scores"].clone().requires_grad_(),
        }
        for name, branch in raw.items()
    }


def head_output(branch: dict) -> HeadOutput:
    """One branch of their output (levels concatenated along the last axis) as our per-level maps."""
    shapes = [tuple(f.shape[-2:]) for f in branch["feats"]]
    sizes = [h * w for h, w in shapes]

    def levels(t: Tensor) -> list[Tensor]:
        return [part.unflatten(-1, shape) for part, shape in zip(t.split(sizes, -1), shapes)]

    return HeadOutput(levels(branch["boxes"]), levels(branch["scores"]), STRIDES, reg_max=1)


def end_to_end_output(preds: dict[str, dict]) -> HeadOutput:
    out = head_output(preds["one2many"])
    out.one2one = head_output(preds["one2one"])
    return out


def their_batch(targets: Targets) -> dict[str, Tensor]:
    return batch_dict(torch.zeros(BATCH, 3, HEIGHT, WIDTH), targets)


def assert_components(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> None:
    assert set(ours) == {"box", "cls", "l1"} and set(theirs) == {"box_loss", "cls_loss", "l1_loss"}
    for name, value in ours.items():
        assert value.item() == pytest.approx(theirs[f"{name}_loss"].item(), rel=1e-5), name


def our_assignment(loss: DetectionLoss, out: HeadOutput, targets: Targets) -> Assignment:
    """The assignment ``loss`` makes for ``out`` (the assigner is deterministic)."""
    decoded = decode_boxes(out)
    classes, boxes, mask = pad_targets(targets, BATCH)
    return loss.assigner(
        decoded.cls_logits.sigmoid(), decoded.boxes, decoded.points, classes, boxes, mask, min_box_size=STRIDES[1]
    )


# ---------------------------------------------------------------- parity with Ultralytics


def test_reg_max_1_loss_matches_ultralytics_v8_detection_loss(yolo26, raw_outputs) -> None:
    """The one-to-many branch alone: L1 instead of DFL, against ``v8DetectionLoss(model, tal_topk=10)``."""
    from ultralytics.utils.loss import v8DetectionLoss

    targets = make_targets()
    preds = leaves(raw_outputs)["one2many"]
    theirs_total, theirs_items = v8DetectionLoss(yolo26, tal_topk=10).loss(preds, their_batch(targets))
    ours_total, ours_items = DetectionLoss(NUM_CLASSES, reg_max=1, **GAINS)(head_output(preds), targets, BATCH)

    assert ours_items["box"] > 0 and ours_items["l1"] > 0
    assert_components(ours_items, theirs_items)
    assert ours_total.item() == pytest.approx(theirs_total.sum().item(), rel=1e-5)
    ours_grads = torch.autograd.grad(ours_total, [preds["boxes"], preds["scores"]])
    theirs_grads = torch.autograd.grad(theirs_total.sum(), [preds["boxes"], preds["scores"]])
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("epoch, epochs", [(0, 10), (3, 10), (9, 10)])
def test_end_to_end_loss_matches_ultralytics_e2e_loss(yolo26, raw_outputs, epoch: int, epochs: int) -> None:
    """Total, reported components (the one-to-one branch's) and the gradients of both branches, in
    the first, a middle and the last epoch (their criterion's ``update()`` after each epoch before)."""
    from ultralytics.utils.loss import E2ELoss

    yolo26.args.epochs = epochs
    theirs = E2ELoss(yolo26)
    for _ in range(epoch):
        theirs.update()
    ours = EndToEndLoss(NUM_CLASSES, reg_max=1, **GAINS)
    ours.set_epoch(epoch, epochs)
    assert ours.weights == pytest.approx((theirs.o2m, theirs.o2o), abs=1e-12)

    targets = make_targets()
    preds = leaves(raw_outputs)
    inputs = [preds[name][key] for name in BRANCHES for key in ("boxes", "scores")]
    theirs_total, theirs_items = theirs(preds, their_batch(targets))
    ours_total, ours_items = ours(end_to_end_output(preds), targets, BATCH)

    assert_components(ours_items, theirs_items)
    assert ours_total.item() == pytest.approx(theirs_total.sum().item(), rel=1e-5)
    ours_grads = torch.autograd.grad(ours_total, inputs)
    theirs_grads = torch.autograd.grad(theirs_total.sum(), inputs)
    for a, b in zip(ours_grads, theirs_grads):
        assert a.abs().sum() > 0  # each branch's boxes and scores get a gradient
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_to_one_assignment_gives_one_positive_per_object_on_their_points(yolo26, raw_outputs) -> None:
    from ultralytics.utils.loss import E2ELoss

    targets = make_targets()
    theirs = E2ELoss(yolo26).one2one  # topk 7, topk2 1
    (fg, gt_index, *_), _, _ = theirs.get_assigned_targets_and_loss(raw_outputs["one2one"], their_batch(targets))
    ours = our_assignment(EndToEndLoss(NUM_CLASSES).one2one, head_output(raw_outputs["one2one"]), targets)

    assert torch.equal(ours.foreground, fg)
    assert torch.equal(ours.target_gt_index[fg], gt_index[fg])
    for image in range(BATCH):
        counts = torch.bincount(
            ours.target_gt_index[image][ours.foreground[image]], minlength=len(BOXES.get(image, []))
        )
        assert counts.tolist() == [1] * len(BOXES.get(image, [])), image

    # the one-to-many assignment of the same output has several positives for most objects
    many = our_assignment(EndToEndLoss(NUM_CLASSES).one2many, head_output(raw_outputs["one2one"]), targets)
    assert many.foreground.sum() > 2 * fg.sum()


# ---------------------------------------------------------------- the assigner's second top-k by hand


def test_topk2_ranks_the_positives_left_after_the_conflicts() -> None:
    """One-dimensional row of points, two overlapping objects: the point best aligned with object 0
    overlaps object 1 more, so object 1 takes it; object 0's single positive is its next best."""
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [28.0, 4.0]])  # [A, 2]
    gts = torch.tensor([[[0.0, 0.0, 24.0, 8.0], [8.0, 0.0, 32.0, 8.0]]])  # [1, 2, 4]
    # every point predicts the same box, closer to object 1 than to object 0
    pred = torch.tensor([10.0, 0.0, 30.0, 8.0]).expand(1, 4, 4)
    scores = torch.tensor([[[0.5], [0.9], [0.6], [0.5]]])  # [1, A, 1]: the CIoU is the same for every point
    classes, mask = torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool)

    plain = TaskAlignedAssigner(topk=3)(scores, pred, points, classes, gts, mask)
    one = TaskAlignedAssigner(topk=3, topk2=1)(scores, pred, points, classes, gts, mask)
    # without topk2: point 1 (best score) is in both boxes and goes to object 1 (higher CIoU)
    assert plain.foreground[0].tolist() == [True, True, True, True]
    assert plain.target_gt_index[0].tolist() == [0, 1, 1, 1]
    # with topk2 1, after the conflicts: object 1 keeps point 1, object 0 its only point left, point 0
    assert one.foreground[0].tolist() == [True, True, False, False]
    assert one.target_gt_index[0, :2].tolist() == [0, 1]


# ---------------------------------------------------------------- the branch weights


def test_branch_weights_schedule() -> None:
    assert branch_weights(0, 100) == pytest.approx((0.8, 0.2))
    assert branch_weights(99, 100) == pytest.approx((0.1, 0.9))
    assert branch_weights(1, 100) == pytest.approx((0.7929, 0.2071), abs=5e-5)  # Ultralytics, measured
    assert branch_weights(50, 100) == pytest.approx((0.4465, 0.5535), abs=5e-5)
    assert branch_weights(120, 100) == pytest.approx((0.1, 0.9))  # an extended run stays at the end
    assert branch_weights(0, 1) == pytest.approx((0.8, 0.2))  # a one-epoch run
    for e in range(10):
        assert sum(branch_weights(e, 10)) == pytest.approx(1.0)


def test_end_to_end_loss_weights_follow_set_epoch_only() -> None:
    loss = EndToEndLoss(NUM_CLASSES)
    assert loss.weights == pytest.approx((0.8, 0.2))  # before any set_epoch: epoch 0
    loss.set_epoch(50, 100)
    assert loss.weights == pytest.approx(branch_weights(50, 100))
    loss.set_epoch(50, 100)  # idempotent: a function of (epoch, epochs), not of the calls
    assert loss.weights == pytest.approx(branch_weights(50, 100))
    with pytest.raises(ValueError, match="epochs"):
        loss.set_epoch(0, 0)


def test_end_to_end_loss_needs_the_one_to_one_branch(raw_outputs) -> None:
    out = head_output(raw_outputs["one2many"])
    with pytest.raises(ValueError, match="one2one"):
        EndToEndLoss(NUM_CLASSES)(out, make_targets(), BATCH)


# ---------------------------------------------------------------- the factory


def test_build_loss_picks_the_criterion_of_the_head() -> None:
    plain = types.SimpleNamespace(num_classes=4, reg_max=16)
    l1 = types.SimpleNamespace(num_classes=4, reg_max=1)
    end_to_end = types.SimpleNamespace(num_classes=4, reg_max=1, one2one_cls=nn.ModuleList())
    assert type(build_loss(plain)) is DetectionLoss and build_loss(plain).distance_term == "dfl"
    assert type(build_loss(l1)) is DetectionLoss and build_loss(l1).distance_term == "l1"
    loss = build_loss(end_to_end, box=1.0, cls=2.0, dfl=3.0)
    assert isinstance(loss, EndToEndLoss)
    assert loss.one2one.gains == {"box": 1.0, "cls": 2.0, "l1": 3.0} == loss.one2many.gains
    assert (loss.one2many.assigner.topk, loss.one2many.assigner.topk2) == (10, 10)
    assert (loss.one2one.assigner.topk, loss.one2one.assigner.topk2) == (7, 1)
