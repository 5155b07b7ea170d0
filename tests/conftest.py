"""Test-wide setup: Ultralytics runs offline and keeps its settings out of the home directory."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-settings-"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
