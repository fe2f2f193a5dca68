"""``report.md``: a study's tables, verdicts and plots, written from ``results.json`` alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from negres.reporting.sections import presentations_of
from negres.reporting.sources import sources_section
from negres.reporting.tables import (
    ci_label,
    ci_of,
    comparison_header,
    comparison_rows,
    covers_label,
    fmt,
    inconclusive_note,
    interval,
    table,
)
from negres.results import ConditionResults, Results, StudyStatistics
from negres.statistics import calibration
from negres.statistics.claims import (
    CLAIM_RULE,
    Claim,
    estimand_text,
    estimate_interval,
    level_text,
)
from negres.statistics.inference import INTERVAL_NAMES

DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better",
                  "none": "no better direction"}
DIRECTION_MARK = {"higher": "↑", "lower": "↓", "none": "·"}


def claims_section(judged: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """The claims the study tests: per claim (and grid point), the difference it is about
    with its interval, what was claimed, and the verdict."""
    if not judged:
        return []
    lines = ["## Claims", "", f"{settings.get('claim_rule', CLAIM_RULE).capitalize()}.", ""]
    rows = []
    for record in judged:
        claim = Claim.from_config(record["claim"])
        if record["verdict"] == "not measured" or not record.get("points"):
            rows.append([claim.text, "", "", "", f"{record['verdict']} ({record['reason']})",
                         ""])
            continue
        claimed = (f"not {claim.direction} by > {claim.margin:g}" if claim.asserts == "within"
                   else f"{claim.direction} by > {claim.margin:g}" if claim.margin
                   else claim.direction)
        for effect in record["points"]:
            text = claim.text + (" *(premise)*" if claim.role == "premise" else "")
            rows.append([
                text if effect is record["points"][0] else "",
                estimand_text(claim, effect),
                f"{effect['estimate']:.4f} {interval(estimate_interval(claim, effect))}",
                claimed,
                f"**{effect['verdict']}**", str(effect["seeds_to_decide"] or "")])
        if claim.points:
            low, high = record["share_ci"]
            rows.append(["", f"share of {len(claim.points)} grid points where it holds",
                         f"{record['share']:.2f} [{low:.2f}, {high:.2f}]", "every point",
                         f"**{record['verdict']}**", ""])
    level = level_text(max(r["level"] for r in judged))
    return lines + table(["claim", "estimand", f"estimate [{level} interval]", "claimed",
                          "verdict", "seeds to decide"], rows)


def condition_table(summaries: Mapping[str, Mapping[str, Any]], level: float,
                    directions: Mapping[str, str] | None = None) -> list[str]:
    """One row per metric: its direction, mean, interval with its method and what it covers
    (the metric's sampling), IQM, median, spread, seeds used."""
    directions = directions or {}
    rows = []
    for metric, s in summaries.items():
        diverged = f" ({s['num_nonfinite']} non-finite left out)" if s["num_nonfinite"] else ""
        rows.append([
            metric, DIRECTION_MARK[directions.get(metric, "none")], fmt(s["mean"]),
            interval(ci_of(s)), f"{ci_label(s)}; {covers_label(s)}", fmt(s["iqm"]),
            fmt(s["median"]), fmt(s["std"]), fmt(s["min"]), fmt(s["max"]),
            f"{s['n']}{diverged}",
        ])
    header = ["metric", "better", "mean", f"{level:.0%} CI", "interval; covers", "IQM",
              "median", "std", "min", "max", "seeds"]
    return table(header, rows)


def intervals_text(settings: Mapping[str, Any]) -> str:
    """Which interval method the tables use, for means and for differences."""
    level, resamples = settings["level"], settings["num_resamples"]
    mean = settings.get("interval_method")
    if mean is None:  # results.json from before the methods were named
        return (f"Intervals are {level:.0%} BCa bootstrap intervals of the mean over seeds "
                f"({resamples} resamples).")
    difference = settings["difference_interval_method"]
    return (f"Intervals of a mean over seeds are {level:.0%} {INTERVAL_NAMES[mean]} intervals "
            f"({resamples} resamples); of a difference between conditions, "
            f"{INTERVAL_NAMES[difference]}s (Welch's), and of a paired difference "
            f"{INTERVAL_NAMES[mean]} intervals of the seed-by-seed differences."
            + (" Where the studentized bootstrap is undefined (most resamples without "
               "spread: nearly every seed scoring the same), the span of the t and BCa "
               "intervals stands in." if mean == "bootstrap_t" else "")
            + sampling_text(settings))


def sampling_text(settings: Mapping[str, Any]) -> str:
    """How metrics that are not independent per seed get their intervals, and the estimand
    of those over test examples."""
    estimand = settings.get("estimand")
    if estimand is None:  # results.json from before metrics declared their sampling
        return ""
    return (" Metrics that are row means of a seed × seed matrix (agreement, churn) get "
            "the interval of a U-statistic: the seeds' row means stretched so that their "
            "standard error is the unbiased one of the mean over pairs."
            + (" Metrics over the test examples are about the data distribution: their "
               "intervals and comparisons treat the seeds and the test examples both as "
               "samples (variance components, Satterthwaite's t)."
               if estimand == "distribution" else
               " Metrics over the test examples are about this test set: their intervals "
               "treat only the seeds as a sample (`stats.estimand = 'test_set'`)."))


def looks_text(settings: Mapping[str, Any]) -> str:
    """Which look of the sequential design this is, and the level its tests ran at."""
    design = settings.get("sequential")
    if not design:
        return ""
    total = 1.0 - settings["level"]
    looks = design["looks"]
    if design["alpha"] == 0:
        return (f"Verdicts: look {design['look']} of the study ({looks[-1]} seed(s)): one seed "
                "has no spread, so this look tests nothing and spends none of the "
                f"{total:.2g}; every verdict is inconclusive (sequential design, "
                "docs/statistics.md).")
    if design["look"] == 1:
        return (f"Verdicts: look 1 of the study ({looks[0]} seeds); its tests run at level "
                f"{design['alpha']:.3g} of the {total:.2g} in all, the rest kept for adding "
                "seeds with `--extend` without inflating false positives (sequential design, "
                "docs/statistics.md).")
    return (f"Verdicts: look {design['look']} of the study (seeds "
            f"{', then '.join(str(n) for n in looks)}); its tests run at the nominal level "
            f"{design['alpha']:.3g}, which keeps the chance of a false verdict at any look "
            f"so far within {design['alpha_spent']:.3g} of {total:.2g} (sequential design, "
            "docs/statistics.md).")


def _comparisons(analysis: StudyStatistics) -> list[tuple[str, Mapping[str, Any]]]:
    """Every comparison of the study with a label: between conditions, then within them."""
    found = [(f"`{metric}`, `{name}` − `{c.get('reference')}`", c)
             for metric, family in analysis.comparisons.items() for name, c in family.items()]
    for evaluator in analysis.within_conditions.values():
        for condition, families in evaluator.items():
            found += [(f"`{label}` in `{condition}`", c) for family in families.values()
                      for label, c in family.items()]
    return found


def coverage_text(results: Results) -> str:
    """What the calibration says this study's intervals cover, naming those that fall short
    for the shape of their seeds' values."""
    analysis = results.statistics
    settings = analysis.settings
    if "interval_method" not in settings or settings["level"] != 0.95:
        return ""
    short = []
    for condition, summaries in analysis.summaries.items():
        for metric, s in summaries.items():
            if s.get("sampling", "seeds") != "seeds":  # calibrated per kind, not per shape
                continue
            known = calibration.known_coverage(s["ci_method"], s["shape"], s["n"])
            if known and known[0] < 0.935:
                short.append(f"`{metric}` of `{condition}` ({s['shape']}, {known[0]:.2f})")
    for label, c in _comparisons(analysis):
        if c.get("sampling", "seeds") != "seeds":
            continue
        # A paired difference is the mean of one sample; an unpaired one is two samples'.
        known = calibration.known_coverage(c["ci_method"], c["shape"], min(c["n_x"], c["n_y"]),
                                           kind="mean" if c["paired"] else "difference")
        if known and known[0] < 0.935:
            short.append(f"{label} ({c['shape']}, {known[0]:.2f})")
    symmetric = calibration.known_coverage(
        settings["interval_method"], "symmetric",
        int(results.baseline_results.num_seeds))
    text = (f"In negres's calibration (docs/statistics.md) intervals of a mean covered "
            f"{symmetric[0]:.3f} of roughly symmetric seeds at {symmetric[1]} seeds"
            if symmetric else "")
    if short:
        listed = "; ".join(short[:8]) + (f"; and {len(short) - 8} more" if len(short) > 8
                                          else "")
        text += (("; " if text else "In negres's calibration ") + "seeds shaped like the "
                 "following covered less than 95% (calibrated coverage in brackets), so read "
                 f"their intervals as narrower than they look: {listed}")
    return text + "." if text else ""


def build_report(results: Results, plots: Sequence[tuple[str, str]]) -> str:
    """The whole ``report.md`` text.

    Args:
      results: the study's results (with the seeds the statistics use).
      plots: ``(caption, relative path)`` of every plot written.
    """
    analysis = results.statistics
    settings = analysis.settings
    level = settings["level"]
    conditions = results.conditions
    baseline = results.baseline
    config = results.config
    names = list(conditions)
    title = config.get("title") or f"negres study: {results.task.name}"
    lines = [f"# {title}", ""]
    finding = results.finding
    if finding:
        lines += [f"**Finding.** {finding}", ""]
    lines += [
        f"Task `{results.task.name}` ({results.task.num_train} training, "
        f"{results.task.num_test} test examples); conditions: "
        + ", ".join(f"`{n}` ({conditions[n].num_seeds} seeds)" for n in names)
        + f"; baseline `{baseline}`. {config['train']['steps']} steps per seed; "
        f"wall time {results.wall_time_s:.1f} s on {results.device['platform']} "
        f"({results.device['kind']}).",
        "",
        f"{intervals_text(settings)} {coverage_text(results)}",
        "",
        f"{looks_text(settings)} Verdict rule: {settings['verdict_rule']}".lstrip(),
        "",
    ]
    notes = analysis.notes
    if notes:
        lines += ["**What these seeds cannot tell.** " + " ".join(
            note.rstrip(".") + "." for note in notes), ""]
    lines += training_plan_lines(conditions)
    lines += claims_section(analysis.claims, settings)
    presentations = presentations_of(results)
    excluded = analysis.excluded_diverged_seeds
    lines += ["## Results per condition", ""]
    for name in names:
        lines += [f"### `{name}`", ""]
        overrides = conditions[name].overrides
        if overrides:
            lines += ["Overrides: `" + json.dumps(overrides) + "`", ""]
        lines += diverged_lines(conditions[name], name, excluded)
        lines += condition_table(analysis.summaries[name], level, analysis.directions)
        for presentation in presentations:
            if presentation.condition_report is not None:
                lines += presentation.condition_report(conditions[name])
    comparisons = analysis.comparisons
    if comparisons:
        references = {c.get("reference", baseline) for f in comparisons.values()
                      for c in f.values()}
        against = (f"minus `{baseline}`" if references == {baseline}
                   else "minus its reference (`condition − reference`)")
        lines += ["## Comparisons", "",
                  f"Each condition {against}, seeds "
                  + ("paired" if settings["paired_conditions"] else "unpaired")
                  + f"; {settings['multiple_comparisons']}. A metric's direction is declared "
                  "by its evaluator; one without a direction gets *higher* or *lower*, never "
                  "improved or worse.", ""]
        every = []
        directions = analysis.directions
        for metric, family in comparisons.items():
            lines += [f"**{metric}** ({DIRECTION_TEXT[directions.get(metric, 'none')]})", ""]
            rows = []
            for n, c in family.items():
                label = n if references == {baseline} else f"{n} − {c.get('reference', baseline)}"
                rows.append(comparison_rows(label, c))
                if "unpaired" in c:  # no seed pairs left: the unpaired comparison beside it
                    rows.append(comparison_rows(f"{label} (unpaired)", c["unpaired"]))
            lines += table(comparison_header(list(family.values())), rows)
            every += list(family.values())
        lines += inconclusive_note(every)
    lines += sources_section(results)
    for presentation in presentations:
        if presentation.report is not None:
            lines += presentation.report(results, names)
    if plots:
        lines += ["## Plots", ""]
        for caption, path in plots:
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    lines += ["## Config", "", "The resolved config of this study (`config.json`):", "",
              "```json", json.dumps(config, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def training_plan_lines(conditions: Mapping[str, ConditionResults]) -> list[str]:
    """How each compiled call laid out its seeds, and where a run resumed."""
    plans = {}
    for name, condition in conditions.items():
        plan = condition.training_plan
        if plan:
            plans.setdefault(json.dumps(plan, sort_keys=True), (plan, []))[1].append(name)
    lines = []
    for plan, names in plans.values():
        layout = ("vmap" if plan["layout"] == "vmap"
                  else f"lax.map, {plan['seeds_per_map_step']} seed(s) vmapped per step")
        resumed = plan.get("resumed_from_step")
        looks = plan.get("seeds_per_look")
        lines.append(
            f"Training of {', '.join(f'`{n}`' for n in names)}: "
            + (f"one call per look of the study ({' + '.join(map(str, looks))} seeds), the "
               "last with " if looks else "")
            + f"layout {layout}, "
            f"{plan['num_chunks']} chunk(s) of {plan['seeds_per_chunk']} seeds on "
            f"{plan['num_devices']} device(s)"
            + (f" ({plan['devices']})" if plan.get("devices") else "")
            + (f", resumed from the checkpoint at step {resumed}" if resumed is not None else "")
            + f" ({plan['reason']}).")
    return [*lines, ""] if lines else []


def diverged_lines(condition: ConditionResults, name: str,
                   excluded: Mapping[str, Any]) -> list[str]:
    """Which seeds diverged, when, and which seeds the statistics below leave out and why."""
    diverged = condition.diverged
    lines = []
    own = int(diverged.count)
    if own:
        pairs = ", ".join(f"seed {i} at step {s}" for i, s in
                          zip(diverged.seed_indices, diverged.steps, strict=True))
        lines.append(f"**{own} of {condition.num_seeds} seeds diverged** (loss or "
                     f"parameters NaN or infinite: {pairs}). They were frozen at their last "
                     "finite state and are left out of every statistic below.")
    left_out = int((excluded.get("count") or {}).get(name, own))
    if left_out > own:
        others = sorted(set((excluded.get("seed_indices") or {}).get(name, []))
                        - {int(i) for i in diverged.seed_indices})
        lines.append(f"**{left_out - own} more of its seeds are left out** of every statistic "
                     f"below (seeds {', '.join(map(str, others))}): they diverged in another "
                     "condition, and paired conditions compare the same seed indices.")
    if left_out:
        lines.append(f"The statistics below use {condition.num_seeds - left_out} of "
                     f"{condition.num_seeds} seeds.")
    return [" ".join(lines), ""] if lines else []
