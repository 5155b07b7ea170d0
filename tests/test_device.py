"""Precision and memory-format choices per device."""

from __future__ import annotations

import pytest
import torch

from detector import build_model
from detector import device as devices
from detector.errors import ConfigError
from tests.helpers import randomize_batchnorm

CPU = torch.device("cpu")


def test_autocast_dtype_on_cpu(monkeypatch) -> None:
    assert devices.autocast_dtype(CPU, None) is None  # auto: float32 on a CPU
    assert devices.autocast_dtype(CPU, False) is None
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.autocast_dtype(CPU, True) is torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="train.amp=true on a CPU without native bf16"):
        devices.autocast_dtype(CPU, True, "train.amp")


@pytest.mark.skipif(not devices.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_inference_on_cpu_stays_close_to_float32() -> None:
    model = build_model("yolov8n", num_classes=5).eval()
    randomize_batchnorm(model)
    model.fuse().to(memory_format=devices.memory_format(CPU))
    x = torch.rand(1, 3, 128, 160).contiguous(memory_format=devices.memory_format(CPU))
    with torch.no_grad():
        ref_boxes, ref_scores = model.head.decode(model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        boxes, scores = model.head.decode(out.float())
    assert out.box[0].dtype == torch.bfloat16  # the convolutions did run in bf16
    assert (scores - ref_scores).abs().max() < 0.05
    assert ((boxes - ref_boxes).abs() / (ref_boxes.abs() + 16)).max() < 0.05  # 5 % of the box, or of 16 px


def test_channels_last_changes_nothing_but_speed() -> None:
    model = build_model("yolo11n", num_classes=3).eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref.box + ref.cls, out.box + out.cls):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda: bool, mps: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert devices.select_device("auto") == torch.device(expected)
    assert devices.select_device(" AUTO ") == torch.device(expected)


def test_an_accelerator_that_is_not_there_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device=cuda:1 but CUDA is not available"):
        devices.select_device("cuda:1")
    with pytest.raises(ConfigError, match="device=mps but MPS is not available"):
        devices.select_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.select_device("1") == devices.select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"only 2 CUDA device\(s\)"):
        devices.select_device("cuda:2")
