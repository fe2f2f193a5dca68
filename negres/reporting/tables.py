"""Markdown tables and number formats shared by the report and the evaluators' sections."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if not np.isfinite(value):
        return "nan" if np.isnan(value) else ("∞" if value > 0 else "-∞")
    return f"{value:.{digits}f}"


def interval(ci: Sequence[float], digits: int = 4) -> str:
    """``[low, high]``; "no interval" where the statistics could give none (one seed, one
    pair of seeds)."""
    if all(isinstance(v, float) and math.isnan(v) for v in ci):
        return "no interval"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def with_range(mean: float, low: float, high: float, range_digits: int = 2) -> str:
    """``mean (low–high)``: a mean over seeds (3 digits) with the seeds' range."""
    return f"{fmt(mean, 3)} ({fmt(low, range_digits)}–{fmt(high, range_digits)})"


def _cell(text: str) -> str:
    """A table cell: a ``|`` inside it (``|attribution|``) escaped, or it splits the row."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(text))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return lines + [""]


# Short names of the interval methods, for table headers.
METHOD_LABELS = {"bootstrap_t": "bootstrap-t", "t": "t", "bca": "BCa", "percentile": "percentile",
                 "variance_components": "variance components, Satterthwaite t",
                 "variance_components_exact_binomial":
                     "variance components ∪ exact binomial of the examples (a rate at its bound)"}
# What each sampling kind's interval treats as random, short, for a table's cells.
SAMPLING_LABELS = {"seeds": "seeds", "pairwise": "seed pairs",
                   "examples": "seeds × test examples"}


def ci_of(summary: Mapping[str, Any]) -> Sequence[float]:
    """A summary's or comparison's interval by its default method (BCa in results.json
    files written before the method was named)."""
    return summary["ci"] if "ci" in summary else summary["ci_bca"]


def ci_label(summary: Mapping[str, Any]) -> str:
    """The interval method of a summary or comparison, for a table header. A bootstrap-t
    written with ``ci_fallback`` (any row of the table may have fallen back) also names
    what is used where the studentized bootstrap is undefined: "bootstrap-t, t ∪ BCa where
    undefined" (the span of the t and BCa intervals)."""
    method = summary.get("ci_method", "bca")
    label = METHOD_LABELS.get(method, method)
    if method == "bootstrap_t" and "ci_fallback" in summary:
        fallback = summary["ci_fallback"] or "t_bca_span"
        names = {"t_bca_span": "t ∪ BCa", **METHOD_LABELS}
        label += f", {names.get(fallback, fallback)} where undefined"
    if summary.get("sampling") == "pairwise":
        label = f"U-statistic, {label}"
    return label


def covers_label(summary: Mapping[str, Any]) -> str:
    """What an interval treats as random: ``"seeds"``, ``"seed pairs"``,
    ``"seeds × test examples"``, or ``"seeds (these N examples)"`` where a metric over
    examples is about this test set."""
    sampling = summary.get("sampling", "seeds")
    if sampling == "examples" and summary.get("estimand") == "test_set":
        return f"seeds (these {summary.get('num_examples', '')} examples)".replace("  ", " ")
    if sampling == "examples":
        return f"seeds × {summary.get('num_examples', '')} test examples".replace("  ", " ")
    return SAMPLING_LABELS.get(sampling, sampling)


def seeds_to_resolve(c: Mapping[str, Any]) -> int | None:
    """Seeds per condition that would resolve an inconclusive comparison: at the next look
    of the sequential design where the study records one, else at the fixed level (Holm-
    corrected in a family)."""
    if "seeds_next_look" in c:
        return c["seeds_next_look"]
    return c.get("seeds_needed_adjusted", c["seeds_needed"])


def comparison_rows(name: str, c: Mapping[str, Any]) -> list[str]:
    needed = seeds_to_resolve(c)
    return [
        name, fmt(c["difference"]), interval(ci_of(c)), fmt(c["p_value_t"], 3),
        fmt(c["p_value_permutation"], 3), fmt(c["p_value_adjusted"], 3),
        fmt(c["prob_improvement"], 2), f"{fmt(c['effect_size'], 2)} ({c['effect_size_name']})",
        f"**{c['verdict']}**", fmt(needed) if c["verdict"] == "inconclusive" else "–",
    ]


def comparison_header(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    label = ci_label(comparisons[0]) if comparisons else "BCa"
    return ["condition", "difference", f"CI ({label})", "p (Welch/paired t)", "p (perm.)",
            "p (Holm)", "P(improve)", "effect size", "verdict", "seeds needed"]


def inconclusive_note(comparisons: Sequence[Mapping[str, Any]], power: float = 0.8) -> list[str]:
    """The seeds a study would need to resolve its inconclusive differences."""
    needed = [seeds_to_resolve(c) for c in comparisons if c["verdict"] == "inconclusive"]
    finite = [n for n in needed if n is not None]
    if not needed:
        return []
    text = (f"{len(needed)} of {len(comparisons)} differences are **inconclusive** at this "
            f"number of seeds.")
    if finite:
        text += (f" Resolving a difference of the observed size at {power:.0%} power would "
                 f"need about {min(finite)} to {max(finite)} seeds per condition "
                 "(normal approximation, Holm-corrected level where several conditions are "
                 "compared"
                 + ("; at the level the sequential design keeps for the next look, so "
                    "`--extend` to that many keeps the verdicts honest"
                    if any("seeds_next_look" in c for c in comparisons) else "")
                 + "); a larger study may still find no difference.")
    return [text, ""]
