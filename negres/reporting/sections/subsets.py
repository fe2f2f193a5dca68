"""The ``subsets`` evaluator's part of the report: which test subsets its metrics are of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from negres.evaluators.protocol import saved_by
from negres.reporting.sections import Presentation


def condition_report(condition: Mapping[str, Any]) -> list[str]:
    """Which subsets the ``subset_*`` metrics are of, and their sizes."""
    sizes = saved_by(condition, "subsets")["shared"].get("sizes") or {}
    if not sizes:
        return []
    return ["Test subsets (`subset_*` metrics): " + ", ".join(
        f"`{s}` ({count} examples)" for s, count in sizes.items()), ""]


PRESENTATION = Presentation(condition_report=condition_report)
