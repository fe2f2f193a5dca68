"""A study's report: ``report.md`` and ``plots/*.png``, written from ``results.json`` alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from negres import plots
from negres.report_markdown import build_report

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# Seeds shown side by side in saliency plots.
_SALIENCY_SEEDS = 4
_SALIENCY_EXAMPLES = 6


def _safe(name: str) -> str:
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
            path, metric_name=f"test {score}", title=f"Test {score} per seed and condition",
        )
        add(f"Test {score} of every seed, per condition", path)
    for name, condition in conditions.items():
        curves = condition["curves"]
        path = directory / f"learning_curves_{_safe(name)}.png"
        plots.learning_curves(
            np.asarray(curves["step"]),
            {k: np.asarray(v) for k, v in curves.items() if k != "step"},
            path, title=f"Learning curves: {name}",
        )
        add(f"Learning curves of every seed: {name}", path)
        if condition.get("robustness"):
            path = directory / f"robustness_{_safe(name)}.png"
            shifts = condition["robustness"]
            severities = np.asarray(next(iter(shifts.values()))["severities"])
            plots.robustness_curves(
                severities, {s: np.asarray(v[score]) for s, v in shifts.items()}, path,
                metric_name=f"test {score}",
                clean=np.asarray(condition["metrics"][f"test_{score}"]),
            )
            add(f"Test {score} under shift, by severity: {name}", path)
        for method, matrices in condition.get("agreement", {}).items():
            path = directory / f"agreement_{_safe(name)}_{_safe(method)}.png"
            plots.agreement_heatmap(
                np.asarray(matrices["spearman_abs"]), path,
                title=f"Cross-seed agreement of {method}: {name}",
                measure_name="Spearman rank correlation of |attribution|",
            )
            add(f"Cross-seed agreement of {method} attributions: {name}", path)
        for method, relative in condition.get("attribution_files", {}).items():
            path = directory / f"saliency_{_safe(name)}_{_safe(method)}.png"
            if _saliency_plot(results, workdir, relative, path, name, method):
                add(f"{method} attributions of the same examples across seeds: {name}", path)
    return written


def _saliency_plot(
    results: Mapping[str, Any], workdir: Path, relative: str, path: Path, condition: str,
    method: str,
) -> bool:
    attribution_file = workdir / relative
    inputs_file = attribution_file.parent / "inputs.npy"
    if not attribution_file.is_file() or not inputs_file.is_file():
        return False
    attributions = np.load(attribution_file)
    inputs = np.load(inputs_file)
    labels_file = attribution_file.parent / "labels.npy"
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
        names = [f"x{i}" for i in range(input_shape[0])]
        plots.feature_bars(
            np.abs(attributions).mean(axis=1), names, path,
            title=f"Mean |{method}| per feature, every seed: {condition}",
        )
    return True


def write_report(results: Mapping[str, Any], workdir: Path) -> Path:
    """Write the plots and ``report.md`` into ``workdir``; returns the report's path."""
    written = write_plots(results, workdir)
    path = workdir / REPORT_FILE
    path.write_text(build_report(results, written))
    return path
