"""Contract tests over every config file in configs/model/**: each builds, and what the parts
declare (out_channels, strides) is what they produce, at a square and a non-square input."""

from __future__ import annotations

import re

import pytest
import torch

from detector import build_model
from detector.models.detector import Detector
from detector.types import HeadOutput
from tests.helpers import MODEL_CONFIGS, REPO

COMPONENTS = {
    group: sorted(p.stem for p in (REPO / "configs" / "model" / group).glob("*.yaml"))
    for group in ("backbone", "neck", "head")
}
SIZES = [(128, 128), (96, 160)]


def check_contract(model: Detector, num_classes: int) -> None:
    model.eval()
    for h, w in SIZES:
        with torch.no_grad():
            feats = model.backbone(torch.rand(1, 3, h, w))
            assert [f.shape[1] for f in feats] == list(model.backbone.out_channels)
            assert [(f.shape[2], f.shape[3]) for f in feats] == [(h // s, w // s) for s in model.backbone.strides]
            necked = model.neck(feats)
            assert [f.shape[1] for f in necked] == list(model.neck.out_channels)
            assert [(f.shape[2], f.shape[3]) for f in necked] == [(h // s, w // s) for s in model.neck.strides]
            out = model.head(necked)
        assert isinstance(out, HeadOutput)
        assert out.strides == model.strides == (8, 16, 32)
        for box, cls, s in zip(out.box, out.cls, out.strides):
            assert box.shape == (1, 4 * out.reg_max, h // s, w // s)
            assert cls.shape == (1, num_classes, h // s, w // s)


# the large YOLO scales take seconds each to build: the slow run covers them (their parity tests too)
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n[:4] == "yolo" and n[-1] in "lx" else n for n in MODEL_CONFIGS]
)
def test_every_model_config_builds_and_keeps_its_contract(name: str) -> None:
    model = build_model(name, num_classes=5)
    assert model.num_classes == 5
    check_contract(model, 5)


@pytest.mark.parametrize("group, option", [(g, o) for g, options in COMPONENTS.items() for o in options])
def test_every_component_config_can_be_swapped_in(group: str, option: str) -> None:
    base = "yolo11n" if "yolo11" in option or option == "dfl_depthwise" else "yolov8n"
    model = build_model(base, num_classes=3, **{group: option})
    check_contract(model, 3)


def readme_section(heading: str) -> str:
    """The README's text under ``heading`` up to the next heading of any level."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n#", start + len(heading) + 2)
    return text[start:end]


def options_in(section: str) -> set[str]:
    """Every backquoted option at the start of a table row or of a paragraph (``a``, ``b``, ...)."""
    found: set[str] = set()
    for line in section.splitlines():
        line = line.strip()
        if line.startswith("| `"):
            found |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
        elif line.startswith("`") and "(" in line:
            found |= {m for m in re.findall(r"`([^`=]+)` \(", line)}
    return found


def test_the_readme_lists_exactly_the_model_configs_there_are() -> None:
    assert options_in(readme_section("### `model`")) == set(MODEL_CONFIGS)
    assert options_in(readme_section("#### `model/backbone`")) == set(COMPONENTS["backbone"])
    assert options_in(readme_section("#### `model/neck`")) == set(COMPONENTS["neck"])
    assert options_in(readme_section("#### `model/head`")) == set(COMPONENTS["head"])


def test_no_channel_counts_in_model_configs() -> None:
    """Widths flow from the builder; configs carry only scale multipliers (and the channel cap)."""
    for path in (REPO / "configs" / "model").rglob("*.yaml"):
        text = path.read_text()
        for key in ("in_channels", "out_channels", "channels:"):
            assert key not in text.replace("max_channels", ""), f"{path} mentions {key}"
