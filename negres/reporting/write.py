"""A study's report: ``report.md`` and ``plots/*.png``, written from ``results.json`` alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from negres.reporting import plots
from negres.reporting.markdown import build_report
from negres.statistics.study import without_diverged

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# Seeds shown side by side in saliency plots.
_SALIENCY_SEEDS = 4
_SALIENCY_EXAMPLES = 6


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_plots(results: Mapping[str, Any], workdir: Path) -> list[tuple[str, str]]:
    """Every plot of the study; returns ``(caption, path relative to workdir)``."""
    directory = workdir / PLOTS_DIR
    directory.mkdir(exist_ok=True)
    written: list[tuple[str, str]] = []
    score = "mse" if results["task"]["kind"] == "regression" else "accuracy"

    def add(caption: str, path: Path) -> None:
        written.append((caption, str(path.relative_to(workdir))))

    conditions = results["conditions"]
    if conditions:
        path = directory / f"test_{score}_by_condition.png"
        plots.seed_strip(
            {name: np.asarray(c["metrics"][f"test_{score}"]) for name, c in conditions.items()},
            path, metric_name=f"test {score}",
            title=f"Test {score} per seed and condition (diverged seeds left out)"
            if any((c.get("diverged") or {}).get("count") for c in conditions.values())
            else f"Test {score} per seed and condition",
        )
        add(f"Test {score} of every seed, per condition", path)
    for task_name, names in _frontier_groups(conditions).items():
        for proxy, label in FRONTIER_PROXIES.items():
            if not all(proxy in conditions[n]["metrics"] for n in names):
                continue
            path = directory / f"frontier_{safe_name(task_name)}_{proxy}.png"
            short = {n: n.removeprefix(f"{task_name}/") for n in names}  # the title says it
            plots.frontier(
                {short[n]: np.asarray(conditions[n]["metrics"][f"test_{score}"], float)
                 for n in names},
                {short[n]: np.asarray(conditions[n]["metrics"][proxy], float) for n in names},
                path, x_label=f"test {score} (performance)", y_label=label,
                title=f"Interpretability against performance: {task_name}",
            )
            add(f"Interpretability–performance frontier on {task_name}: {label}", path)
    for name, condition in conditions.items():
        curves = condition["curves"]
        path = directory / f"learning_curves_{safe_name(name)}.png"
        plots.learning_curves(
            np.asarray(curves["step"]),
            {k: np.asarray(v) for k, v in curves.items() if k != "step"},
            path, title=f"Learning curves: {name}",
        )
        add(f"Learning curves of every seed: {name}", path)
        if condition.get("robustness"):
            path = directory / f"robustness_{safe_name(name)}.png"
            shifts = condition["robustness"]
            severities = np.asarray(next(iter(shifts.values()))["severities"])
            plots.robustness_curves(
                severities, {s: np.asarray(v[score]) for s, v in shifts.items()}, path,
                metric_name=f"test {score}",
                clean=np.asarray(condition["metrics"][f"test_{score}"]),
            )
            add(f"Test {score} under shift, by severity: {name}", path)
        for method, matrices in condition.get("agreement", {}).items():
            path = directory / f"agreement_{safe_name(name)}_{safe_name(method)}.png"
            plots.agreement_heatmap(
                np.asarray(matrices["spearman_abs"]), path,
                title=f"Cross-seed agreement of {method}: {name}",
                measure_name="Spearman rank correlation of |attribution|",
            )
            add(f"Cross-seed agreement of {method} attributions: {name}", path)
        for method, relative in condition.get("attribution_files", {}).items():
            path = directory / f"saliency_{safe_name(name)}_{safe_name(method)}.png"
            if _saliency_plot(results, workdir, relative, path, name, method):
                add(f"{method} attributions of the same examples across seeds: {name}", path)
    return written


# Per-seed interpretability proxies drawn against test performance, one plot each.
FRONTIER_PROXIES = {
    "linear_surrogate_fidelity": "linear-surrogate fidelity",
    "integrated_gradients_agreement_spearman_abs": "cross-seed agreement of IG (Spearman)",
    "integrated_gradients_sparsity": "IG sparsity (Gini of |attribution|)",
}


def _frontier_groups(conditions: Mapping[str, Any]) -> dict[str, list[str]]:
    """Conditions by task, for studies that measure a proxy on at least three models."""
    groups: dict[str, list[str]] = {}
    for name, condition in conditions.items():
        if "linear_surrogate_fidelity" in condition["metrics"]:
            groups.setdefault(condition.get("task", "task"), []).append(name)
    return {task: names for task, names in groups.items() if len(names) >= 3}


def _saliency_plot(
    results: Mapping[str, Any], workdir: Path, relative: str, path: Path, condition: str,
    method: str,
) -> bool:
    attribution_file = workdir / relative
    prefix = attribution_file.parent / safe_name(condition)
    inputs_file = Path(f"{prefix}__inputs.npy")
    if not attribution_file.is_file() or not inputs_file.is_file():
        return False
    attributions = np.load(attribution_file)
    kept = results["conditions"][condition].get("kept_rows")
    if kept is not None:  # the file holds every seed; the report shows those it counts
        attributions = attributions[np.asarray(kept)]
    if attributions.shape[0] == 0:
        return False
    inputs = np.load(inputs_file)
    labels_file = Path(f"{prefix}__labels.npy")
    labels = np.load(labels_file) if labels_file.is_file() else None
    input_shape = results["task"]["input_shape"]
    seeds = results["conditions"][condition]["seed_indices"]
    shown = min(_SALIENCY_SEEDS, attributions.shape[0])
    if len(input_shape) >= 2:  # images (H, W, C) and signals (L, C)
        plots.saliency_grid(
            inputs[:_SALIENCY_EXAMPLES], attributions[:shown, :_SALIENCY_EXAMPLES], path,
            seed_labels=[f"seed {s}" for s in seeds[:shown]],
            example_labels=None if labels is None else
            [f"label {v:g}" for v in labels[:_SALIENCY_EXAMPLES]],
            title=f"{method} attributions, {shown} of {attributions.shape[0]} seeds: {condition}",
        )
    else:
        truth = results["conditions"][condition].get("truth") or {}
        names = truth.get("features") or [f"x{i}" for i in range(input_shape[0])]
        # The truth is of the attributed examples; draw it only over those same examples.
        same_examples = truth.get("examples") == attributions.shape[1]
        true_mean_abs = (truth.get("true_mean_abs")
                         if same_examples and method in truth.get("methods", {}) else None)
        plots.feature_bars(
            np.abs(attributions).mean(axis=1), names, path,
            title=f"Mean |{method}| per feature, every seed: {condition}",
            truth=None if true_mean_abs is None else np.asarray(true_mean_abs, dtype=float),
        )
    return True


def write_report(results: Mapping[str, Any], workdir: Path) -> Path:
    """Write the plots and ``report.md`` into ``workdir``; returns the report's path.

    Tables and plots show the seeds the statistics use: seeds whose training diverged are
    left out of them as of the statistics (each condition still says which diverged).
    """
    paired = results["statistics"]["settings"].get("paired_conditions", False)
    shown = dict(results)
    shown["conditions"] = without_diverged(results["conditions"], paired=paired)[0]
    written = write_plots(shown, workdir)
    path = workdir / REPORT_FILE
    path.write_text(build_report(shown, written))
    return path
