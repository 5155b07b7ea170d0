"""One figure of the benchmark: a measured quantity of both sides, its medians, ratio and goal."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import torch

# The goals, as bounds on the ratio ours / ultralytics of each part's figure.
GOALS: dict[str, tuple[str, float]] = {
    "train_step": (">=", 1.3),
    "loader": (">=", 1.5),
    "predict": ("<=", 0.8),
    "val": ("<=", 1.0),
    "deploy_latency": ("<=", 0.8),
    "deploy_throughput": (">=", 1.25),  # the latency goal on the time per image of a batch: 1 / 0.8
}


@dataclass
class Figure:
    """One measured quantity of both sides: every repeat, the medians and their ratio."""

    part: str  # train_step | loader | predict | val | deploy_latency | deploy_throughput
    device: str
    what: str  # one line: what was timed
    unit: str  # images/s | ms | s
    better: str  # "higher" or "lower": which direction of the figure is better
    ours: list[float]
    ultralytics: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # sanity figures, e.g. each side's mAP or detections

    @property
    def medians(self) -> dict[str, float]:
        return {"ours": statistics.median(self.ours), "ultralytics": statistics.median(self.ultralytics)}

    @property
    def ratio(self) -> float:
        """Median of ours / median of Ultralytics' (> 1 better for throughputs, < 1 better for times)."""
        m = self.medians
        return m["ours"] / m["ultralytics"]

    @property
    def goal(self) -> tuple[str, float]:
        return GOALS[self.part]

    @property
    def met(self) -> bool:
        op, bound = self.goal
        return self.ratio >= bound if op == ">=" else self.ratio <= bound

    def to_json(self) -> dict[str, Any]:
        op, bound = self.goal
        return {
            "part": self.part,
            "device": self.device,
            "what": self.what,
            "unit": self.unit,
            "better": self.better,
            "ours": self.medians["ours"],
            "ultralytics": self.medians["ultralytics"],
            "ratio": self.ratio,
            "ratio_is": "ours / ultralytics",
            "goal": {"ratio": op, "value": bound},
            "met": self.met,
            "repeats": {"ours": self.ours, "ultralytics": self.ultralytics},
            "statistic": "median over repeats",
            "settings": self.settings,
            "notes": self.notes,
        }


def device_label(device: torch.device, our_dtype: torch.dtype | None) -> str:
    """The device column: ``cpu``, or ``cpu, ours bf16`` for the opt-in bf16 figures."""
    return f"{device}, ours bf16" if our_dtype is not None else str(device)
