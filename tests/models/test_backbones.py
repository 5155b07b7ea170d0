from pathlib import Path

import pytest
import torch
import torchvision

from detector import build_model
from detector.errors import ConfigError
from detector.models.backbones import CSPDarknet, TorchvisionBackbone


def test_torchvision_weights_load_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    """The real loading path, offline: a weights file already in $TORCH_HOME is what gets loaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = torchvision.models.resnet18().state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / Path(weights.url).name)

    model = build_model("resnet18_pan", num_classes=2, **{"backbone.weights": "IMAGENET1K_V1"})
    loaded = model.backbone.body.state_dict()
    assert torch.equal(loaded["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    assert torch.equal(loaded["conv1.weight"], reference["conv1.weight"])


def test_missing_weights_offline_is_one_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    with pytest.raises(ConfigError, match=r"could not fetch torchvision weights 'DEFAULT' for resnet18 .*checkpoints"):
        build_model("resnet18_pan", **{"backbone.weights": "DEFAULT"})


def _offline(*args, **kwargs):
    raise OSError("network unreachable")


def test_return_nodes_must_exist_and_go_fine_to_coarse() -> None:
    with pytest.raises(ValueError, match="no node"):
        TorchvisionBackbone(torchvision.models.resnet18, ["layer2", "layer9", "layer4"])
    with pytest.raises(ValueError, match="fine to coarse"):
        TorchvisionBackbone(torchvision.models.resnet18, ["layer4", "layer3", "layer2"])


def test_torchvision_backbone_normalizes_with_imagenet_statistics() -> None:
    raw = TorchvisionBackbone(torchvision.models.resnet18, ["layer2", "layer3", "layer4"], normalize=False).eval()
    norm = TorchvisionBackbone(torchvision.models.resnet18, ["layer2", "layer3", "layer4"], normalize=True).eval()
    norm.load_state_dict(raw.state_dict())
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(norm(x)[0], raw((x - mean) / std)[0])
    assert "mean" not in norm.state_dict()  # constants, not weights


def test_probe_does_not_touch_batchnorm_statistics() -> None:
    backbone = TorchvisionBackbone(torchvision.models.resnet18, ["layer2", "layer3", "layer4"])
    assert backbone.training
    assert torch.equal(backbone.body.bn1.running_mean, torch.zeros(64))


def test_csp_darknet_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError):
        CSPDarknet(variant="yolov5")
