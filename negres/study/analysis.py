"""The study's statistics, with what too few seeds cannot tell said in them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from negres.results import ConditionResults, StudyStatistics
from negres.statistics.sources import analyze_sources
from negres.statistics.study import analyze, without_diverged
from negres.study.prepare import Study


def analyze_and_explain(condition_results: Mapping[str, ConditionResults],
                        finite_results: Mapping[str, ConditionResults],
                        baseline: str, **settings: Any) -> StudyStatistics:
    """:func:`negres.statistics.study.analyze` of ``finite_results`` (the conditions less the
    seeds the statistics leave out), then what those seeds cannot tell, said in it:

    - every summary of fewer than 2 seeds has no interval, and says why (``reason``);
    - every comparison left with fewer than 2 seeds (or pairs) is inconclusive, and says why
      (``reason``);
    - a paired comparison left with fewer than 2 pairs by seeds that diverged (in one
      condition, they leave every paired condition) gets beside it the unpaired comparison
      of each condition's own finite seeds (``unpaired``);
    - ``notes``: each reason once, a sentence for the report.

    Args:
      condition_results: name -> every seed's results (diverged ones too).
      finite_results: the same less the seeds left out (``without_diverged``).
      baseline, settings: the arguments of ``analyze``.
    """
    analysis = analyze(finite_results, baseline, **settings)
    paired = bool(settings.get("paired"))
    notes: list[str] = []
    kept = {name: len(r.seed_indices) for name, r in finite_results.items()}
    for name, summaries in analysis.summaries.items():
        if kept[name] < 2:
            why = _too_few_seeds(name, condition_results[name], kept[name], paired)
            for summary in summaries.values():
                summary["reason"] = why
            notes.append(why)
    unpaired = None
    for metric, family in analysis.comparisons.items():
        for name, c in family.items():
            if min(c["n_x"], c["n_y"]) >= 2:
                continue
            reference = c.get("reference", baseline)
            seeds = min(int(condition_results[n].num_seeds) for n in (name, reference))
            if not (paired and seeds >= 2):  # too few seeds, not too few left to pair
                c["reason"] = (f"{c['n_x']} seed(s) of `{name}` and {c['n_y']} of "
                               f"`{reference}`: a comparison needs at least 2 in each (one "
                               "seed has no spread), so it is inconclusive")
                continue
            if unpaired is None:
                unpaired = analyze(without_diverged(condition_results, paired=False)[0],
                                   baseline, **{**settings, "paired": False}).comparisons
            beside = (unpaired.get(metric) or {}).get(name)
            c["reason"] = _no_pairs(name, reference, condition_results, kept)
            if beside is not None and min(beside["n_x"], beside["n_y"]) >= 2:
                c["unpaired"] = beside
                c["reason"] += ("; the unpaired comparison of each condition's own finite "
                                "seeds stands beside it")
            notes.append(c["reason"])
    for evaluator in analysis.within_conditions.values():
        for name, families in evaluator.items():
            for family in families.values():
                for c in family.values():
                    if min(c["n_x"], c["n_y"]) < 2:
                        c["reason"] = _too_few_seeds(name, condition_results[name], kept[name],
                                                     paired)
    analysis.notes = list(dict.fromkeys(notes))
    return analysis


def _too_few_seeds(name: str, result: ConditionResults, kept: int, paired: bool) -> str:
    """Why condition ``name``'s statistics have no interval: it has fewer than 2 seeds."""
    total = int(result.num_seeds)
    if total < 2:
        return (f"`{name}` has {total} seed: one seed has no spread across seeds, so its "
                "statistics have no interval and every comparison or test of it is "
                "inconclusive; add seeds with --extend to learn how much it varies")
    own = int(result.diverged.count)
    others = (" and diverged in another condition (paired conditions compare the same seed "
              "indices)" if paired and total - kept > own else "")
    return (f"`{name}` has {kept} of its {total} seeds left for statistics (the others "
            f"diverged{others}), too few for an interval: its statistics are inconclusive")


def _no_pairs(name: str, reference: str, condition_results: Mapping[str, ConditionResults],
              kept: dict[str, int]) -> str:
    """Why the paired comparison of ``name`` with ``reference`` has fewer than 2 pairs."""
    diverged = {n: r.diverged.seed_indices for n, r in condition_results.items()
                if r.diverged.count}

    def on(n: str, seeds: list[int]) -> str:
        count = ("every one of its" if len(seeds) == int(condition_results[n].num_seeds)
                 else str(len(seeds)))
        return (f"`{n}` on {count} {'seed' if len(seeds) == 1 else 'seeds'} "
                f"({', '.join(map(str, seeds))})")

    where = "; ".join(on(n, list(s)) for n, s in diverged.items())
    return (f"`{name}` − `{reference}` has {min(kept[name], kept[reference])} paired seeds: "
            "paired conditions leave out every seed index that diverged in any condition, "
            f"and seeds diverged in {where}")


def analyze_study(study: Study, condition_results: Mapping[str, ConditionResults],
                  looks: list[dict[str, int]]) -> StudyStatistics:
    """The study's statistics from the config's ``stats`` section: seeds that diverged left
    out (:func:`~negres.statistics.study.without_diverged`), conditions compared at the
    study's current look, and how much of each metric's spread each source of randomness
    accounts for when the config declares a design (``randomness``)."""
    config, baseline = study.config, study.baseline
    stats = config.stats
    finite_results, excluded = without_diverged(condition_results,
                                                paired=stats.paired_conditions)
    analysis = analyze_and_explain(
        condition_results, finite_results, baseline, level=stats.level,
        num_resamples=stats.num_resamples, num_permutations=stats.num_permutations,
        paired=stats.paired_conditions, seed=config.seed,
        references={c.name: c.reference for c in study.conditions},
        looks=[look[baseline] for look in looks],
        first_look_share=stats.first_look_share, estimand=stats.estimand,
        claims=study.claims,
    )
    analysis.excluded_diverged_seeds = excluded
    analysis.sources = analyze_sources(condition_results, config.randomness,
                                       level=stats.level, seed=config.seed)
    return analysis
