"""The report's section on sources of randomness: how much of each metric's spread across
seeds each source a study's design varied accounts for (:mod:`negres.statistics.sources`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from negres.reporting.tables import fmt, interval, table
from negres.results import Results

SOURCE_TEXT = {"init": "initialisation", "data": "data order", "dropout": "dropout",
               "input_noise": "input noise", "remainder": "remainder", "residual": "residual"}


def _source(term: str) -> str:
    return " x ".join(SOURCE_TEXT.get(part, part) for part in term.split(" x "))


def _design_text(sources: Mapping[str, Any]) -> str:
    levels = " x ".join(f"{n} level{'s' if n > 1 else ''} of {_source(s)}" for s, n in
                        zip(sources["vary"], sources["levels"], strict=True))
    held = [_source(s) for s, n in zip(sources["vary"], sources["levels"], strict=True)
            if n == 1]
    return (f"The seeds were laid out as a crossed design of {levels}, one seed each"
            + (f" ({', '.join(held)} held: the same for every seed)" if held else "")
            + "; every source the design does not name follows each seed's own key.")


def sources_section(results: Results) -> list[str]:
    """``## Sources of randomness``: per condition and metric, each source's variance and
    share of the spread, with intervals; ``[]`` for a study without a design."""
    sources = results.statistics.sources
    if not sources:
        return []
    level = sources["level"]
    lines = ["## Sources of randomness", "",
             f"{_design_text(sources)} Each metric's variance across seeds is split by "
             f"{sources['method']} ({level:.0%} intervals; docs/sources.md gives their "
             "simulated coverage). A source's *std* is the square root of its variance "
             "component, in the metric's units; its *share* is of the variance of a fresh "
             "seed's value; the *remainder* holds the interaction of the sources and whatever "
             f"the design does not vary. Estimand: {sources['estimand']}.", ""]
    rows = []
    skipped = []
    for condition, metrics in sources["conditions"].items():
        for metric, found in metrics.items():
            if "skipped" in found:
                skipped.append(f"`{metric}` in `{condition}` ({found['skipped']})")
                continue
            for term, c in found["components"].items():
                rows.append([f"`{condition}`", f"`{metric}`", _source(term),
                             fmt(math.sqrt(c["variance"])),
                             interval([math.sqrt(v) for v in c["variance_ci"]]),
                             fmt(c["share"], 2), interval(c["share_ci"], 2)])
    if rows:
        lines += table(["condition", "metric", "source", "std", f"{level:.0%} CI", "share",
                        f"{level:.0%} CI"], rows)
    if skipped:
        lines += ["Not split: " + "; ".join(skipped) + ".", ""]
    return lines
