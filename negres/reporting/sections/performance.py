"""The ``performance`` evaluator's part of the report: the seeds that collapsed."""

from __future__ import annotations

from negres.evaluators.performance import REPORT_SEEDS, collapsed_seeds, seed_list
from negres.reporting.sections import Presentation
from negres.results import ConditionResults


def condition_report(condition: ConditionResults) -> list[str]:
    """Which seeds collapsed, with their training loss at initialisation and at the end."""
    collapsed = collapsed_seeds(condition)
    if not collapsed:
        return []
    # Nothing non-finite marks these seeds, so the statistics above include them (chance
    # accuracy, enormous losses that move every mean): say so.
    return [f"**{len(collapsed)} of {condition.num_seeds} seeds collapsed** (training loss "
            "ended above its loss at initialisation, though it stayed finite): "
            f"{seed_list(collapsed, REPORT_SEEDS)}. Collapse leaves no seed out of the "
            "statistics above; only a non-finite loss or parameter does.", ""]


PRESENTATION = Presentation(condition_report=condition_report)
