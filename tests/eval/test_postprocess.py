"""Decoding, NMS and letterbox undo against hand-computed cases."""

from __future__ import annotations

import torch

from detector.eval.postprocess import PostProcess
from detector.letterbox import undo_letterbox


def scores_for(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_overlapping_boxes_of_the_same_class_are_suppressed() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    scores = scores_for([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0]])
    det = PostProcess(conf=0.25, iou=0.5).single(boxes, scores)
    # IoU of the first two: 81 / 119 = 0.68 > 0.5, so the second goes
    assert det.scores.tolist() == [0.8999999761581421, 0.699999988079071]
    assert det.boxes.tolist() == [[0, 0, 10, 10], [50, 50, 60, 60]]


def test_overlapping_boxes_of_different_classes_both_stay_unless_agnostic() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11]], dtype=torch.float32)
    scores = scores_for([[0.9, 0.0], [0.0, 0.8]])
    both = PostProcess(conf=0.25, iou=0.5).single(boxes, scores)
    assert both.classes.tolist() == [0, 1]
    one = PostProcess(conf=0.25, iou=0.5, agnostic=True).single(boxes, scores)
    assert one.classes.tolist() == [0]


def test_iou_threshold_is_exclusive_of_lower_overlaps() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=torch.float32)  # IoU 50 / 150 = 1/3
    scores = scores_for([[0.9], [0.8]])
    assert len(PostProcess(conf=0.1, iou=0.4).single(boxes, scores)) == 2
    assert len(PostProcess(conf=0.1, iou=0.3).single(boxes, scores)) == 1


def test_multi_label_gives_one_candidate_per_class_above_conf() -> None:
    boxes = torch.tensor([[0, 0, 10, 10]], dtype=torch.float32)
    scores = scores_for([[0.6, 0.5, 0.0001]])
    multi = PostProcess(conf=0.001).single(boxes, scores)
    assert multi.classes.tolist() == [0, 1]
    single = PostProcess(conf=0.001, multi_label=False).single(boxes, scores)
    assert single.classes.tolist() == [0]


def test_confidence_threshold_and_max_det_cut() -> None:
    n = 50
    boxes = torch.stack([torch.tensor([20.0 * i, 0, 20.0 * i + 10, 10]) for i in range(n)])  # disjoint
    scores = torch.linspace(0.01, 0.99, n).unsqueeze(1)
    det = PostProcess(conf=0.5, iou=0.7, max_det=7).single(boxes, scores)
    assert len(det) == 7
    assert torch.equal(det.scores, scores.flatten().sort(descending=True).values[:7])
    assert (PostProcess(conf=0.5).single(boxes, scores).scores > 0.5).all()


def test_letterbox_is_undone_and_clipped() -> None:
    # a 200 x 100 (w x h) image letterboxed to 64: scale 0.32, padded 16 px top and bottom
    letterbox = torch.tensor([0.32, 0.32, 0.0, 16.0])
    inside = undo_letterbox(torch.tensor([[3.2, 19.2, 32.0, 48.0]]), letterbox, torch.tensor([100, 200]))
    torch.testing.assert_close(inside, torch.tensor([[10.0, 10.0, 100.0, 100.0]]))
    # a box crossing into the padding is clipped to the image
    crossing = undo_letterbox(torch.tensor([[-6.4, 8.0, 70.0, 56.0]]), letterbox, torch.tensor([100, 200]))
    torch.testing.assert_close(crossing, torch.tensor([[0.0, 0.0, 200.0, 100.0]]))


def test_batched_call_maps_each_image_with_its_own_letterbox() -> None:
    boxes = torch.tensor([[[16.0, 16.0, 32.0, 32.0]], [[16.0, 16.0, 32.0, 32.0]]])
    scores = torch.tensor([[[0.9]], [[0.9]]])
    letterbox = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 1.0, 8.0, 8.0]])
    dets = PostProcess(conf=0.25)(boxes, scores, letterbox, torch.tensor([[128, 128], [64, 64]]))
    assert dets[0].boxes.tolist() == [[32.0, 32.0, 64.0, 64.0]]
    assert dets[1].boxes.tolist() == [[8.0, 8.0, 24.0, 24.0]]


def test_decode_matches_hand_computed_box() -> None:
    """One cell of an 8-stride level whose DFL bins put all mass on distances 1, 2, 3, 4 (in strides)."""
    from detector.models.heads import DetectHead
    from detector.types import HeadOutput

    head = DetectHead(in_channels=[8], strides=[8], num_classes=2, reg_max=16)
    box = torch.full((1, 64, 1, 2), -1e4)
    for side, bin_ in enumerate((1, 2, 3, 4)):
        box[0, side * 16 + bin_, 0, 1] = 0.0  # second cell: centre (12, 4)
    cls = torch.zeros(1, 2, 1, 2)
    boxes, scores = head.decode(HeadOutput(box=[box], cls=[cls], strides=(8,), reg_max=16))
    torch.testing.assert_close(boxes[0, 1], torch.tensor([12 - 8.0, 4 - 16.0, 12 + 24.0, 4 + 32.0]))
    torch.testing.assert_close(scores[0, 1], torch.tensor([0.5, 0.5]))
