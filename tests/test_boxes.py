import torch

from detector.boxes import cxcywh_to_xyxy, grid_points, ltrb_to_xyxy, xyxy_to_cxcywh, xyxy_to_ltrb


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
