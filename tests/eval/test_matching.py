"""The one greedy IoU matcher: best overlap first over the matrix, or rows in their order."""

from __future__ import annotations

import numpy as np

from detector.eval.matching import greedy_match


def test_best_overlap_first_over_the_whole_matrix() -> None:
    overlaps = np.array([[0.6, 0.9], [0.8, 0.0]])
    # (0, 1) at 0.9 first, then (1, 0) at 0.8; row 0's 0.6 is never needed
    assert greedy_match(overlaps, overlaps > 0.5) == [(0, 1), (1, 0)]


def test_rows_in_order_take_their_best_free_column() -> None:
    overlaps = np.array([[0.7, 0.6], [0.9, 0.0]])
    # row 0 goes first and takes column 0 although row 1 overlaps it more; row 1 is left unmatched
    assert greedy_match(overlaps, overlaps > 0.5, rows_in_order=True) == [(0, 0)]
    assert greedy_match(overlaps, overlaps > 0.5) == [(1, 0), (0, 1)]


def test_ties_go_to_the_lower_index_and_disallowed_pairs_are_skipped() -> None:
    overlaps = np.array([[0.8, 0.8], [0.8, 0.8]])
    allowed = np.array([[True, True], [True, False]])
    assert greedy_match(overlaps, allowed) == [(0, 0)]
    assert greedy_match(overlaps, allowed, rows_in_order=True) == [(0, 0)]
    assert greedy_match(np.zeros((0, 3)), np.zeros((0, 3), bool)) == []
