"""Training losses: the task-aligned assigner and the detection loss (separate objects)."""

from detector.losses.assigner import Assignment, TaskAlignedAssigner
from detector.losses.loss import DetectionLoss

__all__ = ["Assignment", "DetectionLoss", "TaskAlignedAssigner"]
