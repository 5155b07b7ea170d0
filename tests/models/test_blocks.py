import math

import pytest
import torch

from detector.boxes import decode_boxes
from detector.models.blocks import (
    C2PSA,
    DFL,
    SPPF,
    Attention,
    Bottleneck,
    C2f,
    C3k,
    C3k2,
    ConvBNAct,
    depthwise_conv,
    make_divisible,
    scale_channels,
    scale_depth,
)
from detector.models.heads import DetectHead


@pytest.mark.parametrize(
    "block, c_out",
    [
        (ConvBNAct(8, 16, 3), 16),
        (Bottleneck(16, 16), 16),
        (C2f(8, 32, n=2, shortcut=True), 32),
        (C3k(16, 24, n=2), 24),
        (C3k2(8, 32, n=2, c3k=False, expansion=0.25), 32),
        (C3k2(8, 32, n=1, c3k=True), 32),
        (SPPF(16, 24), 24),
        (C2PSA(64, 64, n=1), 64),
        (Attention(64, num_heads=2), 64),
        (depthwise_conv(16, 16), 16),
    ],
)
def test_block_keeps_spatial_size(block: torch.nn.Module, c_out: int) -> None:
    c_in = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    y = block.eval()(torch.rand(2, c_in, 12, 20))
    assert y.shape == (2, c_out, 12, 20)


def test_strided_conv_halves_size() -> None:
    assert ConvBNAct(3, 8, 3, 2)(torch.rand(1, 3, 33, 64)).shape == (1, 8, 17, 32)


def test_depthwise_conv_has_one_group_per_channel() -> None:
    conv = depthwise_conv(24, 24).conv
    assert conv.groups == 24 and conv.weight.shape == (24, 1, 3, 3)


def test_bottleneck_residual_only_when_widths_match() -> None:
    assert Bottleneck(16, 16, shortcut=True).add
    assert not Bottleneck(16, 32, shortcut=True).add
    assert not Bottleneck(16, 16, shortcut=False).add


def test_c2psa_rejects_width_change_and_builds_narrow() -> None:
    with pytest.raises(ValueError, match="keeps its width"):
        C2PSA(64, 128)
    narrow = C2PSA(32, 32)  # 16 hidden channels: fewer than one 64-channel head
    assert narrow.m[0].attn.num_heads == 1
    assert narrow(torch.rand(1, 32, 4, 4)).shape == (1, 32, 4, 4)


def test_attention_matches_explicit_softmax() -> None:
    attn = Attention(8, num_heads=2, attn_ratio=0.5).eval()
    x = torch.rand(1, 8, 3, 3)
    with torch.no_grad():
        qkv = attn.qkv(x).view(1, 2, 2 + 2 + 4, 9)
        q, k, v = qkv[:, :, :2], qkv[:, :, 2:4], qkv[:, :, 4:]
        out = torch.zeros(1, 2, 4, 9)
        for h in range(2):
            for i in range(9):  # query position i attends over all positions j
                logits = torch.tensor([(q[0, h, :, i] * k[0, h, :, j]).sum() / math.sqrt(2) for j in range(9)])
                out[0, h, :, i] = (v[0, h] * logits.softmax(0)).sum(1)
        expected = attn.proj(out.view(1, 8, 3, 3) + attn.pe(v.reshape(1, 8, 3, 3)))
        assert torch.allclose(attn(x), expected, atol=1e-5)


def test_dfl_is_expected_bin() -> None:
    dfl = DFL(4)
    logits = torch.full((1, 16, 1), -1e4)
    for side, b in enumerate((0, 3, 1, 2)):  # one-hot bins
        logits[0, side * 4 + b, 0] = 0.0
    assert dfl(logits).flatten().tolist() == [0.0, 3.0, 1.0, 2.0]
    uniform = dfl(torch.zeros(1, 16, 1))
    assert torch.allclose(uniform, torch.full((1, 4, 1), 1.5))  # mean of 0, 1, 2, 3
    assert not dfl.conv.weight.requires_grad


def test_head_decode_is_decode_boxes_with_the_dfl_bins_of_the_state_dict() -> None:
    """The fixed DFL conv stays in the state_dict (Ultralytics checkpoints carry it) and holds the bin
    values the head's decoding uses; the loss decodes with the same function and bins 0 .. reg_max - 1."""
    head = DetectHead(in_channels=[8, 16], strides=[8, 16], num_classes=2, reg_max=4)
    assert torch.equal(head.state_dict()["dfl.conv.weight"].flatten(), torch.arange(4.0))
    out = head([torch.rand(1, 8, 4, 6), torch.rand(1, 16, 2, 3)])
    boxes, scores = head.decode(out)
    decoded = decode_boxes(out)
    assert torch.equal(boxes, decoded.boxes) and torch.equal(scores, decoded.cls_logits.sigmoid())
    with torch.no_grad():
        head.dfl.conv.weight.mul_(2.0)
    doubled, _ = head.decode(out)
    points = decoded.points.expand_as(decoded.boxes[..., :2])
    torch.testing.assert_close(doubled - points.repeat(1, 1, 2), (decoded.boxes - points.repeat(1, 1, 2)) * 2)


def test_scaling_rules() -> None:
    assert make_divisible(17) == 24 and make_divisible(16) == 16
    assert scale_channels(1024, 0.25, 1024) == 256
    assert scale_channels(1024, 0.75, 768) == 576  # capped before the multiplier
    assert scale_channels(64, 0.3, 1024) == 24  # 19.2 rounds up to a multiple of 8
    assert scale_depth(3, 0.33) == 1 and scale_depth(6, 0.67) == 4 and scale_depth(1, 0.33) == 1


def test_fuse_folds_batchnorm() -> None:
    block = ConvBNAct(4, 8, 3)
    with torch.no_grad():
        block.bn.running_mean.normal_()
        block.bn.running_var.uniform_(0.5, 2)
        block.bn.weight.uniform_(0.5, 1.5)
    block.eval()
    x = torch.rand(2, 4, 9, 9)
    before = block(x)
    block.fuse()
    assert isinstance(block.bn, torch.nn.Identity) and block.conv.bias is not None
    assert torch.allclose(block(x), before, atol=1e-5)


def test_checkpoints_naming_the_old_head_class_still_build() -> None:
    """Checkpoints written before YOLO26 store ``_target_: detector.models.heads.DFLHead``."""
    from detector.config.models import model_config
    from detector.models.zoo import instantiate_model

    config = model_config("yolov8n", 3)
    assert config["head"]["_target_"] == "detector.models.heads.DetectHead"
    config["head"] = {k: v for k, v in config["head"].items() if k not in ("end2end", "inference")}
    config["head"]["_target_"] = "detector.models.heads.DFLHead"
    model = instantiate_model(config)
    assert isinstance(model.head, DetectHead) and model.head.branches == ("one2many",)
