"""Evaluation plots: precision-recall curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detector.eval.matching import greedy_match
from detector.images import class_color, save_figure


def pr_curves(precision: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """Precision-recall curve per class at IoU 0.5 (COCOeval's interpolated precision, all areas,
    100 detections), with the mean over classes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = np.linspace(0, 1, precision.shape[1])
    curves = precision[0, :, :, 0, -1]  # [R, K]
    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    valid = []
    for k, name in enumerate(names):
        p = curves[:, k]
        if (p > -1).any():
            p = np.clip(p, 0, None)
            valid.append(p)
            ax.plot(recall, p, linewidth=1, label=f"{name} {p.mean():.3f}", color=np.array(class_color(k)) / 255)
    if valid:
        mean = np.mean(valid, axis=0)
        ax.plot(recall, mean, linewidth=3, color="black", label=f"all classes {mean.mean():.3f} AP50")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall, IoU 0.5")
    ax.legend(loc="lower left", fontsize=7, ncol=2 if len(names) > 12 else 1)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def confusion_matrix(
    detections: Sequence,
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    conf: float = 0.25,
    iou: float = 0.45,
) -> np.ndarray:
    """``[C + 1, C + 1]`` counts, rows predicted class, columns true class; the last row and column
    are background (a missed object, a detection of nothing). Detections above ``conf`` are matched
    to true boxes above ``iou``, best overlap first, each box at most once."""
    import torch
    from torchvision.ops import box_iou

    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for det, (gt_boxes, gt_classes) in zip(detections, ground_truth):
        keep = det.scores > conf
        d_boxes, d_classes = det.boxes[keep], det.classes[keep].numpy()
        g_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
        matched_d, matched_g = set(), set()
        if len(d_classes) and len(g_boxes):
            overlaps = box_iou(g_boxes, d_boxes.float()).numpy()  # [G, D]
            for g, d in greedy_match(overlaps, overlaps > iou):  # best overlap first
                matched_g.add(g)
                matched_d.add(d)
                matrix[d_classes[d], int(gt_classes[g])] += 1
        for g, c in enumerate(np.asarray(gt_classes).tolist()):
            if g not in matched_g:
                matrix[num_classes, int(c)] += 1  # missed: predicted background
        for d, c in enumerate(d_classes.tolist()):
            if d not in matched_d:
                matrix[int(c), num_classes] += 1  # false positive: true background
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """The confusion matrix, each column normalised to sum to 1 (counts in the cells when small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [*names, "background"]
    sums = matrix.sum(0, keepdims=True)
    normalised = np.divide(matrix, sums, out=np.zeros_like(matrix, dtype=float), where=sums > 0)
    size = max(6, 0.5 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=120)
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xlabel="true", ylabel="predicted", title="confusion matrix (conf 0.25, IoU 0.45), columns normalised")
    if len(labels) <= 30:
        for (r, c), v in np.ndenumerate(normalised):
            if matrix[r, c]:
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)
