"""Receptive fields and jumps against hand-computed values: chains, branches, resampling, attention."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from detector import build_model
from detector.inspect import Field, FieldTracker, inspect_layers
from detector.inspect.receptive import adaptive_window, transposed_taps


def fields_of(model: nn.Module, x: Tensor, taps: list[nn.Module]) -> list[Field | None]:
    """The field of each module's output in ``taps`` after ``model(x)``."""
    outs: dict[nn.Module, Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, args, out: outs.setdefault(mod, out)) for m in taps]
    with torch.no_grad(), FieldTracker() as tracker:
        tracker.start(x)
        model(x)
        found = [tracker.field(outs[m]) for m in taps]
    for h in handles:
        h.remove()
    return found


def test_a_chain_of_convs_with_strides_dilation_padding_pool_and_upsampling() -> None:
    chain = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=1, padding=1),  # rf 1 + 2*1 = 3, jump 1
        nn.Conv2d(2, 2, 3, stride=2, padding=1),  # rf 3 + 2*1 = 5, jump 2
        nn.Conv2d(2, 2, 3, stride=1, padding=2, dilation=2),  # rf 5 + (3-1)*2*2 = 13, jump 2
        nn.MaxPool2d(2, 2),  # rf 13 + 1*2 = 15, jump 4
        nn.Conv2d(2, 2, 5, stride=1, padding=0),  # rf 15 + 4*4 = 31, jump 4 (no padding: size shrinks)
        nn.Upsample(scale_factor=2.0, mode="nearest"),  # rf 31, jump 2
        nn.Conv2d(2, 2, 3, padding=1),  # rf 31 + 2*2 = 35, jump 2
        nn.Conv2d(2, 1, (3, 1), stride=(2, 1), padding=(1, 0)),  # rf (35 + 2*2, 35) = (39, 35), jump (4, 2)
    )
    got = fields_of(chain, torch.zeros(1, 1, 64, 64), list(chain))
    expected = [(3, 1), (5, 2), (13, 2), (15, 4), (31, 4), (31, 2), (35, 2)]
    for field, (rf, jump) in zip(got, expected):
        assert field == Field((rf, rf), (jump, jump))
    assert got[-1] == Field((39, 35), (4, 2))

    # the same figures, with hooked shapes that agree with the formula, through inspect_layers
    layers = inspect_layers(chain, (64, 64), in_channels=1).layers
    assert [layer.receptive_field for layer in layers] == [(3, 3), (5, 5), (13, 13), (31, 31), (35, 35), (39, 35)]
    assert [layer.jump for layer in layers] == [(1, 1), (2, 2), (2, 2), (4, 4), (2, 2), (4, 2)]
    # 64 -> 64 -> 32 -> 32 -> (pool) 16 -> 12 (5x5, no padding) -> (up) 24 -> 24 -> 12x24
    assert [layer.output_shape[1:] for layer in layers] == [(64, 64), (32, 32), (32, 32), (12, 12), (24, 24), (12, 24)]
    assert all(layer.shape_ok for layer in layers)


class TwoBranches(nn.Module):
    """A 3x3 branch and a 7x7 branch, concatenated; then a residual add of a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(1, 1, 3, padding=1)
        self.large = nn.Conv2d(1, 1, 7, padding=3)
        self.point = nn.Conv2d(2, 2, 1)
        self.after = nn.Conv2d(2, 1, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.small(x), self.large(x)], 1)
        y = y + self.point(y)  # the input of the add has rf 7, the 1x1 keeps it
        return self.after(y)


def test_concat_and_add_take_the_largest_field() -> None:
    model = TwoBranches()
    taps = [model.small, model.large, model.point, model.after]
    small, large, point, after = fields_of(model, torch.zeros(1, 1, 32, 32), taps)
    assert (small.rf, large.rf, point.rf) == ((3, 3), (7, 7), (7, 7))
    assert after == Field((9, 9), (2, 2))  # 7 + 2*1, stride 2


def test_transposed_conv_and_interpolation() -> None:
    assert transposed_taps(4, 2, 1) == 2  # k4 s2: two input positions per output
    assert transposed_taps(3, 2, 2) == 3  # taps 0, 2, 4 all on the same parity: three inputs
    assert transposed_taps(2, 2, 3) == 1  # taps 0 and 3 never land on the same output grid
    model = nn.Sequential(
        nn.Conv2d(1, 1, 3, stride=2, padding=1),  # rf 3, jump 2
        nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1),  # rf 3 + (2-1)*2 = 5, jump 1
        nn.Upsample(scale_factor=2.0, mode="bilinear"),  # rf 5 + 1*1 = 6, jump 0.5
    )
    got = fields_of(model, torch.zeros(1, 1, 32, 32), list(model))
    assert got == [Field((3, 3), (2, 2)), Field((5, 5), (1, 1)), Field((6, 6), (0.5, 0.5))]
    layers = inspect_layers(model[:2], 32, in_channels=1).layers
    assert layers[1].kind == "transposed" and layers[1].output_shape == (1, 32, 32) and layers[1].shape_ok


def test_adaptive_pool_spans_its_whole_window() -> None:
    assert adaptive_window(8, 1) == 8 and adaptive_window(10, 3) == 4 and adaptive_window(8, 4) == 2
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1))
    _, pool = fields_of(model, torch.zeros(1, 1, 16, 16), list(model))
    assert pool == Field((3 + 7 * 2, 3 + 7 * 2), (16, 16))  # 8 positions 2 pixels apart: the whole image


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(4, 12, 1)
        self.proj = nn.Conv2d(4, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)  # [B, 4, N] each
        weights = (q.transpose(1, 2) @ k).softmax(-1)  # [B, N, N]: every position reads every other
        return self.proj((v @ weights.transpose(1, 2)).view(b, c, h, w))


def test_attention_makes_the_field_global() -> None:
    model = SelfAttention()
    qkv, proj = fields_of(model, torch.zeros(1, 4, 8, 8), [model.qkv, model.proj])
    assert qkv == Field((1, 1), (1, 1))
    assert all(math.isinf(r) for r in proj.rf) and proj.jump == (1, 1)


def test_the_field_grows_along_the_backbone_and_reaches_the_head() -> None:
    layers = {layer.path: layer for layer in inspect_layers(build_model("yolov8n", num_classes=2), 64).layers}
    assert layers["backbone.stem.conv"].receptive_field == (3, 3)  # 3x3 stride 2
    assert layers["backbone.stages.0.0.conv"].receptive_field == (7, 7)  # 3 + 2*2, jump 4
    assert layers["backbone.stages.0.0.conv"].jump == (4, 4)
    # P3 of the head: through the PAN's top-down path from P5 (upsampled twice) and P4
    assert layers["head.box.0.2"].jump == (8, 8) and layers["head.box.2.2"].jump == (32, 32)
    assert layers["head.box.0.2"].receptive_field[0] > layers["backbone.stages.1.1.cv2.conv"].receptive_field[0]


def test_torchvision_resnet18_reaches_its_published_receptive_field() -> None:
    """resnet18's last conv sees 435 pixels at stride 32 (its well-known theoretical figure), through
    the torch.fx-traced body of our torchvision backbone."""
    model = build_model("resnet18_pan", num_classes=2)
    layers = {layer.path: layer for layer in inspect_layers(model, 64).layers}  # the figure holds at any size
    last = layers["backbone.body.layer4.1.conv2"]
    assert last.receptive_field == (435, 435) and last.jump == (32, 32)
    assert layers["backbone.body.conv1"].receptive_field == (7, 7) and layers["backbone.body.conv1"].norm == "bn"
    rf = 7 + 2 * 2 + 2 * 4  # 7x7/2 conv, 3x3/2 max-pool (jump 2), 3x3 conv (jump 4)
    assert layers["backbone.body.layer1.0.conv1"].receptive_field == (rf, rf)
