"""The ``truth`` evaluator's part of the report: attributions per feature against the true
contributions, learned interactions, and the methods' errors compared."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from negres.reporting.sections import Presentation
from negres.reporting.sections.attributions import method_comparison_lines
from negres.reporting.tables import fmt, table, with_range
from negres.results import ConditionResults, Results


def condition_report(condition: ConditionResults) -> list[str]:
    """Attributions per feature against the true contributions, and learned interactions."""
    saved = condition.saved_by("truth")
    methods = saved.per_seed.get("methods") or {}
    learned = saved.per_seed.get("interactions") or {}
    if not methods and not learned:
        return []
    shared = saved.shared
    features = shared["features"]
    lines = ["Mean |attribution| per feature (mean over seeds, with the seeds' range) against "
             "the true contribution's mean |phi|, and the across-seed standard deviation of "
             "each example's attribution (mean over examples):", ""]
    rows = [["truth", *[fmt(float(v), 3) for v in shared["true_mean_abs"]]]]
    for method, values in methods.items():
        mean_abs = np.asarray(values["mean_abs"], dtype=float)
        if mean_abs.shape[0] == 0:
            continue
        rows.append([method, *[with_range(float(mean_abs[:, d].mean()),
                                          float(mean_abs[:, d].min()),
                                          float(mean_abs[:, d].max()))
                               for d in range(len(features))]])
        rows.append([f"{method}: seed std",
                     *[fmt(float(v), 3) for v in shared["seed_std"][method]]])
    lines += table(["", *features], rows)
    if learned:
        rows = []
        for name, true in shared["interactions"].items():
            values = np.asarray(learned[name]["learned_shapley_mean_abs"], dtype=float)
            if values.size == 0:
                continue
            rows.append([name, fmt(true["mixed_partial"], 3), fmt(true["shapley_mean_abs"], 3),
                         with_range(float(values.mean()), float(values.min()),
                                    float(values.max()), range_digits=3)])
        lines += ["Interactions: the true mixed partial derivative and mean |Shapley "
                  "interaction| against the models' (the per-seed mixed partials are in the "
                  "tables above, `interaction_*`):", ""]
        lines += table(["pair", "true d²f/dxᵢdxⱼ", "true mean |I|",
                        "learned mean |I| (seed range)"], rows)
    return lines


def report(results: Results, names: Sequence[str]) -> list[str]:
    """The methods' errors against the truth compared, per condition."""
    compared = method_comparison_lines(results, names, "truth")
    if not compared:
        return []
    return ["## Attribution methods against the truth, compared", "",
            "Each method's error against the true contributions minus the first method's, "
            "on the same trained seeds (paired), Holm across the methods.", "", *compared]


PRESENTATION = Presentation(condition_report=condition_report, report=report)
