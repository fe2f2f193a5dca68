"""``report.md``: a study's tables, verdicts and plots, written from ``results.json`` alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from negres.statistics import inference as stats


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if not np.isfinite(value):
        return "nan" if np.isnan(value) else ("∞" if value > 0 else "-∞")
    return f"{value:.{digits}f}"


def _interval(ci: Sequence[float], digits: int = 4) -> str:
    return f"[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def _with_range(mean: float, low: float, high: float, range_digits: int = 2) -> str:
    """``mean (low–high)``: a mean over seeds (3 digits) with the seeds' range."""
    return f"{_fmt(mean, 3)} ({_fmt(low, range_digits)}–{_fmt(high, range_digits)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def condition_table(summaries: Mapping[str, Mapping[str, Any]], level: float) -> list[str]:
    """One row per metric: mean, interval, IQM, median, spread, seeds used."""
    rows = []
    for metric, s in summaries.items():
        diverged = f" ({s['num_nonfinite']} non-finite left out)" if s["num_nonfinite"] else ""
        rows.append([
            metric, _fmt(s["mean"]), _interval(s["ci_bca"]), _fmt(s["iqm"]), _fmt(s["median"]),
            _fmt(s["std"]), _fmt(s["min"]), _fmt(s["max"]), f"{s['n']}{diverged}",
        ])
    header = ["metric", "mean", f"{level:.0%} CI (BCa)", "IQM", "median", "std", "min", "max",
              "seeds"]
    return _table(header, rows)


def comparison_rows(name: str, c: Mapping[str, Any]) -> list[str]:
    needed = c.get("seeds_needed_adjusted", c["seeds_needed"])
    return [
        name, _fmt(c["difference"]), _interval(c["ci_bca"]), _fmt(c["p_value_t"], 3),
        _fmt(c["p_value_permutation"], 3), _fmt(c["p_value_adjusted"], 3),
        _fmt(c["prob_improvement"], 2), f"{_fmt(c['effect_size'], 2)} ({c['effect_size_name']})",
        f"**{c['verdict']}**", _fmt(needed) if c["verdict"] == "inconclusive" else "–",
    ]


COMPARISON_HEADER = ["condition", "difference", "CI (BCa)", "p (Welch/paired t)", "p (perm.)",
                     "p (Holm)", "P(improve)", "effect size", "verdict", "seeds needed"]


def inconclusive_note(comparisons: Sequence[Mapping[str, Any]], power: float = 0.8) -> list[str]:
    """The seeds a study would need to resolve its inconclusive differences."""
    needed = [c.get("seeds_needed_adjusted", c["seeds_needed"]) for c in comparisons
              if c["verdict"] == "inconclusive"]
    finite = [n for n in needed if n is not None]
    if not needed:
        return []
    text = (f"{len(needed)} of {len(comparisons)} differences are **inconclusive** at this "
            f"number of seeds.")
    if finite:
        text += (f" Resolving a difference of the observed size at {power:.0%} power would "
                 f"need about {min(finite)} to {max(finite)} seeds per condition "
                 "(normal approximation, Holm-corrected level where several conditions are "
                 "compared); a larger study may still find no difference.")
    return [text, ""]


def robustness_table(condition: Mapping[str, Any], metric: str) -> list[str]:
    lines = []
    for shift, curves in condition.get("robustness", {}).items():
        values = np.asarray(curves[metric], dtype=float)
        rows = []
        for k, severity in enumerate(curves["severities"]):
            column = values[:, k]
            ci = stats.bootstrap_mean_ci(column, num_resamples=2000)
            rows.append([_fmt(severity, 3), _fmt(float(np.nanmean(column))),
                         _interval([float(ci["bca_low"]), float(ci["bca_high"])]),
                         _fmt(float(np.nanmin(column))), _fmt(float(np.nanmax(column)))])
        lines += [f"*{shift}* ({metric} by severity)", ""]
        lines += _table(["severity", "mean", "95% CI (BCa)", "min seed", "max seed"], rows)
    return lines


def agreement_table(condition: Mapping[str, Any]) -> list[str]:
    summary = condition.get("agreement_summary", {})
    if not summary:
        return []
    measures = list(next(iter(summary.values())))
    rows = [[method] + [f"{_fmt(v[m]['mean'], 3)} ± {_fmt(v[m]['std'], 3)}" for m in measures]
            for method, v in summary.items()]
    return _table(["method", *measures], rows)


def randomization_table(condition: Mapping[str, Any]) -> list[str]:
    checks = condition.get("randomization", {})
    if not checks:
        return []
    rows = []
    for method, check in checks.items():
        values = np.asarray(check["spearman"], dtype=float)
        rows.append([method] + [f"{_fmt(float(np.nanmean(values[:, k])), 3)}"
                                for k in range(values.shape[1])])
    layers = next(iter(checks.values()))["layers"]
    header = ["method"] + [f"top {k + 1} random (+{layer})" for k, layer in enumerate(layers)]
    return _table(header, rows)


def method_comparison_lines(analysis: Mapping[str, Any]) -> list[str]:
    """Attribution methods against each other within each condition (paired by seed)."""
    families = analysis.get("method_comparisons") or {}
    if not families:
        return []
    lines = ["## Attribution methods compared", "",
             "Each method minus the condition's first method on the same trained seeds "
             "(paired), Holm across the methods compared on each measure.", ""]
    for condition, measures in families.items():
        lines += [f"### `{condition}`", ""]
        for measure, family in measures.items():
            lines += [f"**{measure}**", ""]
            lines += _table(["method − reference", *COMPARISON_HEADER[1:]], [
                comparison_rows(f"{m} − {c['reference']}", c) for m, c in family.items()])
    return lines


def truth_lines(condition: Mapping[str, Any]) -> list[str]:
    """Attributions per feature against the true contributions, and learned interactions."""
    truth = condition.get("truth") or {}
    if not truth.get("methods") and not truth.get("interactions"):
        return []
    features = truth["features"]
    lines = ["Mean |attribution| per feature (mean over seeds, with the seeds' range) against "
             "the true contribution's mean |phi|, and the across-seed standard deviation of "
             "each example's attribution (mean over examples):", ""]
    rows = [["truth", *[_fmt(float(v), 3) for v in truth["true_mean_abs"]]]]
    for method, values in truth.get("methods", {}).items():
        mean_abs = np.asarray(values["mean_abs"], dtype=float)
        rows.append([method, *[_with_range(float(mean_abs[:, d].mean()),
                                           float(mean_abs[:, d].min()),
                                           float(mean_abs[:, d].max()))
                               for d in range(len(features))]])
        rows.append([f"{method}: seed std", *[_fmt(float(v), 3) for v in values["seed_std"]]])
    lines += _table(["", *features], rows)
    interactions = truth.get("interactions", {})
    if interactions:
        rows = []
        for name, t in interactions.items():
            learned = np.asarray(t["learned_shapley_mean_abs"], dtype=float)
            rows.append([name, _fmt(t["mixed_partial"], 3), _fmt(t["shapley_mean_abs"], 3),
                         _with_range(float(learned.mean()), float(learned.min()),
                                     float(learned.max()), range_digits=3)])
        lines += ["Interactions: the true mixed partial derivative and mean |Shapley "
                  "interaction| against the models' (the per-seed mixed partials are in the "
                  "tables above, `interaction_*`):", ""]
        lines += _table(["pair", "true d²f/dxᵢdxⱼ", "true mean |I|",
                         "learned mean |I| (seed range)"], rows)
    return lines


def confusion_lines(condition: Mapping[str, Any], max_classes: int = 4) -> list[str]:
    """Row-normalised confusion matrices (mean over seeds) for tasks with few classes."""
    lines = []
    for name, matrices in (condition.get("confusion") or {}).items():
        counts = np.asarray(matrices, dtype=float)  # (S, C, C)
        if counts.ndim != 3 or counts.shape[-1] > max_classes:
            continue
        rates = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)
        mean, low, high = rates.mean(0), rates.min(0), rates.max(0)
        classes = range(counts.shape[-1])
        rows = [[f"true {i}", *[_with_range(mean[i, j], low[i, j], high[i, j]) for j in classes]]
                for i in classes]
        label = "clean test set" if name == "clean" else f"{name}, largest severity"
        lines += [f"*Confusion, {label}* (share of each true class predicted as each class; "
                  "mean over seeds, seed range):", ""]
        lines += _table(["", *[f"pred {j}" for j in classes]], rows)
    return lines


def build_report(results: Mapping[str, Any], plots: Sequence[tuple[str, str]]) -> str:
    """The whole ``report.md`` text.

    Args:
      results: the contents of ``results.json``.
      plots: ``(caption, relative path)`` of every plot written.
    """
    analysis = results["statistics"]
    settings = analysis["settings"]
    level = settings["level"]
    conditions = results["conditions"]
    baseline = settings["baseline"]
    config = results["config"]
    names = list(conditions)
    score = "mse" if results["task"]["kind"] == "regression" else "accuracy"
    title = config.get("title") or f"negres study: {results['task']['name']}"
    lines = [f"# {title}", ""]
    finding = results.get("finding")
    if finding:
        lines += [f"**Finding.** {finding}", ""]
    lines += [
        f"Task `{results['task']['name']}` ({results['task']['num_train']} training, "
        f"{results['task']['num_test']} test examples); conditions: "
        + ", ".join(f"`{n}` ({conditions[n]['num_seeds']} seeds)" for n in names)
        + f"; baseline `{baseline}`. {config['train']['steps']} steps per seed; "
        f"wall time {results['wall_time_s']:.1f} s on {results['device']['platform']} "
        f"({results['device']['kind']}).",
        "",
        f"Intervals are {level:.0%} bootstrap intervals of the mean over seeds "
        f"({settings['num_resamples']} resamples). Verdict rule: {settings['verdict_rule']}",
        "",
    ]
    lines += training_plan_lines(conditions)
    lines += ["## Results per condition", ""]
    for name in names:
        lines += [f"### `{name}`", ""]
        overrides = conditions[name].get("overrides") or {}
        if overrides:
            lines += ["Overrides: `" + json.dumps(overrides) + "`", ""]
        lines += diverged_lines(conditions[name])
        subsets = conditions[name].get("subsets") or {}
        if subsets:
            lines += ["Test subsets (`subset_*` metrics): " + ", ".join(
                f"`{s}` ({count} examples)" for s, count in subsets.items()), ""]
        lines += condition_table(analysis["summaries"][name], level)
        lines += truth_lines(conditions[name])
        lines += confusion_lines(conditions[name])
    comparisons = analysis["comparisons"]
    if comparisons:
        references = {c.get("reference", baseline) for f in comparisons.values()
                      for c in f.values()}
        against = (f"minus `{baseline}`" if references == {baseline}
                   else "minus its reference (`condition − reference`)")
        lines += ["## Comparisons", "",
                  f"Each condition {against}, seeds "
                  + ("paired" if settings["paired_conditions"] else "unpaired")
                  + f"; {settings['multiple_comparisons']}.", ""]
        every = []
        for metric, family in comparisons.items():
            lines += [f"**{metric}**", ""]
            lines += _table(COMPARISON_HEADER, [
                comparison_rows(n if references == {baseline}
                                else f"{n} − {c.get('reference', baseline)}", c)
                for n, c in family.items()])
            every += list(family.values())
        lines += inconclusive_note(every)
    shift_effects = analysis.get("shift_effects", {})
    if shift_effects:
        lines += ["## Robustness under shift", "",
                  f"Shifted minus clean test {score}, the same seeds evaluated twice (paired), "
                  "Holm across the shifted sets of each condition.", ""]
        for name in names:
            if name not in shift_effects:
                continue
            lines += [f"### `{name}`", ""]
            lines += robustness_table(conditions[name], score)
            family = shift_effects[name]
            header = ["shift", *COMPARISON_HEADER[1:]]
            lines += _table(header, [comparison_rows(s, c) for s, c in family.items()])
    if any(conditions[n].get("agreement_summary") for n in names):
        top_k = next((conditions[n].get("agreement_top_k") for n in names
                      if conditions[n].get("agreement_top_k")), None)
        lines += ["## Saliency across seeds", "",
                  "Cross-seed agreement of attributions (mean ± std over pairs of seeds, "
                  "averaged over examples; 1 is perfect agreement, 0 unrelated"
                  + (f"; top_k uses k = {top_k}" if top_k else "") + ").", ""]
        for name in names:
            table = agreement_table(conditions[name])
            if table:
                lines += [f"### `{name}`", ""] + table
                checks = randomization_table(conditions[name])
                if checks:
                    lines += ["Parameter-randomisation sanity check (Spearman rank correlation "
                              "of |attribution| between the trained model and the same model "
                              "with its top layers re-initialised; a method that passes drops "
                              "towards 0):", ""] + checks
    lines += method_comparison_lines(analysis)
    if plots:
        lines += ["## Plots", ""]
        for caption, path in plots:
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    lines += ["## Config", "", "The resolved config of this study (`config.json`):", "",
              "```json", json.dumps(config, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def training_plan_lines(conditions: dict[str, Any]) -> list[str]:
    """How each compiled call laid out its seeds, and where a run resumed."""
    plans = {}
    for name, condition in conditions.items():
        plan = condition.get("training_plan")
        if plan:
            plans.setdefault(json.dumps(plan, sort_keys=True), (plan, []))[1].append(name)
    lines = []
    for plan, names in plans.values():
        layout = ("vmap" if plan["layout"] == "vmap"
                  else f"lax.map, {plan['seeds_per_map_step']} seed(s) vmapped per step")
        resumed = plan.get("resumed_from_step")
        lines.append(
            f"Training of {', '.join(f'`{n}`' for n in names)}: layout {layout}, "
            f"{plan['num_chunks']} chunk(s) of {plan['seeds_per_chunk']} seeds on "
            f"{plan['num_devices']} device(s)"
            + (f", resumed from the checkpoint at step {resumed}" if resumed is not None else "")
            + f" ({plan['reason']}).")
    return [*lines, ""] if lines else []


def diverged_lines(condition: dict[str, Any]) -> list[str]:
    """Which seeds diverged, when, and that the statistics leave them out."""
    diverged = condition.get("diverged") or {}
    if not diverged.get("count"):
        return []
    pairs = ", ".join(f"seed {i} at step {s}" for i, s in
                      zip(diverged["seed_indices"], diverged["steps"], strict=True))
    return [f"**{diverged['count']} of {condition['num_seeds']} seeds diverged** (loss or "
            f"parameters NaN or infinite: {pairs}). They were frozen at their last finite "
            "state and are left out of every statistic below.", ""]
