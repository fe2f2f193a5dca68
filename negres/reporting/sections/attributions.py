"""The ``attributions`` evaluator's part of the report, its plots and its saved files.

Cross-seed agreement (raw and on its scale), the parameter-randomisation check and the
attribution methods compared; agreement heatmaps and saliency plots; and the first
examples' attributions saved as ``.npy`` files in the workdir (:func:`save`), which the
saliency plots and :func:`negres.load_results` read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from negres.evaluators.attributions import ATTRIBUTIONS_DIR, BASELINES
from negres.evaluators.protocol import Evaluation
from negres.measures import agreement
from negres.reporting import plots as figures
from negres.reporting.sections import Presentation
from negres.reporting.tables import ci_of, comparison_header, comparison_rows, fmt, interval, table
from negres.reporting.write import plot_path, safe_name, saliency_plot
from negres.results import ConditionResults, Results
from negres.tasks import Task


def save_attributions(workdir: Path, condition: str, task: Task,
                      attributions: Mapping[str, np.ndarray], count: int) -> dict[str, str]:
    """Write the first ``count`` examples' attributions ``(S, count, *input_shape)`` as .npy.

    Returns method -> path relative to ``workdir``.
    """
    if count <= 0 or not attributions:
        return {}
    directory = workdir / ATTRIBUTIONS_DIR
    directory.mkdir(exist_ok=True)
    n = min(count, next(iter(attributions.values())).shape[1])
    # Per condition: conditions of one study may differ in task (inputs) or target (labels).
    prefix = safe_name(condition)
    np.save(directory / f"{prefix}__inputs.npy", task.x_test[:n])
    np.save(directory / f"{prefix}__labels.npy", task.y_test[:n])
    saved = {}
    for method, values in attributions.items():
        path = directory / f"{prefix}__{method}.npy"
        np.save(path, values[:, :n])
        saved[method] = str(path.relative_to(workdir))
    return saved


def save(evaluation: Evaluation, workdir: Path, condition: str, task: Task,
         settings: ConfigDict) -> None:
    """Save the first ``settings.attributions.save_attributions`` examples' attributions of
    every method (:func:`save_attributions`, from what the evaluator passed on) and record
    them in ``evaluation.shared["files"]``: method -> path relative to ``workdir``.
    ``settings``: the ``evaluation`` section, each evaluator's under its name."""
    evaluation.shared["files"] = save_attributions(
        workdir, condition, task, evaluation.passed_on.get("attributions") or {},
        int(settings.attributions.save_attributions))


def method_comparison_lines(results: Results, names: Sequence[str],
                            evaluator: str) -> list[str]:
    """Tables of :func:`negres.evaluators.attributions.method_families` of ``evaluator``
    for the conditions ``names``."""
    families = results.statistics.within_conditions.get(evaluator) or {}
    families = {n: f for n, f in families.items() if f and n in names}
    lines = []
    for condition, measures in families.items():
        lines += [f"### `{condition}`", ""]
        for measure, family in measures.items():
            lines += [f"**{measure}**", ""]
            lines += table(["method − reference", *comparison_header(list(family.values()))[1:]], [
                comparison_rows(f"{m} − {c['reference']}", c) for m, c in family.items()])
    return lines


def _agreement_rows(condition: ConditionResults) -> list[list[str]]:
    rows = []
    for method, matrices in condition.saved_by("attributions").pairwise.get(
            "agreement", {}).items():
        cells = [method]
        for matrix in matrices.values():
            matrix = np.asarray(matrix, dtype=float)
            off_diagonal = matrix[~np.eye(len(matrix), dtype=bool)]
            cells.append(f"{fmt(float(np.nanmean(off_diagonal)), 3)} ± "
                         f"{fmt(float(np.nanstd(off_diagonal)), 3)}"
                         if np.isfinite(off_diagonal).any() else "–")
        rows.append(cells)
    return rows


def _pair_mean(matrix: Any) -> float:
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or len(matrix) < 2:
        return float("nan")
    return agreement.off_diagonal_mean(matrix)


def _scale_rows(results: Results, name: str) -> list[list[str]]:
    """One row per method and measure: baselines, ceiling, raw and scaled agreement."""
    saved = results.conditions[name].saved_by("attributions")
    scaled_all = saved.pairwise.get("agreement_scaled", {})
    summaries = results.statistics.summaries.get(name, {})
    rows = []
    for method, scaled in scaled_all.items():
        raw = saved.pairwise.get("agreement", {}).get(method, {})
        baselines = saved.pairwise.get("agreement_baseline", {}).get(method, {})
        ceilings = saved.per_seed.get("agreement_ceiling", {}).get(method)
        for measure, matrix in scaled.items():
            cells = [method, measure]
            cells += [fmt(_pair_mean(baselines[measure][b]), 3)
                      if b in baselines.get(measure, {}) else "–" for b in BASELINES]
            if ceilings is None:
                cells.append("1 (deterministic)")
            else:
                values = np.asarray(ceilings[measure], dtype=float)
                cells.append(fmt(float(np.nanmean(values)), 3)
                             if np.isfinite(values).any() else "–")
            cells.append(fmt(_pair_mean(raw[measure]), 3) if measure in raw else "–")
            text = fmt(_pair_mean(matrix), 3)
            summary = summaries.get(f"{method}_{measure}_agreement_scaled")
            if summary and ("ci" in summary or "ci_bca" in summary):
                text += f" {interval(ci_of(summary), 3)}"
            cells.append(text)
            rows.append(cells)
    return rows


def _randomization_rows(condition: ConditionResults) -> tuple[list[str], list[list[str]]]:
    saved = condition.saved_by("attributions")
    checks = saved.per_seed.get("randomization", {})
    layers = saved.shared.get("randomization_layers", {})
    rows, header = [], []
    for method, values in checks.items():
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[0] == 0:
            continue
        rows.append([method] + [fmt(float(np.nanmean(values[:, k])), 3)
                                for k in range(values.shape[1])])
        header = ["method"] + [f"top {k + 1} random (+{layer})"
                               for k, layer in enumerate(layers[method])]
    return header, rows


def report(results: Results, names: Sequence[str]) -> list[str]:
    """Cross-seed agreement, the randomisation check, and the methods compared."""
    conditions = results.conditions
    saved = {n: conditions[n].saved_by("attributions") for n in names}
    lines = []
    agreement_rows = {n: _agreement_rows(conditions[n]) for n in names}
    if any(agreement_rows.values()):
        top_k = next((saved[n].shared.get("agreement_top_k") for n in names
                      if saved[n].shared.get("agreement_top_k")), None)
        lines += ["## Saliency across seeds", "",
                  "Cross-seed agreement of attributions (mean ± std over pairs of seeds, "
                  "averaged over examples; 1 is perfect agreement, 0 unrelated"
                  + (f"; top_k uses k = {top_k}" if top_k else "") + ").", ""]
        for name in names:
            if not agreement_rows[name]:
                continue
            measures = list(next(iter(saved[name].pairwise["agreement"].values())))
            lines += [f"### `{name}`", ""] + table(["method", *measures], agreement_rows[name])
            scale_rows = _scale_rows(results, name)
            if scale_rows:
                scale = saved[name].shared.get("agreement_scale", {})
                lines += [
                    "Agreement on a scale (means over pairs of seeds): the no-signal "
                    "baselines are the same measure between untrained, freshly initialised "
                    "networks explained by the same method on the same examples, and "
                    "between attributions whose features were randomly permuted within "
                    "each example (same values, no position); the ceiling is one seed's "
                    "agreement with itself attributed again with independent noise (1 for "
                    "a deterministic method). Scaled = (agreement − baseline) / (ceiling − "
                    f"baseline) per pair, against the {scale.get('baseline', 'untrained')} "
                    "baseline: 0 is no more than no signal, 1 as much as a repeat; the "
                    "interval is that of the per-seed metric.", ""]
                lines += table(["method", "measure", "untrained", "permuted", "ceiling",
                                "raw", "scaled"], scale_rows)
            header, rows = _randomization_rows(conditions[name])
            if rows:
                lines += ["Parameter-randomisation sanity check (Spearman rank correlation "
                          "of |attribution| between the trained model and the same model "
                          "with its top layers re-initialised; a method that passes drops "
                          "towards 0):", ""] + table(header, rows)
    compared = method_comparison_lines(results, names, "attributions")
    if compared:
        lines += ["## Attribution methods compared", "",
                  "Each method minus the condition's first method on the same trained seeds "
                  "(paired), Holm across the methods compared on each measure.", ""]
        lines += compared
    return lines


def plots(results: Results, workdir: Path) -> list[tuple[str, str]]:
    """Agreement heatmaps, and the saved attributions of the same examples across seeds."""
    written = []
    for name, condition in results.items():
        saved = condition.saved_by("attributions")
        for method, matrices in saved.pairwise.get("agreement", {}).items():
            if np.asarray(matrices["spearman_abs"]).size == 0:  # every seed left out
                continue
            path, relative = plot_path(workdir, "agreement", name, method)
            figures.agreement_heatmap(
                np.asarray(matrices["spearman_abs"]), path,
                title=f"Cross-seed agreement of {method}: {name}",
                measure_name="Spearman rank correlation of |attribution|")
            written.append((f"Cross-seed agreement of {method} attributions: {name}", relative))
        for method, file in saved.shared.get("files", {}).items():
            path, relative = plot_path(workdir, "saliency", name, method)
            if saliency_plot(results, workdir, file, path, name, method):
                written.append(
                    (f"{method} attributions of the same examples across seeds: {name}",
                     relative))
    return written


PRESENTATION = Presentation(report=report, plots=plots, save=save)
