"""Test-wide setup: Ultralytics runs offline; its settings and the doctor's cache stay out of the home directory."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-settings-"))
os.environ.setdefault("DETECTOR_CACHE", tempfile.mkdtemp(prefix="detector-cache-"))  # the doctor's cache


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
