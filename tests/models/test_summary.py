import torch
from torch import nn

from detector import build_model, summary
from detector.models.summary import count_flops


def test_flops_of_one_conv_are_twice_its_macs() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    macs = 8 * 8 * 8 * 3 * 3 * 3  # output positions x output channels x (c_in x k x k)
    assert count_flops(conv, 16) == 2 * macs


def test_flops_count_attention_matmuls() -> None:
    class Gram(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = x.flatten(2)  # [1, 3, N]
            return f.transpose(1, 2) @ f  # [1, N, N]: N * N * 3 MACs

    assert count_flops(Gram(), (4, 5)) == 2 * 20 * 20 * 3


def test_summary_leaves_the_model_untouched() -> None:
    model = build_model("yolo11n", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = summary(model, imgsz=320)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["trainable_params"] == info["params"] - 16  # the fixed DFL bins
    assert info["strides"] == (8, 16, 32) and info["num_classes"] == 3
    # FLOPs grow with the input area (4x the pixels, about 4x the work)
    assert summary(model, imgsz=640)["gflops"] / info["gflops"] > 3.9
