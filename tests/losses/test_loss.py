"""The detection loss and its task-aligned assigner: parity with Ultralytics' ``v8DetectionLoss``
(same weights, same input, same targets), gradients, hand-made assignments, empty batches."""

from __future__ import annotations

import types

import pytest
import torch
from torch import Tensor

from detector import build_model
from detector.boxes import decode_boxes, grid_points, xyxy_to_cxcywh
from detector.losses import Assignment, DetectionLoss, TaskAlignedAssigner
from detector.losses.loss import pad_targets
from detector.types import HeadOutput, Targets

NUM_CLASSES = 3
HEIGHT, WIDTH = 96, 128
GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


# ---------------------------------------------------------------- helpers


def random_targets(boxes_per_image: list[int], generator: torch.Generator) -> Targets:
    """Random boxes (at least 4 px a side) inside a ``HEIGHT x WIDTH`` input."""
    size = torch.tensor([WIDTH, HEIGHT], dtype=torch.float32)
    index, boxes, classes = [], [], []
    for image, n in enumerate(boxes_per_image):
        for _ in range(n):
            wh = torch.rand(2, generator=generator) * size * 0.6 + 4
            xy = torch.rand(2, generator=generator) * (size - wh)
            boxes.append(torch.cat((xy, xy + wh)))
            index.append(image)
            classes.append(int(torch.randint(0, NUM_CLASSES, (), generator=generator)))
    return Targets(
        torch.tensor(index, dtype=torch.long),
        torch.stack(boxes) if boxes else torch.zeros(0, 4),
        torch.tensor(classes, dtype=torch.long),
    )


def ultralytics_batch(targets: Targets) -> dict[str, Tensor]:
    """Ultralytics' batch keys: image index, class and normalised cx, cy, w, h."""
    scale = torch.tensor([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=torch.float32)
    return {
        "batch_idx": targets.batch_index.float(),
        "cls": targets.classes.float().view(-1, 1),
        "bboxes": xyxy_to_cxcywh(targets.boxes) / scale,
    }


def ultralytics_preds(out: HeadOutput) -> dict[str, object]:
    """Our head output in the layout of Ultralytics' training output."""
    return {
        "boxes": torch.cat([x.flatten(2) for x in out.box], 2),  # [B, 4 * reg_max, A]
        "scores": torch.cat([x.flatten(2) for x in out.cls], 2),  # [B, C, A]
        "feats": out.box,  # only their shapes are read
    }


def assert_parity(theirs_total: Tensor, theirs_items: dict, ours_total: Tensor, ours_items: dict) -> None:
    for name in ("box", "cls", "dfl"):
        assert ours_items[name].item() == pytest.approx(theirs_items[f"{name}_loss"].item(), rel=1e-4, abs=1e-7)
    assert ours_total.item() == pytest.approx(theirs_total.sum().item(), rel=1e-4)


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ultralytics' YOLOv8n and ours with the same weights, in train mode."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    theirs = DetectionModel("yolov8n.yaml", nc=NUM_CLASSES, verbose=False)
    theirs.args = types.SimpleNamespace(**GAINS)  # v8DetectionLoss reads its gains from model.args
    ours = build_model("yolov8n", num_classes=NUM_CLASSES)
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), theirs.state_dict().values())))
    return ours.train(), theirs.train()


# ---------------------------------------------------------------- parity with Ultralytics


@pytest.mark.parametrize("boxes_per_image", [[3, 0, 5], [1, 7], [2, 2, 2, 2], [0, 0]])
def test_matches_ultralytics_on_the_same_model_input_and_targets(models, boxes_per_image: list[int]) -> None:
    from ultralytics.utils.loss import v8DetectionLoss

    ours, theirs = models
    generator = torch.Generator().manual_seed(sum(boxes_per_image))
    targets = random_targets(boxes_per_image, generator)
    x = torch.rand(len(boxes_per_image), 3, HEIGHT, WIDTH, generator=generator)

    theirs_total, theirs_items = v8DetectionLoss(theirs)(theirs(x), ultralytics_batch(targets))
    ours_total, ours_items = DetectionLoss(NUM_CLASSES, **GAINS)(ours(x), targets, batch_size=len(boxes_per_image))

    if sum(boxes_per_image):
        assert ours_items["box"] > 0 and ours_items["cls"] > 0 and ours_items["dfl"] > 0
    assert_parity(theirs_total, theirs_items, ours_total, ours_items)


def test_assignment_and_gradients_match_ultralytics_on_the_same_tensors(models) -> None:
    """Feed one set of head outputs to both losses: assigned targets and input gradients agree."""
    from ultralytics.utils.loss import v8DetectionLoss

    ours, theirs = models
    generator = torch.Generator().manual_seed(1)
    targets = random_targets([4, 0, 6], generator)
    with torch.no_grad():
        out = ours(torch.rand(3, 3, HEIGHT, WIDTH, generator=generator))
    leaves = [x.clone().requires_grad_() for x in (*out.box, *out.cls)]
    out = HeadOutput(box=leaves[:3], cls=leaves[3:], strides=out.strides, reg_max=out.reg_max)

    criterion = v8DetectionLoss(theirs)
    (fg, gt_index, target_boxes, _, _), theirs_loss, _ = criterion.get_assigned_targets_and_loss(
        ultralytics_preds(out), ultralytics_batch(targets)
    )
    theirs_grads = torch.autograd.grad(theirs_loss.sum() * 3, leaves)

    loss = DetectionLoss(NUM_CLASSES, **GAINS)
    ours_total, ours_items = loss(out, targets, batch_size=3)
    ours_grads = torch.autograd.grad(ours_total, leaves)

    assert_parity(theirs_loss * 3, dict(zip(criterion.loss_names, theirs_loss)), ours_total, ours_items)
    assigned = _assign_like_the_loss(loss, out, targets)
    assert fg.sum() > 0
    assert torch.equal(assigned.foreground, fg)
    assert torch.equal(assigned.target_gt_index[fg], gt_index[fg])
    torch.testing.assert_close(assigned.target_boxes[fg], target_boxes[fg])
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _assign_like_the_loss(loss: DetectionLoss, out: HeadOutput, targets: Targets) -> Assignment:
    """Re-run the assignment the loss made (the assigner is deterministic)."""
    decoded = decode_boxes(out)
    classes, boxes, mask = pad_targets(targets, decoded.boxes.shape[0])
    return loss.assigner(
        decoded.cls_logits.sigmoid(), decoded.boxes, decoded.points, classes, boxes, mask, min_box_size=out.strides[1]
    )


# ---------------------------------------------------------------- gradients and empty batches


def test_gradients_reach_every_trainable_head_parameter(models) -> None:
    ours, _ = models
    ours.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(2)
    targets = random_targets([2, 3], generator)
    total, _ = DetectionLoss(NUM_CLASSES)(ours(torch.rand(2, 3, 64, 64, generator=generator)), targets, 2)
    total.backward()
    trainable = [(name, p) for name, p in ours.head.named_parameters() if p.requires_grad]
    assert trainable
    for name, p in trainable:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)
    ours.zero_grad(set_to_none=True)


def test_a_batch_without_targets_gives_finite_loss_and_zero_box_terms(models) -> None:
    ours, _ = models
    empty = Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    total, items = DetectionLoss(NUM_CLASSES)(ours(torch.rand(2, 3, 64, 64)), empty, 2)
    assert torch.isfinite(total)
    assert items["box"].item() == 0.0 and items["dfl"].item() == 0.0
    assert items["cls"].item() > 0
    assert total.item() == pytest.approx(2 * items["cls"].item())
    total.backward()  # still differentiable: the class logits are pushed towards background
    ours.zero_grad(set_to_none=True)


def test_rejects_a_mismatched_batch_size_or_image_index(models) -> None:
    ours, _ = models
    out = ours(torch.rand(2, 3, 64, 64))
    targets = Targets(torch.tensor([2]), torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="batch_size"):
        DetectionLoss(NUM_CLASSES)(out, targets, 3)
    with pytest.raises(ValueError, match="batch_index"):
        DetectionLoss(NUM_CLASSES)(out, targets, 2)


# ---------------------------------------------------------------- hand-made assignments


def _grid(size: int = 64, stride: int = 8) -> Tensor:
    """Cell centres of one ``size x size`` level: 4, 12, 20, ... pixels."""
    points, _ = grid_points([(size // stride, size // stride)], [stride])
    return points  # [A, 2]


def _assign(
    assigner: TaskAlignedAssigner, points: Tensor, pred_boxes: Tensor, gt_boxes: list[list[float]], **kw
) -> Assignment:
    a = points.shape[0]
    scores = torch.full((1, a, 2), 0.5)  # [B, A, C]
    gts = torch.tensor([gt_boxes])  # [1, G, 4]
    classes = torch.ones(1, len(gt_boxes), 1, dtype=torch.long)  # [1, G, 1] class 1
    mask = torch.ones(1, len(gt_boxes), 1, dtype=torch.bool)
    return assigner(scores, pred_boxes.expand(1, a, 4), points, classes, gts, kw.pop("mask", mask), **kw)


def _inside(points: Tensor, box: list[float]) -> Tensor:
    x, y = points.unbind(-1)
    return (x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])


def test_only_points_inside_the_box_are_foreground() -> None:
    points, gt = _grid(), [9.0, 9.0, 37.0, 29.0]  # centres x 12..36, y 12..28 inside: 4 x 3 = 12 points
    result = _assign(TaskAlignedAssigner(topk=100), points, torch.tensor(gt), [gt])
    assert torch.equal(result.foreground[0], _inside(points, gt))
    assert result.foreground.sum() == 12
    assert (result.target_gt_index[0] == 0).all()
    torch.testing.assert_close(result.target_boxes[0, result.foreground[0]], torch.tensor([gt]).expand(12, 4))
    assert (result.target_scores[0, :, 0] == 0).all()  # only the gt class gets a target


def test_at_most_topk_points_per_ground_truth() -> None:
    points, gt = _grid(), [0.0, 0.0, 64.0, 64.0]  # all 64 points inside
    # predictions centred at each point: the best-aligned points are those nearest the gt centre
    pred = torch.cat((points - 16, points + 16), -1)[None]  # [1, A, 4]
    result = _assign(TaskAlignedAssigner(topk=5), points, pred, [gt])
    assert result.foreground.sum() == 5
    centre = torch.tensor([32.0, 32.0])
    chosen = (points[result.foreground[0]] - centre).norm(dim=-1)
    assert chosen.max() <= (points[~result.foreground[0]] - centre).norm(dim=-1).min()


@pytest.mark.parametrize("predicted, expected_gt", [(1, 1), (0, 0)])
def test_a_point_inside_two_boxes_goes_to_the_one_it_overlaps_most(predicted: int, expected_gt: int) -> None:
    points = _grid()
    gts = [[0.0, 0.0, 48.0, 48.0], [16.0, 16.0, 40.0, 40.0]]  # the second lies inside the first
    result = _assign(TaskAlignedAssigner(topk=100), points, torch.tensor(gts[predicted]), gts)
    both = _inside(points, gts[0]) & _inside(points, gts[1])
    only_first = _inside(points, gts[0]) & ~both
    assert both.sum() == 9 and result.foreground[0, both].all()
    assert (result.target_gt_index[0, both] == expected_gt).all()
    assert (result.target_gt_index[0, only_first] == 0).all()


def test_a_perfect_prediction_gets_a_target_score_of_one() -> None:
    points, gt = _grid(), [8.0, 8.0, 40.0, 32.0]
    result = _assign(TaskAlignedAssigner(topk=10), points, torch.tensor(gt), [gt])
    fg = result.foreground[0]
    assert fg.sum() == 10
    torch.testing.assert_close(result.target_scores[0, fg, 1], torch.ones(10), atol=1e-5, rtol=0)


def test_padding_rows_and_empty_ground_truth_assign_nothing() -> None:
    points, gt = _grid(), [8.0, 8.0, 40.0, 32.0]
    mask = torch.zeros(1, 1, dtype=torch.bool)  # [B, G] form
    result = _assign(TaskAlignedAssigner(), points, torch.tensor(gt), [gt], mask=mask)
    assert not result.foreground.any() and result.target_scores.sum() == 0

    empty = TaskAlignedAssigner()(
        torch.rand(2, 64, 3), torch.rand(2, 64, 4), points, torch.zeros(2, 0), torch.zeros(2, 0, 4), torch.zeros(2, 0)
    )
    assert empty.target_scores.shape == (2, 64, 3) and empty.target_boxes.shape == (2, 64, 4)
    assert not empty.foreground.any() and empty.target_gt_index.shape == (2, 64)


def test_small_boxes_are_enlarged_for_the_candidate_test_only() -> None:
    points, gt = _grid(), [13.0, 13.0, 19.0, 19.0]  # 6 px: no cell centre (4, 12, 20, ...) inside
    assert not _assign(TaskAlignedAssigner(), points, torch.tensor(gt), [gt]).foreground.any()
    result = _assign(TaskAlignedAssigner(), points, torch.tensor(gt), [gt], min_box_size=16.0)
    assert result.foreground[0].sum() == 4  # enlarged to 8..24: centres 12 and 20 on both axes
    torch.testing.assert_close(result.target_boxes[0, result.foreground[0]], torch.tensor([gt]).expand(4, 4))
