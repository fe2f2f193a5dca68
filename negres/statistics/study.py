"""Statistics of a whole study: every metric of every condition, and every comparison.

Per condition and per-seed metric: :func:`negres.stats.describe`. Every condition against
the baseline, per metric: :func:`negres.stats.compare`, Holm-adjusted across the
conditions compared on that metric. Within each condition, shifted against clean
accuracy (the same seeds evaluated twice, so paired).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from negres.statistics import inference as stats

# Metric names whose value should go down; every other metric should go up.
_LOWER_IS_BETTER_MARKERS = (
    "loss", "mse", "ece", "gap", "sensitivity", "shortcut_share", "wrong_reasons", "randomization",
    "completeness", "error",
)
# Per-seed measures of an attribution method, named ``<method>_<measure>``, on which the
# methods of one condition are compared with each other.
METHOD_MEASURES = (
    "agreement_spearman_abs", "agreement_top_k", "max_sensitivity", "randomization_spearman",
    "truth_error", "sparsity", "shortcut_share",
)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better, read from its name.

    Randomisation correlations are lower-is-better: a saliency method that passes the
    sanity check looks different once the weights are random.
    """
    return not any(marker in metric for marker in _LOWER_IS_BETTER_MARKERS)


def without_diverged(
    conditions: Mapping[str, Mapping[str, Any]], *, paired: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every condition's per-seed numbers less the seeds whose training diverged.

    A diverged seed was frozen at its last finite state: its numbers describe an
    unfinished model, so statistics leave it out and say how many they left out. With
    ``paired`` comparisons, a seed index that diverged in any condition leaves every
    condition, so that the remaining seeds still pair up.

    Args:
      conditions: name -> a condition's results with ``seed_indices`` ``(S,)``,
        ``diverged_at_step`` ``(S,)`` (-1: finite), ``metrics`` name -> ``(S,)`` and
        optionally ``robustness`` shift -> ``{"severities": (K,), metric: (S, K)}``.
      paired: whether conditions are compared seed by seed.

    Returns:
      ``(conditions with those rows removed, {"count": {name: n}, "seed_indices": {name:
      [...]}, "rule": ...})``.
    """
    diverged = {
        name: {int(i) for i, step in zip(result["seed_indices"],
                                          result.get("diverged_at_step", ()), strict=False)
               if step >= 0}
        for name, result in conditions.items()
    }
    everywhere = set().union(*diverged.values()) if paired else set()
    filtered, counts, indices = {}, {}, {}
    for name, result in conditions.items():
        drop = diverged[name] | everywhere
        keep = np.asarray([int(i) not in drop for i in result["seed_indices"]])
        counts[name] = int((~keep).sum())
        indices[name] = sorted(drop & {int(i) for i in result["seed_indices"]})
        if keep.all():
            filtered[name] = dict(result)
            continue
        filtered[name] = _kept_rows(result, keep)
    rule = ("seeds whose loss or parameters became NaN or infinite are left out of every "
            "statistic" + (" (in every condition, as conditions are paired)" if paired else ""))
    return filtered, {"count": counts, "seed_indices": indices, "rule": rule}


def _kept_rows(result: Mapping[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """``result`` with only the seeds ``keep`` in every per-seed array its statistics and
    tables use; cross-seed agreement recomputed over the kept seeds (a seed's agreement
    averages its agreement with the others, so a diverged seed would weigh on every kept
    one). Learning curves keep every seed: they show where the diverged ones stopped."""
    rows = dict(result)
    rows["kept_rows"] = keep  # (S,) which rows of the saved per-seed files remain
    rows["seed_indices"] = np.asarray(result["seed_indices"])[keep]
    rows["metrics"] = {m: np.asarray(v)[keep] for m, v in result["metrics"].items()}
    rows["robustness"] = {
        shift: {k: (v if k == "severities" else np.asarray(v)[keep]) for k, v in curves.items()}
        for shift, curves in (result.get("robustness") or {}).items()}
    rows["confusion"] = {k: np.asarray(v)[keep] for k, v in (result.get("confusion") or {}).items()}
    rows["randomization"] = {
        method: {**check, "spearman": np.asarray(check["spearman"])[keep]}
        for method, check in (result.get("randomization") or {}).items()}
    rows["agreement"], rows["agreement_summary"] = {}, {}
    for method, matrices in (result.get("agreement") or {}).items():
        rows["agreement"][method] = {k: np.asarray(m, float)[np.ix_(keep, keep)]
                                     for k, m in matrices.items()}
        rows["agreement_summary"][method] = {}
        for measure, matrix in rows["agreement"][method].items():
            off_diagonal = np.where(~np.eye(len(matrix), dtype=bool), matrix, np.nan)
            with warnings.catch_warnings():  # fewer than two kept seeds: NaN, as it should be
                warnings.simplefilter("ignore", RuntimeWarning)
                per_seed = np.nanmean(off_diagonal, axis=1) if len(matrix) else np.zeros(0)
                rows["agreement_summary"][method][measure] = {
                    "mean": float(np.nanmean(off_diagonal)) if len(matrix) else float("nan"),
                    "std": float(np.nanstd(off_diagonal)) if len(matrix) else float("nan")}
            name = f"{method}_agreement_{measure}"
            if name in rows["metrics"]:
                rows["metrics"][name] = per_seed
    if not keep.any():  # no seed left: no robustness, agreement or confusion to show
        for key in ("robustness", "confusion", "randomization", "agreement",
                    "agreement_summary"):
            rows[key] = {}
    return rows


def analyze(
    conditions: Mapping[str, Mapping[str, Any]],
    baseline: str,
    *,
    level: float = 0.95,
    num_resamples: int = 2000,
    num_permutations: int = 2000,
    paired: bool = False,
    robustness_metric: str = "accuracy",
    seed: int = 0,
    references: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Summaries, comparisons with verdicts, and shifted-vs-clean comparisons of a study.

    Args:
      conditions: name -> a condition's results, with ``metrics`` (name -> ``(S,)``) and
        optionally ``robustness`` (shift -> ``{"severities": (K,), metric: (S, K)}``).
      baseline: the condition every other one is compared with.
      level: confidence level of intervals and tests.
      num_resamples: bootstrap resamples.
      num_permutations: permutations of the permutation test.
      paired: compare conditions seed by seed (seed ``i`` of each condition shares its
        seed index, so its batch order, but not its initialisation when models differ).
      robustness_metric: which robustness metric to compare clean against shifted.
      seed: seeds the resampling.
      references: condition -> the condition it is compared with (``None``: none); by
        default every condition is compared with ``baseline``.

    Returns:
      ``{"summaries": {condition: {metric: describe}}, "comparisons": {metric: {condition:
      compare}}, "shift_effects": {condition: {shift@severity: compare}}, "settings": ...}``.
    """
    common = dict(level=level, num_resamples=num_resamples)
    summaries = {
        name: {m: stats.describe(v, seed=seed, **common) for m, v in result["metrics"].items()}
        for name, result in conditions.items()
    }
    if references is None:
        references = {name: (None if name == baseline else baseline) for name in conditions}
    comparisons: dict[str, dict[str, Any]] = {}
    metric_names = list(dict.fromkeys(m for r in conditions.values() for m in r["metrics"]))
    for metric in metric_names:
        family = {}
        for name, result in conditions.items():
            reference = references.get(name)
            if reference is None or metric not in result["metrics"]:
                continue
            if metric not in conditions[reference]["metrics"]:
                continue
            x = np.asarray(result["metrics"][metric])
            y = np.asarray(conditions[reference]["metrics"][metric])
            family[name] = stats.compare(
                x, y, paired=paired and x.size == y.size, higher_is_better=higher_is_better(metric),
                num_permutations=num_permutations, seed=seed, **common,
            ) | {"reference": reference}
        if family:
            comparisons[metric] = stats.holm_adjust(family) if len(family) > 1 else family
    shift_effects = {
        name: _shift_effects(result, robustness_metric, num_permutations, seed, common)
        for name, result in conditions.items()
        if result.get("robustness")
    }
    method_comparisons = {
        name: family
        for name, result in conditions.items()
        if (family := _method_comparisons(result, num_permutations, seed, common))
    }
    return {
        "summaries": summaries,
        "comparisons": comparisons,
        "shift_effects": shift_effects,
        "method_comparisons": method_comparisons,
        "settings": {
            "baseline": baseline, "references": dict(references), "level": level,
            "num_resamples": num_resamples,
            "num_permutations": num_permutations, "paired_conditions": paired,
            "verdict_rule": stats.VERDICT_RULE, "multiple_comparisons": "Holm across the "
            "conditions compared on each metric",
        },
    }


def _shift_effects(
    result: Mapping[str, Any], metric: str, num_permutations: int, seed: int,
    common: Mapping[str, Any],
) -> dict[str, Any]:
    """Each shift at each non-zero severity against the clean test set, paired by seed."""
    clean_name = "test_mse" if metric == "mse" else f"test_{metric}"
    clean = np.asarray(result["metrics"][clean_name])
    family = {}
    for shift, curves in result["robustness"].items():
        values = np.asarray(curves[metric])
        for k, severity in enumerate(curves["severities"]):
            if severity == 0:
                continue
            family[f"{shift}@{severity:g}"] = stats.compare(
                values[:, k], clean, paired=True, higher_is_better=higher_is_better(metric),
                num_permutations=num_permutations, seed=seed, **common,
            )
    return stats.holm_adjust(family) if len(family) > 1 else family


def _method_comparisons(
    result: Mapping[str, Any], num_permutations: int, seed: int, common: Mapping[str, Any]
) -> dict[str, Any]:
    """Each attribution method against the condition's first, per measure, paired by seed.

    The methods explain the same trained seeds, so seed ``i``'s numbers are a pair; Holm
    across the methods compared on each measure.
    """
    methods = list(result.get("attribution_methods") or ())
    if len(methods) < 2:
        return {}
    reference, metrics = methods[0], result["metrics"]
    out = {}
    for measure in METHOD_MEASURES:
        if f"{reference}_{measure}" not in metrics:
            continue
        y = np.asarray(metrics[f"{reference}_{measure}"], dtype=float)
        family = {
            method: stats.compare(
                np.asarray(metrics[f"{method}_{measure}"], dtype=float), y, paired=True,
                higher_is_better=higher_is_better(measure), num_permutations=num_permutations,
                seed=seed, **common,
            ) | {"reference": reference}
            for method in methods[1:] if f"{method}_{measure}" in metrics
        }
        if family:
            out[measure] = stats.holm_adjust(family) if len(family) > 1 else family
    return out


def headline(analysis: Mapping[str, Any], metric: str, conditions: Sequence[str]) -> str:
    """One sentence on ``metric``: each condition's verdict against the baseline."""
    baseline = analysis["settings"]["baseline"]
    summary = analysis["summaries"][baseline].get(metric)
    if summary is None:
        return ""
    text = f"{baseline}: {metric} {summary['mean']:.4f} over {summary['n']} seeds"
    parts = []
    for name in conditions:
        c = analysis["comparisons"].get(metric, {}).get(name)
        if c is not None:
            parts.append(f"{name} {c['verdict']} ({c['difference']:+.4f})")
    return text + ("; against it: " + ", ".join(parts) if parts else "") + "."
