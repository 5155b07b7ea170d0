"""MuSGD, the optimiser Ultralytics trains YOLO26 with: on conv and linear weights, Muon's
orthogonalised momentum plus Nesterov SGD; on norms and biases, Nesterov SGD alone; the head's
class branches at a higher learning rate (``optim=musgd``)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from detector.train.optim import parameter_groups

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # (a, b, c) of Muon's quintic Newton-Schulz iteration
NS_STEPS = 5
CLASS_BRANCHES = ("cls", "one2one_cls")  # the head's class branches (an end-to-end head has both)
MUON_RANKS = (2, 4)  # the weights Muon orthogonalises: linear matrices and conv filters


def newton_schulz(matrices: Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalise each matrix of ``matrices`` (``[rows, cols]`` or ``[n, rows, cols]``):
    towards ``U Vᵀ`` of its SVD, with singular values brought near 1 (roughly 0.7 to 1.2, not exactly
    1). ``steps`` quintic Newton-Schulz iterations ``X <- aX + (bA + cA²)X`` with ``A = XXᵀ``, in
    bfloat16, from the matrix over its Frobenius norm; a tall matrix is iterated transposed (the
    smaller Gram matrix). Each ``βP + αQR`` is one fused ``baddbmm``, which rounds to bfloat16 once,
    as Ultralytics' does: the results then equal theirs bit for bit (checked on the CPU), where
    separate products and sums differ from them by a few percent after five iterations. Returns
    bfloat16."""
    x = matrices.reshape(-1, *matrices.shape[-2:]).bfloat16()
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # bA + cA²
        x = torch.baddbmm(x, polynomial, x, beta=a)  # aX + (bA + cA²)X
    return (x.mT if tall else x).reshape(matrices.shape)


def orthogonalised(updates: list[Tensor]) -> list[Tensor]:
    """Each update as a matrix (:func:`as_matrix`) through :func:`newton_schulz`, back in its own shape,
    layout and dtype, times ``sqrt(max(1, rows / cols))`` of its last two dimensions (for a conv
    filter, kernel height over width: 1 for square kernels).

    Matrices with the same column count (and scale) are orthogonalised in one batched call, their
    rows zero-padded to the largest (a batch is cut where rows would differ more than 16-fold, to
    bound the padding). Zero rows stay zero through the iteration, so this equals one call per
    matrix in exact arithmetic; in bfloat16 the padded height can decide whether a matrix is
    iterated transposed, which changes its rounding, so the batches are made as Ultralytics makes
    them and the results match theirs."""
    matrices = [as_matrix(u) for u in updates]
    buckets: dict[tuple[int, float, torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, (u, m) in enumerate(zip(updates, matrices)):
        buckets[(m.size(1), math.sqrt(max(1.0, u.size(-2) / u.size(-1))), m.device, m.dtype)].append(i)
    result = list(updates)
    for (cols, scale, device, dtype), members in buckets.items():
        for batch in row_batches(sorted(members, key=lambda i: -matrices[i].size(0)), matrices):
            padded = torch.zeros(len(batch), matrices[batch[0]].size(0), cols, device=device, dtype=dtype)
            for j, i in enumerate(batch):
                padded[j, : matrices[i].size(0)] = matrices[i]
            out = newton_schulz(padded).to(dtype).mul_(scale)
            for j, i in enumerate(batch):
                result[i] = from_matrix(out[j, : matrices[i].size(0)], updates[i])
    return result


def row_batches(tallest_first: list[int], matrices: list[Tensor]) -> list[list[int]]:
    """``tallest_first`` (indices into ``matrices``, by rows descending) cut into runs whose first
    matrix has at most 16 times the rows of every other."""
    batches: list[list[int]] = []
    for i in tallest_first:
        if batches and matrices[batches[-1][0]].size(0) <= 16 * matrices[i].size(0):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def as_matrix(u: Tensor) -> Tensor:
    """``u`` as a matrix of its first dimension by the rest, in its memory order: a conv filter in
    channels_last becomes ``[out, kh * kw * in]`` (its columns permuted, which permutes the
    orthogonalised columns alike); a view of a contiguous or a channels_last tensor."""
    if is_channels_last(u):
        return u.permute(0, 2, 3, 1).flatten(1)
    return u.reshape(u.size(0), -1)


def from_matrix(matrix: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`as_matrix` for a tensor shaped and laid out as ``like``."""
    if is_channels_last(like):
        n, c, h, w = like.shape
        return matrix.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return matrix.reshape(like.shape)


def is_channels_last(u: Tensor) -> bool:
    """A conv filter laid out channels_last (training lays models out so on CUDA and x86 CPUs), not also
    contiguous (a 1x1 filter or one of a single input channel is both)."""
    return u.ndim == 4 and not u.is_contiguous() and u.is_contiguous(memory_format=torch.channels_last)


def class_branch_parameters(model: nn.Module) -> set[int]:
    """Ids of every parameter of the head's class branches: the modules ``model.head.cls`` and
    ``model.head.one2one_cls``, where present."""
    head = getattr(model, "head", None)
    branches = [getattr(head, name, None) for name in CLASS_BRANCHES]
    return {id(p) for branch in branches if isinstance(branch, nn.Module) for p in branch.parameters()}


class MuSGD(torch.optim.Optimizer):
    """Muon + SGD (Ultralytics' ``MuSGD``). In a group with ``use_muon`` (every parameter a matrix or a
    conv filter), a step is

    - Muon: ``M <- μM + (1-μ)g``; the Nesterov mix ``μM + (1-μ)g`` (``M`` without Nesterov) is
      orthogonalised (:func:`orthogonalised`) and applied at ``lr * muon``;
    - then Nesterov SGD with its own buffer at ``lr * sgd``: ``g' = g + wd·p``, ``B <- μB + g'``,
      ``p <- p - lr·sgd·(g' + μB)`` (``B`` without Nesterov). Weight decay acts only here.

    Other groups take the SGD step alone, at ``lr``. ``muon`` and ``sgd`` are per-group settings
    like ``lr``. A group with ``class_branch`` starts at ``lr * cls_lr_gain`` (Ultralytics' 3 for the
    head's class branches). :meth:`groups_for_model` makes the groups; ``build_optimizer`` calls it."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        momentum: float = 0.937,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        muon: float = 0.2,
        sgd: float = 1.0,
        cls_lr_gain: float = 3.0,
    ) -> None:
        self.cls_lr_gain = cls_lr_gain
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "muon": muon,
            "sgd": sgd,
            "use_muon": False,
            "class_branch": False,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["use_muon"] and any(p.ndim < 2 for p in group["params"]):
            raise ValueError(f"MuSGD: group {group.get('name', '')!r} has use_muon but holds a 0-d or 1-d parameter")
        if group["class_branch"]:
            group["lr"] *= self.cls_lr_gain

    @staticmethod
    def groups_for_model(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Ultralytics' MuSGD groups: those of :func:`~detector.train.optim.parameter_groups` with the
        matrices and conv filters (2-d and 4-d) of "weights" flagged ``use_muon`` (any other weight
        of rank > 1 in "other_weights", decayed, plain SGD), then each group's class-branch
        parameters (:func:`class_branch_parameters`) in a twin ``cls_<name>`` group flagged
        ``class_branch``. Groups left empty are dropped."""
        split: list[dict[str, Any]] = []
        for group in parameter_groups(model, weight_decay):
            if group["name"] == "weights":
                matrices = [p for p in group["params"] if p.ndim in MUON_RANKS]
                others = [p for p in group["params"] if p.ndim not in MUON_RANKS]
                split.append({**group, "params": matrices, "use_muon": True})
                split.append({**group, "params": others, "name": "other_weights"})
            else:
                split.append(group)
        in_branch = class_branch_parameters(model)
        groups = []
        for branch in (False, True):
            for group in split:
                params = [p for p in group["params"] if (id(p) in in_branch) == branch]
                name = f"cls_{group['name']}" if branch else group["name"]
                groups.append({**group, "params": params, "name": name, "class_branch": branch})
        return [g for g in groups if g["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
            if group["use_muon"]:
                mixes = [self._muon_momentum(p, momentum, nesterov) for p in params]
                for p, update in zip(params, orthogonalised(mixes)):
                    p.add_(update, alpha=-lr * group["muon"])
                lr *= group["sgd"]
            for p in params:
                p.add_(self._sgd_direction(p, momentum, group["weight_decay"], nesterov), alpha=-lr)
        return loss

    def _muon_momentum(self, p: Tensor, momentum: float, nesterov: bool) -> Tensor:
        """Update the average ``M`` of ``p``'s gradients; returns what Muon orthogonalises."""
        state = self.state[p]
        if "muon_buffer" not in state:
            state["muon_buffer"] = torch.zeros_like(p)
        buffer = state["muon_buffer"]
        buffer.mul_(momentum).add_(p.grad, alpha=1 - momentum)
        return buffer.mul(momentum).add_(p.grad, alpha=1 - momentum) if nesterov else buffer

    def _sgd_direction(self, p: Tensor, momentum: float, weight_decay: float, nesterov: bool) -> Tensor:
        """Update the SGD buffer ``B`` of ``p``; returns the SGD step's direction."""
        grad = p.grad.add(p, alpha=weight_decay) if weight_decay else p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer = state["momentum_buffer"]
        buffer.mul_(momentum).add_(grad)
        return grad.add(buffer, alpha=momentum) if nesterov else buffer
