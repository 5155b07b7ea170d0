"""Training losses: the task-aligned assigner, the detection loss of one head branch, the loss of an
end-to-end head's two branches, and :func:`build_loss`, which picks the one a head needs."""

from detector.losses.assigner import Assignment, TaskAlignedAssigner
from detector.losses.build import ONE_TO_ONE_BRANCH, build_loss
from detector.losses.end_to_end import EndToEndLoss, branch_weights
from detector.losses.loss import DetectionLoss

__all__ = [
    "ONE_TO_ONE_BRANCH",
    "Assignment",
    "DetectionLoss",
    "EndToEndLoss",
    "TaskAlignedAssigner",
    "branch_weights",
    "build_loss",
]
