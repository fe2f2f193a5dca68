"""The ``multiplicity`` evaluator's part of the report (churn, ambiguity, vote entropy and
the majority vote per set and severity) and its plot (churn against shift severity)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no backend or global state needed

from negres.evaluators.multiplicity import CLEAN, pair_summary
from negres.reporting.sections import Presentation
from negres.reporting.write import plot_path
from negres.results import Results, Saved


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value:.{digits}f}" if np.isfinite(value) else "–"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _saved(results: Results, name: str) -> Saved | None:
    """The condition's saved multiplicity results, or None."""
    condition = results.conditions.get(name)
    saved = None if condition is None else condition.saved_by("multiplicity")
    return saved if saved is not None and saved.shared.get("sets") else None


def _churn_curve(saved: Saved, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over pairs of seeds of one set's churn, ``(K,)`` each: from the
    pairwise matrix where saved, else from the saved summary."""
    matrix = saved.pairwise.get("churn", {}).get(name)
    if matrix is not None:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim == 2:
            matrix = matrix[:, :, None]
        return pair_summary(matrix)
    entry = saved.shared["sets"][name]
    return (np.asarray(entry.get("pair_churn_mean", np.nan), dtype=np.float64),
            np.asarray(entry.get("pair_churn_std", np.nan), dtype=np.float64))


def report(results: Results, names: Sequence[str]) -> list[str]:
    """Markdown lines of the "Prediction multiplicity" section: per condition, one row per
    set and severity. ``[]`` when no condition in ``names`` has multiplicity results."""
    shown = [(name, saved) for name in names if (saved := _saved(results, name)) is not None]
    if not shown:
        return []
    lines = [
        "## Prediction multiplicity",
        "",
        "Churn is the share of test examples on which two seeds predict different classes "
        "(mean ± std over pairs of seeds); ambiguity the share on which at least one seed "
        "departs from the majority vote (the class most seeds predict, ties to the smallest "
        "class index); vote entropy the entropy (nats) of the seeds' votes on an example, "
        "0 when they all agree; the gain is the majority vote's accuracy minus the mean "
        "single-seed accuracy.",
        "",
    ]
    header = ["set", "severity", "churn (mean ± std over pairs)", "ambiguity",
              "mean vote entropy", "majority-vote accuracy", "mean seed accuracy",
              "majority gain"]
    for name, saved in shown:
        sets = saved.shared["sets"]
        num_seeds = max(int(entry.get("num_seeds", 0)) for entry in sets.values())
        pairs = num_seeds * (num_seeds - 1) // 2
        counts = (f"{num_seeds} seed{'s' * (num_seeds != 1)}, "
                  f"{pairs} pair{'s' * (pairs != 1)} of seeds")
        lines += [f"### {name} ({counts})", ""]
        rows = []
        for set_name, entry in sets.items():
            churn, spread = _churn_curve(saved, set_name)
            columns = [np.asarray(entry[key], dtype=np.float64).reshape(-1) for key in (
                "ambiguity", "mean_vote_entropy", "majority_vote_accuracy",
                "mean_seed_accuracy")]
            churn, spread = churn.reshape(-1), spread.reshape(-1)
            for k, severity in enumerate(entry["severities"]):
                amb, entropy, majority, single = (c[k] for c in columns)
                pair_text = (f"{_fmt(churn[k], 4)} ± {_fmt(spread[k], 4)}"
                             if np.isfinite(churn[k]) else "–")
                gain = majority - single
                rows.append([set_name.replace("_", " "), f"{float(severity):g}", pair_text,
                             _fmt(amb, 4), _fmt(entropy, 4), _fmt(majority, 4),
                             _fmt(single, 4),
                             f"{gain:+.4f}" if np.isfinite(gain) else "–"])
        lines += _table(header, rows)
    return lines


_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf"]


def plots(results: Results, workdir: Any) -> list[tuple[str, str]]:
    """``multiplicity_churn.png``: mean churn over pairs of seeds against severity, one
    panel per shift and one line per condition, with a band of ± the std over pairs; the
    clean churn dotted. ``[]`` when no condition has a shifted set."""
    conditions = [(name, saved) for name in results.conditions
                  if (saved := _saved(results, name)) is not None]
    shifts: list[str] = []
    for _, saved in conditions:
        shifts += [s for s in saved.shared["sets"] if s != CLEAN and s not in shifts]
    if not shifts:
        return []
    columns = min(len(shifts), 3)
    rows = -(-len(shifts) // columns)
    legend_width = 2.8 if len(conditions) > 3 else 0.0  # a legend beside the panels
    fig = Figure(figsize=(4.4 * columns + legend_width, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax, shift in zip(axes, shifts, strict=False):
        for i, (name, saved) in enumerate(conditions):
            sets = saved.shared["sets"]
            color = _COLORS[i % len(_COLORS)]
            if shift in sets:
                severities = np.asarray(sets[shift]["severities"], dtype=np.float64)
                mean, std = _churn_curve(saved, shift)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ax.fill_between(severities, mean - std, mean + std, color=color,
                                    alpha=0.2, lw=0)
                ax.plot(severities, mean, "o-", color=color, lw=2, label=name)
            if CLEAN in sets:
                clean_mean, _ = _churn_curve(saved, CLEAN)
                if np.isfinite(clean_mean).all():
                    ax.axhline(float(clean_mean.reshape(-1)[0]), color=color, ls=":", lw=1)
        ax.set_title(shift.replace("_", " "), fontsize=10)
        ax.set_xlabel("shift severity")
        ax.set_ylabel("churn (share of examples)")
        ax.set_ylim(bottom=0.0)
        ax.grid(alpha=0.3)
    if len(conditions) > 3:  # many conditions: beside the panels, clear of the lines
        fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right center")
    else:
        axes[0].legend(fontsize=8)
    for ax in axes[len(shifts):]:
        ax.set_visible(False)
    fig.suptitle("Churn between seeds under shift\nline = mean over pairs of seeds, "
                 "band = ± std over pairs, dotted = clean test set", fontsize=10)
    path, relative = plot_path(Path(workdir), "multiplicity_churn")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return [("Churn between pairs of seeds against shift severity", relative)]


PRESENTATION = Presentation(report=report, plots=plots)
