"""Plain-text tables for the terminal: per-seed values and their spread."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from negres.evaluators.performance import collapsed_seeds, seed_list
from negres.measures.losses import SCORE_NAMES
from negres.results import Results
from negres.statistics.study import without_diverged

# Collapsed seeds named one by one on the terminal; past these, a count.
TERMINAL_SEEDS = 10


def cell(value: float, width: int) -> str:
    """``value`` right-aligned in ``width`` characters: four decimals, or three significant
    digits where four decimals would not fit (a collapsed seed's loss of 1e9)."""
    text = f"{value:.4f}"
    return f"{text if len(text) <= width else f'{value:.3g}':>{width}}"


def seed_table(seed_indices: Sequence[int], columns: Mapping[str, Sequence[float]]) -> str:
    """One row per seed, then mean, std (ddof=1), min and max of each column.

    Args:
      seed_indices: ``(S,)`` seed index of each row.
      columns: name -> ``(S,)`` values.
    """
    names = list(columns)
    width = max(10, *(len(n) for n in names))
    values = {n: np.asarray(columns[n], dtype=float) for n in names}
    header = f"{'seed':>6} " + " ".join(f"{n:>{width}}" for n in names)
    lines = [header, "-" * len(header)]
    for row, seed in enumerate(seed_indices):
        lines.append(f"{seed:>6} " + " ".join(cell(values[n][row], width) for n in names))
    lines.append("-" * len(header))
    spread = {
        "mean": np.nanmean,
        "std": lambda v: np.nanstd(v, ddof=1) if np.sum(np.isfinite(v)) > 1 else float("nan"),
        "min": np.nanmin,
        "max": np.nanmax,
    }
    with warnings.catch_warnings():
        # A column with no finite value (every seed diverged, or none left): print NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        for label, fn in spread.items():
            lines.append(f"{label:>6} " + " ".join(
                cell(fn(values[n]) if values[n].size else float("nan"), width) for n in names))
    return "\n".join(lines)


def metric_table(metrics: Mapping[str, Sequence[float]]) -> str:
    """One row per metric: mean, std (ddof=1), min and max over seeds, and seeds used."""
    width = max(10, *(len(n) for n in metrics))
    header = f"{'metric':<{width}} {'mean':>10} {'std':>10} {'min':>10} {'max':>10} {'seeds':>6}"
    lines = [header, "-" * len(header)]
    for name, raw in metrics.items():
        values = np.asarray(raw, dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            lines.append(f"{name:<{width}} {'nan':>10} {'nan':>10} {'nan':>10} {'nan':>10} "
                         f"{0:>6}")
            continue
        std = np.std(finite, ddof=1) if finite.size > 1 else float("nan")
        spread = (finite.mean(), std, finite.min(), finite.max())
        lines.append(f"{name:<{width}} " + " ".join(cell(v, 10) for v in spread)
                     + f" {finite.size:>6}")
    return "\n".join(lines)


def print_summary(results: Results) -> None:
    """Per-seed tables of the headline metrics and the verdicts, on the terminal.

    The tables show the seeds the statistics use; each condition says how many it left out
    and why (its own diverged seeds, or, with paired conditions, seeds that diverged in
    another condition), and which of its seeds collapsed (stayed finite but ended with a
    higher training loss than they started with: in the tables, unflagged otherwise).
    """
    score = SCORE_NAMES[results.task.kind]
    paired = results.statistics.settings.get("paired_conditions", False)
    shown, excluded = without_diverged(results.conditions, paired=paired)
    for name, condition in shown.items():
        metrics = condition.metrics
        left_out = excluded["count"][name]
        own = excluded["own"][name]
        num_seeds = results.conditions[name].num_seeds
        note = ""
        if left_out:
            note = f"; {left_out} of {num_seeds} left out below"
            note += (f" ({own} diverged here, {left_out - own} in another condition)"
                     if left_out > own else " (diverged)")
        print(f"\n{name}: {num_seeds} seeds, trained in "
              f"{condition.train_time_s:.1f}s, evaluated in "
              f"{condition.evaluation_time_s:.1f}s on {results.device['platform']}"
              + note)
        # From the unfiltered results: the flags' rows are every seed's.
        collapsed = collapsed_seeds(results.conditions[name])
        if collapsed:
            print(f"{len(collapsed)} of {num_seeds} seeds "
                  "collapsed (training loss ended above its loss at initialisation, finite): "
                  f"{seed_list(collapsed, TERMINAL_SEEDS)}")
        headline = [f"test_{score}", "test_loss"]
        print(seed_table([int(s) for s in condition.seed_indices],
                         {m: metrics[m] for m in headline}))
        evaluator_metrics = {m: v for m, v in metrics.items() if m not in headline}
        print("\nevery per-seed metric, across seeds:")
        print(metric_table(evaluator_metrics))
    for metric, family in results.statistics.comparisons.items():
        for name, c in family.items():
            print(f"{metric}: {name} vs {c.get('reference', results.baseline)}: "
                  f"{c['difference']:+.4f} -> {c['verdict']}")
