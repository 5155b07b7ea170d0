"""Letterbox geometry against values worked out by hand, and the round trip of boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.letterbox import (
    FILL,
    centred_offset,
    fit_longest_side,
    fitted_size,
    letterbox,
    letterbox_params,
    place_centred,
    undo_letterbox,
)


def test_fitted_size_puts_the_longer_side_on_the_target() -> None:
    assert fitted_size(100, 200, 64) == (32, 64)  # scale 0.32
    assert fitted_size(200, 100, 64) == (64, 32)
    assert fitted_size(77, 91, 160) == (135, 160)  # 77 * 160 / 91 = 135.38
    assert fitted_size(3, 1000, 64) == (1, 64)  # 0.19 rounds to 0: never below one pixel
    assert fitted_size(50, 100, (64, 96)) == (48, 96)  # (H, W): min(64 / 50, 96 / 100) = 0.96
    assert fitted_size(50, 100, (40, 96)) == (40, 80)  # here the height binds: 0.8


def test_fit_longest_side_shrinks_by_area_and_enlarges_linearly() -> None:
    image = np.array([[0, 100, 200, 40], [20, 60, 100, 0]], np.uint8)[..., None].repeat(3, -1)  # 2 x 4
    shrunk = fit_longest_side(image, 2)  # to 1 x 2: each pixel the mean of a 2 x 2 block
    assert shrunk[..., 0].tolist() == [[(0 + 100 + 20 + 60) // 4, (200 + 40 + 100 + 0) // 4]]  # 45, 85
    row = np.array([[0, 200]], np.uint8)[..., None].repeat(3, -1)  # 1 x 2
    grown = fit_longest_side(row, 4)  # to 2 x 4; source x = (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
    assert grown[..., 0].tolist() == [[0, 50, 150, 200]] * 2
    assert fit_longest_side(row, 4, enlarge=False) is row  # already fits: kept as it is
    assert fit_longest_side(image, 4) is image  # already the fitted size


def test_centred_offset_rounds_the_top_left_padding_down() -> None:
    assert centred_offset((32, 64), (64, 64)) == (16, 0)
    assert centred_offset((33, 64), (64, 64)) == (15, 0)  # 31 rows of padding: 15 above, 16 below
    assert centred_offset((5, 4), (8, 9)) == (1, 2)


def test_place_centred_pads_with_the_letterbox_grey() -> None:
    image = np.full((1, 3, 3), 7, np.uint8)
    canvas = place_centred(image, (4, 4))  # top (4 - 1) // 2 = 1, left (4 - 3) // 2 = 0
    assert canvas.shape == (4, 4, 3) and canvas.dtype == np.uint8
    assert canvas[..., 0].tolist() == [[114] * 4, [7, 7, 7, 114], [114] * 4, [114] * 4]
    assert FILL == 114
    assert place_centred(image, 3, fill=255)[..., 0].tolist() == [[255] * 3, [7] * 3, [255] * 3]
    with pytest.raises(ValueError, match="does not fit"):
        place_centred(np.zeros((5, 2, 3), np.uint8), (4, 4))


def test_letterbox_params_by_hand() -> None:
    # a 200 x 100 (w x h) image to 64: scale 0.32 both ways, 64 - 32 = 32 rows of padding, 16 above
    assert letterbox_params((100, 200), (32, 64), 64).tolist() == pytest.approx([0.32, 0.32, 0.0, 16.0])
    # 91 x 77 to 160: loaded at 160 x 135, 25 rows of padding, 12 above
    sx, sy, px, py = letterbox_params((77, 91), (135, 160), 160).tolist()
    assert (sx, sy, px, py) == pytest.approx([160 / 91, 135 / 77, 0.0, 12.0])


def test_a_box_goes_into_the_letterbox_and_back() -> None:
    params = torch.from_numpy(letterbox_params((100, 200), (32, 64), 64))
    original = torch.tensor([[10.0, 10.0, 100.0, 100.0]])
    # x_in = x * 0.32 + 0, y_in = y * 0.32 + 16
    boxed = original * params[:2].repeat(2) + params[2:].repeat(2)
    torch.testing.assert_close(boxed, torch.tensor([[3.2, 19.2, 32.0, 48.0]]))
    torch.testing.assert_close(undo_letterbox(boxed, params), original)
    # a box reaching into the padding comes back clipped to the 100 x 200 image
    crossing = undo_letterbox(torch.tensor([[-6.4, 8.0, 70.0, 56.0]]), params, torch.tensor([100, 200]))
    torch.testing.assert_close(crossing, torch.tensor([[0.0, 0.0, 200.0, 100.0]]))


def test_letterbox_of_an_image_and_the_way_back() -> None:
    image = np.full((50, 100, 3), 255, np.uint8)  # h 50, w 100
    boxed, params = letterbox(image, 64)  # 100 -> 64 wide, 50 -> 32 high, 16 grey rows above and below
    assert boxed.shape == (64, 64, 3)
    assert (boxed[:16] == 114).all() and (boxed[16:48] == 255).all() and (boxed[48:] == 114).all()
    assert params.tolist() == pytest.approx([0.64, 0.64, 0.0, 16.0])
    white = torch.tensor([[0.0, 16.0, 64.0, 48.0]])  # the image's part of the input
    torch.testing.assert_close(undo_letterbox(white, torch.from_numpy(params)), torch.tensor([[0.0, 0.0, 100.0, 50.0]]))


@pytest.mark.parametrize("h, w", [(100, 150), (150, 100), (77, 91), (160, 160), (333, 101), (1, 300), (161, 640)])
def test_the_pipelines_albumentations_letterbox_is_the_same_geometry(h: int, w: int) -> None:
    """The validation pipeline (albumentations, boxes follow the pixels) gives the same pixels as
    :func:`letterbox`, and moves a box as :func:`letterbox_params` says."""
    from detector.data.transforms import build_val_pipeline

    imgsz = 160
    image = np.random.default_rng(h * w).integers(0, 255, (h, w, 3), dtype=np.uint8)
    fitted = fit_longest_side(image, imgsz)
    whole = np.array([[0, 0, fitted.shape[1], fitted.shape[0]]], np.float32)
    out = build_val_pipeline(imgsz)(fitted, whole, np.zeros(1, np.int64), seed=0)
    boxed, params = letterbox(image, imgsz)
    assert np.array_equal(out.image, boxed)
    sx, sy, px, py = params.tolist()
    np.testing.assert_allclose(out.boxes[0], [px, py, w * sx + px, h * sy + py], atol=1e-3)
