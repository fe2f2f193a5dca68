"""The ``robustness`` evaluator's part of the report: the score by severity, each shifted
set against the clean one, confusion matrices, and the shift sweeps' plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from negres.evaluators.robustness import curves_of, severity_sample
from negres.measures.losses import SCORE_NAMES
from negres.reporting import plots as figures
from negres.reporting.sections import Presentation, saved_sweeps
from negres.reporting.tables import (
    ci_label,
    comparison_header,
    comparison_rows,
    fmt,
    interval,
    table,
    with_range,
)
from negres.reporting.write import plot_path
from negres.results import ConditionResults, Results
from negres.statistics.sampling import describe_sample


def _severity_table(condition: ConditionResults, metric: str, estimand: str) -> list[str]:
    curves, severities = curves_of(condition)
    lines = []
    for shift, values in curves.items():
        values = np.asarray(values[metric], dtype=float)
        if values.shape[0] == 0:  # every seed left out
            continue
        # The interval the sampling calls for, over the finite seeds, as in every table.
        rows, summaries = [], []
        for k, severity in enumerate(severities[shift]):
            column = values[:, k]
            summary = describe_sample(severity_sample(condition, shift, k, metric),
                                      estimand=estimand, num_resamples=2000)
            summaries.append(summary)
            rows.append([fmt(severity, 3), fmt(float(np.nanmean(column))), interval(summary["ci"]),
                         fmt(float(np.nanmin(column))), fmt(float(np.nanmax(column)))])
        lines += [f"*{shift}* ({metric} by severity; the interval covers "
                  f"{summaries[0]['covers']})", ""]
        lines += table(["severity", "mean", f"95% CI ({ci_label(summaries[0])})", "min seed",
                        "max seed"], rows)
    return lines


def report(results: Results, names: Sequence[str]) -> list[str]:
    """Per condition: the score by severity, and each shifted set against the clean one."""
    score = SCORE_NAMES[results.task.kind]
    statistics = results.statistics
    within = statistics.within_conditions.get("robustness") or {}
    shown = [n for n in names if n in within or curves_of(results.conditions[n])[0]]
    if not shown:
        return []
    lines = ["## Robustness under shift", "",
             f"Shifted minus clean test {score}, the same seeds evaluated twice (paired), "
             "Holm across the shifted sets of each condition.", ""]
    for name in shown:
        lines += [f"### `{name}`", ""]
        lines += _severity_table(results.conditions[name], score,
                                 statistics.settings.get("estimand", "distribution"))
        family = statistics.within("robustness", name).get("shift_vs_clean", {})
        if family:
            lines += table(["shift", *comparison_header(list(family.values()))[1:]],
                           [comparison_rows(s, c) for s, c in family.items()])
    return lines


def confusion_report(condition: ConditionResults, max_classes: int = 4) -> list[str]:
    """Row-normalised confusion matrices (mean over seeds) for tasks with few classes."""
    lines = []
    for name, matrices in (condition.saved_by("robustness").per_seed.get("confusion")
                           or {}).items():
        counts = np.asarray(matrices, dtype=float)  # (S, C, C)
        if counts.ndim != 3 or counts.shape[0] == 0 or counts.shape[-1] > max_classes:
            continue
        rates = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)
        mean, low, high = rates.mean(0), rates.min(0), rates.max(0)
        classes = range(counts.shape[-1])
        rows = [[f"true {i}", *[with_range(mean[i, j], low[i, j], high[i, j]) for j in classes]]
                for i in classes]
        label = "clean test set" if name == "clean" else f"{name}, largest severity"
        lines += [f"*Confusion, {label}* (share of each true class predicted as each class; "
                  "mean over seeds, seed range):", ""]
        lines += table(["", *[f"pred {j}" for j in classes]], rows)
    return lines


def plots(results: Results, workdir: Path) -> list[tuple[str, str]]:
    """The score under every shift by severity, every seed, one plot per condition."""
    score = SCORE_NAMES[results.task.kind]
    written = []
    for name, condition in results.items():
        curves, severities = curves_of(condition)
        if not curves or not len(condition.seed_indices):
            continue
        # One axis of severities: the shifts swept over the first shift's severities.
        first = list(severities[next(iter(curves))])
        same = {s: v for s, v in curves.items() if list(severities[s]) == first}
        path, relative = plot_path(workdir, "robustness", name)
        figures.robustness_curves(
            np.asarray(first), {s: np.asarray(v[score]) for s, v in same.items()}, path,
            metric_name=f"test {score}", clean=np.asarray(condition.metrics[f"test_{score}"]))
        written.append((f"Test {score} under shift, by severity: {name}", relative))
    return written


PRESENTATION = Presentation(report=report, condition_report=confusion_report, plots=plots,
                            sweeps=saved_sweeps("robustness"))
