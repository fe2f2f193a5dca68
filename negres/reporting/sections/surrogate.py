"""The ``surrogate_fidelity`` evaluator's plots: interpretability-performance frontiers,
each proxy against test performance, seeds as points, per task with at least 3 models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from negres.evaluators.surrogate import METRIC
from negres.measures.losses import SCORE_NAMES
from negres.reporting import plots as figures
from negres.reporting.sections import Presentation
from negres.reporting.write import plot_path, study_intervals
from negres.results import ConditionResults, Results

# Per-seed interpretability proxies drawn against test performance, one plot each.
FRONTIER_PROXIES = {
    METRIC: "linear-surrogate fidelity",
    "integrated_gradients_agreement_spearman_abs": "cross-seed agreement of IG (Spearman)",
    "integrated_gradients_sparsity": "IG sparsity (Gini of |attribution|)",
}


def _frontier_groups(conditions: Mapping[str, ConditionResults]) -> dict[str, list[str]]:
    """Conditions by task, for studies that measure the proxy on at least three models."""
    groups: dict[str, list[str]] = {}
    for name, condition in conditions.items():
        if METRIC in condition.metrics:
            groups.setdefault(condition.task or "task", []).append(name)
    return {task: names for task, names in groups.items() if len(names) >= 3}


def plots(results: Results, workdir: Path) -> list[tuple[str, str]]:
    """Each proxy against test performance, seeds as points, per task with >= 3 models."""
    score = SCORE_NAMES[results.task.kind]
    conditions = results.conditions
    written = []
    for task_name, names in _frontier_groups(conditions).items():
        for proxy, label in FRONTIER_PROXIES.items():
            if not all(proxy in conditions[n].metrics for n in names):
                continue
            path, relative = plot_path(workdir, "frontier", task_name, proxy)
            short = {n: n.removeprefix(f"{task_name}/") for n in names}  # the title says it
            # The report's intervals: over test examples for the score, pairs of seeds for
            # agreement.
            x_ci, y_ci = (study_intervals(results, metric, names)[0]
                          for metric in (f"test_{score}", proxy))
            figures.frontier(
                {short[n]: np.asarray(conditions[n].metrics[f"test_{score}"], float)
                 for n in names},
                {short[n]: np.asarray(conditions[n].metrics[proxy], float) for n in names},
                path, x_label=f"test {score} (performance)", y_label=label,
                title=f"Interpretability against performance: {task_name}",
                x_intervals={short[n]: ci for n, ci in x_ci.items()},
                y_intervals={short[n]: ci for n, ci in y_ci.items()})
            written.append((f"Interpretability–performance frontier on {task_name}: {label}",
                            relative))
    return written


PRESENTATION = Presentation(plots=plots)
