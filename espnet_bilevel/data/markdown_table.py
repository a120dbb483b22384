"""Markdown (GitHub) table lines, as the result tables of compare_systems, label_budget_curve and
training_stats write them. stdlib only."""
from __future__ import annotations

from typing import List, Sequence


def header(head: Sequence[str]) -> List[str]:
    """The header line and the separator line of a table with these column names."""
    return [row(head), "|" + "---|" * len(head)]


def row(cells: Sequence[str]) -> str:
    """One table line."""
    return "| " + " | ".join(cells) + " |"
