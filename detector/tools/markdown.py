"""Markdown tables of the tools' reports (compare, diagnose): one writer, pipes in cells escaped."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured table: the ``header`` row, the rule, then one row per entry of ``cells``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)
