"""The ``subsets`` evaluator's part of the report: which test subsets its metrics are of."""

from __future__ import annotations

from negres.reporting.sections import Presentation
from negres.results import ConditionResults


def condition_report(condition: ConditionResults) -> list[str]:
    """Which subsets the ``subset_*`` metrics are of, and their sizes."""
    sizes = condition.saved_by("subsets").shared.get("sizes") or {}
    if not sizes:
        return []
    return ["Test subsets (`subset_*` metrics): " + ", ".join(
        f"`{s}` ({count} examples)" for s, count in sizes.items()), ""]


PRESENTATION = Presentation(condition_report=condition_report)
