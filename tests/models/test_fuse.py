import copy

import pytest
import torch

from detector import build_model
from tests.helpers import randomize_batchnorm


@pytest.mark.parametrize(
    "name", ["yolov8n", "yolo11n", "resnet18_pan", "mobilenetv3_pan", "convnext_tiny_pan", "resnet18_fpn"]
)
def test_fuse_keeps_outputs_and_removes_batchnorm(name: str) -> None:
    model = build_model(name, num_classes=4)
    randomize_batchnorm(model)
    model.eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        before = model(x)
        fused = copy.deepcopy(model).fuse()
        after = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    for a, b in zip(before.box + before.cls, after.box + after.cls):
        assert (a - b).abs().max().item() < 1e-4
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())
