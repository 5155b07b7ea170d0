"""Conv records: kinds, the size formula, MACs against the FLOP counter, BatchNorm followers, weight statistics."""

from __future__ import annotations

import math

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn

from detector import build_model
from detector.errors import ConfigError
from detector.inspect import (
    compare_weights,
    conv_output_size,
    conv_transpose_output_size,
    inspect_layers,
    select_layers,
    totals,
    weight_stats,
)
from detector.inspect.report import layers_table, render, weights_table
from detector.models import count_flops
from detector.models.blocks import ConvBNAct, depthwise_conv


def test_size_formulas_by_hand() -> None:
    assert conv_output_size(640, 3, 2, 1, 1) == 320  # floor((640 + 2 - 2 - 1) / 2) + 1
    assert conv_output_size(7, 3, 2, 0, 2) == 2  # floor((7 - 4 - 1) / 2) + 1
    assert conv_transpose_output_size(16, 4, 2, 1, 1, 0) == 32  # 15*2 - 2 + 3 + 1
    assert conv_transpose_output_size(5, 3, 2, 1, 1, 1) == 10  # 4*2 - 2 + 2 + 1 + 1


def test_kinds_of_convolution() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 16, 1),
        nn.Conv2d(16, 16, 3, padding=1, groups=4),
        nn.ConvTranspose2d(16, 4, 2, stride=2),
        depthwise_conv(4, 4, 3),
    )
    layers = inspect_layers(model, 16).layers
    assert [layer.kind for layer in layers] == [
        "regular",
        "depthwise",
        "pointwise",
        "grouped",
        "transposed",
        "depthwise",
    ]
    assert [layer.path for layer in layers] == ["0", "1", "2", "3", "4", "5.conv"]
    # MACs by hand: out elements x (in / groups) x taps; a transposed conv: in elements x (out / groups) x taps
    assert [layer.macs for layer in layers[:5]] == [
        8 * 16 * 16 * 3 * 9,
        8 * 16 * 16 * 1 * 9,
        16 * 16 * 16 * 8,
        16 * 16 * 16 * 4 * 9,
        16 * 16 * 16 * 4 * 4,
    ]
    assert layers[4].output_shape == (4, 32, 32) and all(layer.shape_ok for layer in layers)


def test_conv_macs_are_the_flop_counter_of_the_whole_model() -> None:
    """yolov8n has no matrix products: 2 x conv MACs is exactly the model's FLOPs (8.7 GFLOPs at 640,
    a hundredth of that at 64: every feature map has a tenth of the side). yolo11n's attention adds a
    few matrix products on top of its convs."""
    v8 = build_model("yolov8n")
    t = totals(inspect_layers(v8, 64).layers)
    assert 2 * t["macs"] == count_flops(v8, 64) and round(100 * t["gflops"], 1) == 8.7
    v11 = build_model("yolo11n", num_classes=4)
    conv_flops = 2 * totals(inspect_layers(v11, 128).layers)["macs"]
    assert 0.97 * count_flops(v11, 128) < conv_flops < count_flops(v11, 128)


def test_weight_statistics_by_hand() -> None:
    conv = nn.Conv2d(2, 3, 2, bias=False)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        conv.weight.zero_()  # filter 0: dead
        conv.weight[1, 0, 0, 0] = 1.0  # filter 1: one weight of 1, L2 norm 1
        conv.weight[2] = 0.5  # filter 2: eight weights of 0.5, L2 norm sqrt(2)
        bn.weight.copy_(torch.tensor([1.0, 0.0, 1.0]))  # filter 1 switched off by its gamma
    stats = weight_stats(conv, bn, tol=1e-3)
    mean = 5 / 24  # (1 + 8 * 0.5) / 24 weights
    assert stats.mean == pytest.approx(mean)
    assert stats.std == pytest.approx(math.sqrt(3 / 24 - mean**2))  # E[w^2] = (1 + 8 * 0.25) / 24
    assert (stats.filter_norm_min, stats.filter_norm_median) == (0.0, 1.0)
    assert stats.filter_norm_max == pytest.approx(math.sqrt(2))
    assert stats.near_zero == pytest.approx(15 / 24)  # 8 + 7 + 0 zeros
    assert stats.dead_filters == 1 and stats.gamma_near_zero == pytest.approx(1 / 3)
    assert stats.prunable == 2  # the dead filter and the gated one

    layer = inspect_layers(nn.Sequential(conv, bn, nn.ReLU()), 8, in_channels=2).layers[0]
    assert (layer.norm, layer.norm_path) == ("bn", "1")
    assert layer.weights == stats
    assert weight_stats(conv).gamma_near_zero is None and weight_stats(conv).prunable == 1


def test_transposed_filters_are_taken_per_output_channel() -> None:
    conv = nn.ConvTranspose2d(4, 4, 1, groups=2, bias=False)  # weight [in 4, out/groups 2, 1, 1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 1] = 3.0  # group 0, input 0 -> output 1
        conv.weight[1, 1] = 4.0  # group 0, input 1 -> output 1: filter 1 has norm 5
    stats = weight_stats(conv)
    assert stats.dead_filters == 3 and stats.filter_norm_max == pytest.approx(5.0)


def test_batchnorm_followers_and_fused_convs() -> None:
    model = nn.Sequential(ConvBNAct(3, 8, 3), ConvBNAct(8, 8, 1, act=False), nn.Conv2d(8, 2, 1))
    before = inspect_layers(model, 16).layers
    assert [(layer.norm, layer.norm_path) for layer in before] == [("bn", "0.bn"), ("bn", "1.bn"), ("none", None)]
    for block in model[:2]:
        block.fuse()
    after = inspect_layers(model, 16).layers
    assert [layer.norm for layer in after] == ["fused", "fused", "none"] and after[0].bias


class Cropping(nn.Conv2d):
    """A conv whose output loses its last row: the hooked size disagrees with the formula."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[..., :-1, :]


def test_a_size_that_disagrees_with_the_formula_is_flagged() -> None:
    report = inspect_layers(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Cropping(4, 4, 3, padding=1)), 16)
    ok, cropped = report.layers
    assert ok.shape_ok and cropped.shape_ok is False
    assert cropped.expected_size == (16, 16) and cropped.output_shape == (4, 15, 16)
    console = Console(record=True, width=200)
    console.print(layers_table(report, report.layers, 200))
    text = console.export_text()
    assert "MISMATCH: formula 16x16" in text and "1 output size disagree" in text
    assert totals(report.layers)["shape_mismatches"] == 1


def test_select_layers_by_glob_and_kind() -> None:
    layers = inspect_layers(build_model("yolo11n", num_classes=2, **{"scale.width": 0.0625}), 64).layers
    backbone = select_layers(layers, "backbone.*")
    assert backbone and all(layer.path.startswith("backbone.") for layer in backbone)
    both = select_layers(layers, ["backbone.stem.*", "head.dfl.*"])
    assert [layer.path for layer in both] == ["backbone.stem.conv", "head.dfl.conv"]
    depthwise = select_layers(layers, "head.*", kind="depthwise")
    assert len(depthwise) == 6 and all(layer.groups == layer.in_channels for layer in depthwise)
    with pytest.raises(
        ConfigError, match=r"layers=neck\.nothing\* matches no convolution; conv paths look like backbone"
    ):
        select_layers(layers, "neck.nothing*")
    with pytest.raises(ConfigError, match="kind=transposed: none of the selected"):
        select_layers(layers, None, "transposed")


def test_weight_change_between_two_models() -> None:
    a = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Conv2d(2, 3, 1))
    b = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Conv2d(2, 4, 1), nn.Conv2d(4, 1, 1))
    with torch.no_grad():
        a[0].weight.fill_(1.0)
        b[0].weight.fill_(1.1)  # every weight 10 % larger: relative change 0.1
    changes = {c.path: c for c in compare_weights(a, b)}
    assert changes["0"].relative_change == pytest.approx(0.1)
    assert changes["1"].relative_change is None and changes["1"].note == "shape 3x2x1x1 -> 4x2x1x1"
    assert changes["2"].shape is None and changes["2"].note == "only in the other model"


def test_every_format_carries_every_field() -> None:
    import csv
    import io
    import json

    report = inspect_layers(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)), (32, 48))
    document = json.loads(render("json", report, report.layers))
    row = document["layers"][0]
    assert row["kernel"] == [3, 3] and row["output_shape"] == [4, 16, 24] and row["receptive_field"] == [3, 3]
    assert row["norm"] == "bn" and row["macs"] == 4 * 16 * 24 * 27 and document["totals"]["convs"] == 1
    table = list(csv.DictReader(io.StringIO(render("csv", report, report.layers))))
    assert set(table[0]) == set(row) and table[0]["input_shape"] == "3x32x48" and table[0]["shape_ok"] == "true"
    markdown = render("markdown", report, report.layers).splitlines()
    assert markdown[2].startswith("| index | path | type | kind |")
    assert markdown[4].startswith("| 0 | 0 | Conv2d | regular |")
    console = Console(record=True, width=80)
    console.print(weights_table(report.layers, None, 80))
    assert all(len(line) <= 80 for line in console.export_text().splitlines())
