"""The training criterion a head needs: :func:`build_loss`."""

from __future__ import annotations

from torch import nn

from detector.losses.end_to_end import EndToEndLoss
from detector.losses.loss import DetectionLoss
from detector.types import LossGains

# A head with a one-to-one branch (an end-to-end head) has this attribute (its class branch), not None.
ONE_TO_ONE_BRANCH = "one2one_cls"


def build_loss(
    head: nn.Module, box: float = LossGains.box, cls: float = LossGains.cls, dfl: float = LossGains.dfl
) -> DetectionLoss | EndToEndLoss:
    """The criterion for ``head`` (it has ``num_classes`` and ``reg_max``) with these gains:
    :class:`EndToEndLoss` when it has a one-to-one branch (:data:`ONE_TO_ONE_BRANCH`), else
    :class:`DetectionLoss` (DFL, or L1 when ``reg_max == 1``)."""
    if getattr(head, ONE_TO_ONE_BRANCH, None) is not None:
        return EndToEndLoss(head.num_classes, head.reg_max, box=box, cls=cls, dfl=dfl)
    return DetectionLoss(head.num_classes, head.reg_max, box=box, cls=cls, dfl=dfl)
