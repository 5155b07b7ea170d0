"""Loss of an end-to-end head (YOLO26): its one-to-many and one-to-one branches, weighted by epoch.

Numerically Ultralytics' ``E2ELoss`` (8.4), written independently:

- the one-to-many branch (``HeadOutput`` itself) is trained as a plain head, with ``topk=10``
  positives per object;
- the one-to-one branch (``HeadOutput.one2one``) with ``topk=7`` candidates narrowed, after the
  conflicts between objects, to the single best-aligned one (``topk2=1``): one positive per object,
  so that its top-scoring predictions need no NMS;
- total = ``w_o2m * L_o2m + w_o2o * L_o2o`` (each ``L`` a :class:`DetectionLoss` total, so already
  ``* batch_size``), with :func:`branch_weights` moving the weight from the one-to-many branch
  (0.8 / 0.2 in the first epoch) to the one-to-one branch (0.1 / 0.9 in the last), linearly.

Ultralytics moves the weights with a counter it advances after every epoch; here they are a function
of the epoch the loop is in (:meth:`EndToEndLoss.set_epoch`), which gives the same values and needs
no state of its own in a checkpoint.
"""

from __future__ import annotations

from torch import Tensor

from detector.losses.assigner import TaskAlignedAssigner
from detector.losses.loss import DetectionLoss
from detector.types import HeadOutput, LossGains, Targets

ONE_TO_MANY_START = 0.8  # weight of the one-to-many branch in the first epoch
ONE_TO_MANY_END = 0.1  # ... and in the last


def branch_weights(epoch: int, epochs: int) -> tuple[float, float]:
    """Weights ``(one-to-many, one-to-one)`` of the two branches during ``epoch`` (0-based) of a run of
    ``epochs``: from 0.8 / 0.2 in epoch 0 linearly to 0.1 / 0.9 in epoch ``epochs - 1`` (and after)."""
    remaining = max(1 - epoch / max(epochs - 1, 1), 0)
    one2many = remaining * (ONE_TO_MANY_START - ONE_TO_MANY_END) + ONE_TO_MANY_END
    return one2many, max(1.0 - one2many, 0.0)


class EndToEndLoss:
    """Loss of an end-to-end head's two branches against a batch's :class:`Targets`.

    Args:
        num_classes: classes of the head.
        reg_max: the head's ``reg_max`` (1 for YOLO26: an L1 distance loss, component ``l1``).
        box, cls, dfl: gains of the components, the same for both branches.

    The branch weights are those of epoch 0 until :meth:`set_epoch` says otherwise.
    """

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 1,
        box: float = LossGains.box,
        cls: float = LossGains.cls,
        dfl: float = LossGains.dfl,
    ) -> None:
        gains = {"box": box, "cls": cls, "dfl": dfl}
        self.one2many = DetectionLoss(
            num_classes, reg_max, **gains, assigner=TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)
        )
        self.one2one = DetectionLoss(
            num_classes, reg_max, **gains, assigner=TaskAlignedAssigner(topk=7, alpha=0.5, beta=6.0, topk2=1)
        )
        self.epoch, self.epochs = 0, 1

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """The (0-based) epoch whose batches come next, of ``epochs``: it sets the branch weights. The
        training loop calls it before every epoch, a resumed one included."""
        if epochs < 1 or epoch < 0:
            raise ValueError(f"set_epoch needs 0 <= epoch and 1 <= epochs, got epoch={epoch}, epochs={epochs}")
        self.epoch, self.epochs = int(epoch), int(epochs)

    @property
    def weights(self) -> tuple[float, float]:
        """``(one-to-many, one-to-one)`` weights of the current epoch (:func:`branch_weights`)."""
        return branch_weights(self.epoch, self.epochs)

    def __call__(self, out: HeadOutput, targets: Targets, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted total of the two branches' losses to backpropagate, and the **one-to-one** branch's
        detached, gain-scaled components (``box``, ``cls``, ``l1`` or ``dfl``; neither multiplied by its
        branch weight nor by ``batch_size``), the ones Ultralytics reports: the branch used for
        predictions. They do not add up to the total."""
        if out.one2one is None:
            raise ValueError("EndToEndLoss needs an end-to-end head's output: HeadOutput.one2one is None")
        one2many, _ = self.one2many(out, targets, batch_size)
        one2one, items = self.one2one(out.one2one, targets, batch_size)
        w_one2many, w_one2one = self.weights
        return one2many * w_one2many + one2one * w_one2one, items
