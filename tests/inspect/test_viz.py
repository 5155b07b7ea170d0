"""Filter and feature-map grids: colours, layouts and sizes by hand; the letterboxed input image."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from detector.inspect import feature_grid, feature_maps, kernel_grid, load_image


def test_a_three_channel_filter_is_one_colour_tile() -> None:
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1))  # red lowest, blue highest
    grid = kernel_grid(conv)  # one 1x1 filter enlarged to 32 px
    assert grid.shape == (32, 32, 3)
    assert (grid.reshape(-1, 3) == [0, 128, 255]).all()  # (w - min) / (max - min) per channel


def test_other_filters_are_a_row_per_filter_and_a_tile_per_input() -> None:
    conv = nn.Conv2d(2, 4, 3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0  # the largest weight: the red end of the scale
        conv.weight[3, 1] = -1.0  # blue end
    grid = kernel_grid(conv)
    assert grid.shape == (4 * 30 + 3 * 4, 2 * 30 + 4, 3)  # 4 rows x 2 columns of 30 px tiles, 4 px gaps
    red, white, blue = grid[0, 0], grid[0, 34], grid[3 * 34, 34]
    assert red[0] > red[2] and blue[2] > blue[0] and white.min() > 240


def test_feature_grid_shrinks_tiles_and_stretches_each_channel() -> None:
    fmap = torch.zeros(4, 400, 200)
    fmap[0] = torch.linspace(0, 5, 200).expand(400, 200)  # a ramp: viridis dark to yellow
    grid = feature_grid(fmap)
    assert grid.shape == (2 * 160 + 4, 2 * 80 + 4, 3)  # 400x200 shrunk to 160x80, 2 x 2
    left, right = grid[80, 0], grid[80, 79]
    assert left[2] > left[1] and right[0] > 200 and right[1] > 200  # purple-blue to yellow


def test_load_image_letterboxes_and_feature_maps_hook_any_module(tmp_path) -> None:
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.full((50, 100, 3), 255, np.uint8))
    x = load_image(path, (64, 64))  # 100 -> 64 wide, 50 -> 32 high, centred: 16 grey rows above
    assert x.shape == (1, 3, 64, 64)
    assert torch.allclose(x[0, :, 15, 0], torch.full((3,), 114 / 255)) and (x[0, :, 16:48] == 1).all()
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.Sequential(nn.ReLU(), nn.Conv2d(5, 2, 1)))
    maps = feature_maps(model, x, ["0", "1"])
    assert maps["0"].shape == (5, 32, 32) and maps["1"].shape == (2, 32, 32)
