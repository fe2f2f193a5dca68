"""A study's report: ``report.md``, ``plots/*.png``, the tidy table ``metrics.csv`` and the
TensorBoard logs in ``tensorboard/``, written from ``results.json`` alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import logging

from negres.files import write_text_atomic
from negres.measures.losses import SCORE_NAMES
from negres.reporting import plots
from negres.reporting.markdown import build_report
from negres.reporting.sections import evaluator_plots
from negres.reporting.tables import ci_of, covers_label
from negres.reporting.tensorboard import DEFAULT_SEED_CURVES, write_tensorboard
from negres.reporting.tidy import write_tidy
from negres.results import PLOTS_DIR, REPORT_FILE, Results
from negres.statistics.study import without_diverged

# Seeds shown side by side in saliency plots.
_SALIENCY_SEEDS = 4
_SALIENCY_EXAMPLES = 6


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def plot_path(workdir: Path, kind: str, *parts: str) -> tuple[Path, str]:
    """``(absolute path, path relative to workdir)`` of the plot ``kind_part1_part2.png``."""
    directory = workdir / PLOTS_DIR
    directory.mkdir(exist_ok=True)
    path = directory / ("_".join([kind, *(safe_name(p) for p in parts)]) + ".png")
    return path, str(path.relative_to(workdir))


def study_intervals(results: Results, metric: str,
                    conditions: Sequence[str]) -> tuple[dict[str, tuple[float, float]], str]:
    """``(condition -> (low, high), what they cover)``: the study's intervals of ``metric``
    (``statistics.summaries``), the ones its sampling calls for, so that a plot shows the
    report's interval; conditions without a finite one are left out."""
    summaries = results.statistics.summaries
    out, covers = {}, set()
    for name in conditions:
        summary = (summaries.get(name) or {}).get(metric) or {}
        ci = ci_of(summary) if "ci" in summary or "ci_bca" in summary else None
        if ci is not None and len(ci) == 2 and all(
                isinstance(b, (int, float)) and np.isfinite(b) for b in ci):
            out[name] = (float(ci[0]), float(ci[1]))
            covers.add(covers_label(summary))
    return out, " / ".join(sorted(covers))


def write_plots(results: Results, workdir: Path) -> list[tuple[str, str]]:
    """Every plot of the study; returns ``(caption, path relative to workdir)``.

    The test score per seed and the learning curves of every condition, then each
    evaluator's plots, in the order the evaluators ran.
    """
    written: list[tuple[str, str]] = []
    score = SCORE_NAMES[results.task.kind]
    conditions = results.conditions
    if conditions:
        path, relative = plot_path(workdir, f"test_{score}_by_condition")
        intervals, covers = study_intervals(results, f"test_{score}", list(conditions))
        plots.seed_strip(
            {name: np.asarray(c.metrics[f"test_{score}"]) for name, c in conditions.items()},
            path, metric_name=f"test {score}", intervals=intervals, covers=covers,
            title=f"Test {score} per seed and condition (diverged seeds left out)"
            if any(c.diverged.count for c in conditions.values())
            else f"Test {score} per seed and condition",
        )
        written.append((f"Test {score} of every seed, per condition", relative))
    for name, condition in conditions.items():
        curves = condition.curves
        path, relative = plot_path(workdir, "learning_curves", name)
        plots.learning_curves(
            np.asarray(curves["step"]),
            {k: np.asarray(v) for k, v in curves.items() if k != "step"},
            path, title=f"Learning curves: {name}",
        )
        written.append((f"Learning curves of every seed: {name}", relative))
    written += evaluator_plots(results, workdir)
    return written


def saliency_plot(
    results: Results, workdir: Path, relative: str, path: Path, condition: str,
    method: str,
) -> bool:
    attribution_file = workdir / relative
    prefix = attribution_file.parent / safe_name(condition)
    inputs_file = Path(f"{prefix}__inputs.npy")
    if not attribution_file.is_file() or not inputs_file.is_file():
        return False
    attributions = np.load(attribution_file)
    kept = results.conditions[condition].kept_rows
    if kept is not None:  # the file holds every seed; the report shows those it counts
        attributions = attributions[np.asarray(kept)]
    if attributions.shape[0] == 0:
        return False
    inputs = np.load(inputs_file)
    labels_file = Path(f"{prefix}__labels.npy")
    labels = np.load(labels_file) if labels_file.is_file() else None
    input_shape = results.task.input_shape
    seeds = [int(s) for s in results.conditions[condition].seed_indices]
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
        truth = results.conditions[condition].saved_by("truth")
        names = truth.shared.get("features") or [f"x{i}" for i in range(input_shape[0])]
        # The truth is of the attributed examples; draw it only over those same examples.
        same_examples = truth.shared.get("examples") == attributions.shape[1]
        true_mean_abs = (truth.shared.get("true_mean_abs")
                         if same_examples and method in truth.per_seed.get("methods", {})
                         else None)
        plots.feature_bars(
            np.abs(attributions).mean(axis=1), names, path,
            title=f"Mean |{method}| per feature, every seed: {condition}",
            truth=None if true_mean_abs is None else np.asarray(true_mean_abs, dtype=float),
        )
    return True


def write_report(results: Results, workdir: Path) -> Path:
    """Write the plots, ``metrics.csv`` (and ``metrics.parquet`` with pyarrow), the
    TensorBoard logs (with tensorboardX) and ``report.md`` into ``workdir``; returns the
    report's path.

    Tables and plots show the seeds the statistics use: seeds whose training diverged are
    left out of them as of the statistics (each condition still says which diverged).
    """
    paired = results.statistics.settings.get("paired_conditions", False)
    shown = dataclasses.replace(
        results, conditions=without_diverged(results.conditions, paired=paired)[0])
    written = write_plots(shown, workdir)
    write_tidy(results, workdir)  # every seed, diverged ones flagged
    try:
        write_tensorboard(shown, workdir, written, seed_curves=int(
            results.config.get("tensorboard_seed_curves", DEFAULT_SEED_CURVES)))
    except ImportError as e:  # tensorboardX is optional: the report does not need it
        logging.warning("negres: no TensorBoard logs in %s: %s", workdir, e)
    path = workdir / REPORT_FILE
    # Written last and whole: a report.md that exists is a finished report.
    write_text_atomic(path, build_report(shown, written))
    return path
