"""Tiny checkpoints for the prediction tests and small images to predict.

An untrained model initialised as for training predicts nearly the same low scores whatever the
image. These checkpoints' convolutions (but the head's box branches) are drawn with Kaiming's
initialisation, class biases zero, and their BatchNorm statistics measured on random images (so that
activations stay in range: no slow denormal floats); they give scores around 0.5 that change with
the image, and some tens of boxes of several classes per small image at ``conf=0.55``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch


def write_checkpoint(path: Path, model_name: str) -> Path:
    from omegaconf import OmegaConf

    from detector.checkpoint import save_checkpoint
    from detector.config import compose
    from detector.models.zoo import instantiate_model

    torch.manual_seed(0)
    cfg = compose("train", [f"model={model_name}", "model.scale.width=0.0625"])
    config = OmegaConf.to_container(cfg.model, resolve=True)
    model = instantiate_model(config)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d) and (not name.startswith("head.") or "cls" in name):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if "cls" in name and module.bias is not None:
                    module.bias.zero_()
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics measured below, as an average
                module.reset_running_stats()
                module.momentum = None
        model.train()
        model(torch.rand(8, 3, 64, 64))
        model.eval()
        if model.head.end2end:  # YOLO26's class branches: scores that do not saturate (few ties at 1.0)
            for branch in (model.head.cls, model.head.one2one_cls):
                for layers in branch:
                    layers[-1].weight.mul_(0.3)
    return save_checkpoint(path, model, config, list(cfg.data.names), imgsz=64)


@pytest.fixture(scope="session")
def yolov8_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("weights") / "v8.pt", "yolov8n")


@pytest.fixture(scope="session")
def yolo26_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("weights") / "e2e.pt", "yolo26n")


def write_images(folder: Path) -> list[Path]:
    """Five small images of different sizes and kinds (one grey) and an unreadable file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k, (h, w) in enumerate([(64, 64), (80, 120), (150, 60), (33, 47), (96, 96)]):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.rectangle(image, (w // 4, h // 4), (3 * w // 4, 3 * h // 4), (255, 40, 40), -1)
        path = folder / f"im{k}.{'jpg' if k % 2 else 'png'}"
        cv2.imwrite(str(path), image[..., 0] if k == 4 else image)
        paths.append(path)
    (folder / "broken.jpg").write_bytes(b"not an image")
    return paths


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return write_images(tmp_path / "images")
