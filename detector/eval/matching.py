"""Greedy one-to-one matching of detections and true boxes by IoU (the confusion matrix's and the
precision / recall figures')."""

from __future__ import annotations

import numpy as np


def greedy_match(overlaps: np.ndarray, allowed: np.ndarray, rows_in_order: bool = False) -> list[tuple[int, int]]:
    """Pairs ``(row, column)`` of an ``[R, C]`` overlap matrix, each row and column used at most once,
    among the ``allowed`` pairs (``[R, C]`` bool: above the IoU threshold, same class, ...).

    By default the pair of highest overlap is taken first, over the whole matrix. With
    ``rows_in_order`` the rows take turns in their order (e.g. detections sorted by score), each
    taking its free allowed column of highest overlap. Ties go to the lower index.
    """
    pairs = np.argwhere(allowed)  # [P, 2], row-major
    if not len(pairs):
        return []
    closeness = -overlaps[pairs[:, 0], pairs[:, 1]]
    order = np.lexsort((closeness, pairs[:, 0])) if rows_in_order else np.argsort(closeness, kind="stable")
    used_rows: set[int] = set()
    used_columns: set[int] = set()
    matches = []
    for row, column in pairs[order].tolist():
        if row not in used_rows and column not in used_columns:
            used_rows.add(row)
            used_columns.add(column)
            matches.append((row, column))
    return matches
