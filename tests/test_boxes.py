import torch

from detector.boxes import (
    cxcywh_to_xyxy,
    decode_boxes,
    expected_distances,
    grid_points,
    ltrb_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_ltrb,
)
from detector.types import HeadOutput


def test_xyxy_cxcywh_round_trip_and_values() -> None:
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 1.0, 3.0]])
    assert xyxy_to_cxcywh(boxes).tolist() == [[30.0, 30.0, 40.0, 20.0], [0.5, 1.5, 1.0, 3.0]]
    assert torch.equal(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)


def test_ltrb_round_trip_and_values() -> None:
    point = torch.tensor([[12.0, 8.0]])
    box = ltrb_to_xyxy(torch.tensor([[2.0, 3.0, 4.0, 5.0]]), point)
    assert box.tolist() == [[10.0, 5.0, 16.0, 13.0]]
    assert xyxy_to_ltrb(box, point).tolist() == [[2.0, 3.0, 4.0, 5.0]]


def test_grid_points_are_cell_centres_fine_to_coarse() -> None:
    points, strides = grid_points([(2, 3), (1, 1)], [8, 16])
    assert points.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8]]
    assert strides.flatten().tolist() == [8] * 6 + [16]


def one_hot_logits(bins_per_point: list[tuple[int, int, int, int]], reg_max: int) -> torch.Tensor:
    """``[1, 4 * reg_max, A]`` DFL logits putting all mass of each side on the given bin."""
    logits = torch.full((1, 4 * reg_max, len(bins_per_point)), -1e4)
    for a, sides in enumerate(bins_per_point):
        for side, b in enumerate(sides):
            logits[0, side * reg_max + b, a] = 0.0
    return logits


def test_expected_distances_are_the_mean_bin_of_each_side() -> None:
    bins = torch.arange(4.0)
    assert expected_distances(one_hot_logits([(0, 3, 1, 2)], 4), bins)[0, :, 0].tolist() == [0.0, 3.0, 1.0, 2.0]
    half = torch.full((1, 16, 1), -1e4)
    half[0, [1, 2], 0] = 0.0  # the left side split evenly between bins 1 and 2
    half[0, [4, 8, 12], 0] = 0.0  # the other sides on bin 0
    assert expected_distances(half, bins)[0, :, 0].tolist() == [1.5, 0.0, 0.0, 0.0]
    uniform = expected_distances(torch.zeros(2, 16, 3), bins)  # [B, 4, A]
    assert uniform.shape == (2, 4, 3) and torch.allclose(uniform, torch.full((2, 4, 3), 1.5))
    assert expected_distances(one_hot_logits([(1, 2, 3, 0)], 4), bins * 10)[0, :, 0].tolist() == [10, 20, 30, 0]


def test_decode_boxes_by_hand_on_two_levels() -> None:
    """A 1x2 map at stride 8 (centres (4, 4), (12, 4)) and a 1x1 map at stride 16 (centre (8, 8))."""
    reg_max = 4
    logits = one_hot_logits([(1, 0, 2, 3), (0, 0, 0, 0), (1, 1, 1, 1)], reg_max)  # [1, 16, 3]
    out = HeadOutput(
        box=[logits[..., :2].reshape(1, 16, 1, 2), logits[..., 2:].reshape(1, 16, 1, 1)],
        cls=[torch.zeros(1, 2, 1, 2), torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)],
        strides=(8, 16),
        reg_max=reg_max,
    )
    d = decode_boxes(out)
    assert d.points.tolist() == [[4, 4], [12, 4], [8, 8]]
    assert d.strides.flatten().tolist() == [8, 8, 16]
    assert d.distances[0].tolist() == [[1, 0, 2, 3], [0, 0, 0, 0], [1, 1, 1, 1]]  # in strides
    # left = x - l * s, top = y - t * s, right = x + r * s, bottom = y + b * s
    assert d.boxes[0].tolist() == [[4 - 8, 4, 4 + 16, 4 + 24], [12, 4, 12, 4], [8 - 16, 8 - 16, 8 + 16, 8 + 16]]
    assert d.box_logits.shape == (1, 3, 16) and torch.equal(d.box_logits[0, 2], logits[0, :, 2])
    assert d.cls_logits[0].tolist() == [[0, 0], [0, 0], [1, -1]]
    doubled = decode_boxes(out, bins=torch.arange(4.0) * 2)  # the bins' values are an argument
    assert doubled.distances[0, 0].tolist() == [2, 0, 4, 6]


def test_decode_boxes_reg_max_1_takes_the_raw_distances() -> None:
    """YOLO26's head (reg_max 1): the four box channels are the ltrb distances, no softmax, and may be
    fractional or negative. A 1x2 map at stride 8 (centres (4, 4), (12, 4))."""
    raw = torch.tensor([[0.5, -1.0], [1.0, 0.0], [2.0, 0.25], [3.0, 1.0]]).view(1, 4, 1, 2)  # [B, 4, H, W]
    out = HeadOutput(box=[raw], cls=[torch.zeros(1, 3, 1, 2)], strides=(8,), reg_max=1)
    d = decode_boxes(out)
    assert d.distances[0].tolist() == [[0.5, 1.0, 2.0, 3.0], [-1.0, 0.0, 0.25, 1.0]]
    assert d.boxes[0].tolist() == [[4 - 4, 4 - 8, 4 + 16, 4 + 24], [12 + 8, 4, 12 + 2, 4 + 8]]
    assert out.one2one is None and out.float().one2one is None
    pair = HeadOutput([raw.half()], [torch.zeros(1, 3, 1, 2)], (8,), 1, one2one=HeadOutput([raw.half()], [], (8,), 1))
    assert pair.float().one2one is not None and pair.float().one2one.box[0].dtype == torch.float32
