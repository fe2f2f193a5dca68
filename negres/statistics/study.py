"""Statistics of a whole study: every metric of every condition, and every comparison.

Per condition and per-seed metric: :func:`negres.statistics.describe` with the interval
the metric's declared sampling calls for (:mod:`negres.statistics.sampling`: independent
seeds, seeds over shared test examples, or pairs of seeds). Every condition against its
reference, per metric: :func:`negres.statistics.compare` (or its pairwise or per-example
form) in the metric's declared direction (an evaluator declares it; a metric without one
gets no improved/worse verdict), Holm-adjusted across the conditions compared on that
metric. Within each condition, the comparisons each evaluator asks for (a shift against
the clean test set, one attribution method against another), paired by seed and
Holm-adjusted per family.
Nothing here reads a metric's name to decide anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from negres.evaluators import REGISTRY, as_results, get_evaluator
from negres.evaluators.protocol import Evaluation
from negres.results import ConditionResults, StudyStatistics
from negres.statistics import inference as stats
from negres.statistics import sampling, sequential
from negres.statistics.claims import CLAIM_RULE, Claim
from negres.statistics.claims import judge as judge_claims

_HIGHER_IS_BETTER = {"higher": True, "lower": False, "none": None}


def without_diverged(
    conditions: Mapping[str, ConditionResults], *, paired: bool = False
) -> tuple[dict[str, ConditionResults], dict[str, Any]]:
    """Every condition's per-seed numbers less the seeds whose training diverged.

    A diverged seed was frozen at its last finite state: its numbers describe an
    unfinished model, so statistics leave it out and say how many they left out. With
    ``paired`` comparisons, a seed index that diverged in any condition leaves every
    condition, so that the remaining seeds still pair up. What leaves is generic: the
    rows of ``metrics`` and of every evaluator's ``per_seed`` arrays, the rows and
    columns of its ``pairwise`` arrays; a metric declared as the row means of a pairwise
    array is recomputed over the kept seeds (:meth:`ConditionResults.kept`).

    Args:
      conditions: name -> a condition's results; its ``seed_indices`` and
        ``diverged_at_step`` (``(S,)``, -1: finite; None: none diverged) are read.
      paired: whether conditions are compared seed by seed.

    Returns:
      ``(conditions with those rows removed, {"count": {name: n}, "seed_indices": {name:
      [...]}, "own": {name: n}, "rule": ...})``: ``count`` is how many seeds each condition
      left out, ``own`` how many of those diverged in that condition itself.
    """
    diverged = {
        name: {int(i) for i, step in zip(
            result.seed_indices,
            () if result.diverged_at_step is None else result.diverged_at_step, strict=False)
               if step >= 0}
        for name, result in conditions.items()
    }
    everywhere = set().union(*diverged.values()) if paired else set()
    filtered, counts, indices, own = {}, {}, {}, {}
    for name, result in conditions.items():
        drop = diverged[name] | everywhere
        keep = np.asarray([int(i) not in drop for i in result.seed_indices], dtype=bool)
        counts[name] = int((~keep).sum())
        own[name] = len(diverged[name])
        indices[name] = sorted(drop & {int(i) for i in result.seed_indices})
        filtered[name] = dataclasses.replace(result) if keep.all() else result.kept(keep)
    rule = ("seeds whose loss or parameters became NaN or infinite are left out of every "
            "statistic" + (" (in every condition, as conditions are paired)" if paired else ""))
    return filtered, {"count": counts, "seed_indices": indices, "own": own, "rule": rule}


def analyze(
    conditions: Mapping[str, ConditionResults],
    baseline: str,
    *,
    level: float = 0.95,
    num_resamples: int = 2000,
    num_permutations: int = 2000,
    paired: bool = False,
    seed: int = 0,
    references: Mapping[str, str | None] | None = None,
    looks: Sequence[int] | None = None,
    first_look_share: float = sequential.DEFAULT_FIRST_SHARE,
    estimand: str = sampling.DEFAULT_ESTIMAND,
    claims: Sequence[Claim] = (),
) -> StudyStatistics:
    """Summaries, comparisons with verdicts, each evaluator's within-condition tests, and
    the verdicts of the claims the study tests.

    Verdicts follow a sequential design (:mod:`negres.statistics.sequential`): this is
    look ``len(looks)`` of a study that may be extended with more seeds, and its tests run
    at that look's nominal level, so that the verdicts stay honest over every look.

    Args:
      conditions: name -> a condition's results (its ``metrics``, ``metric_info``,
        ``evaluations`` and ``seed_indices`` are read).
      baseline: the condition every other one is compared with by default.
      level: confidence level of intervals and tests.
      num_resamples: bootstrap resamples.
      num_permutations: permutations of the permutation test.
      paired: compare conditions seed by seed (seed ``i`` of each condition shares its
        seed index, so its batch order, but not its initialisation when models differ).
      seed: seeds the resampling.
      references: condition -> the condition it is compared with (``None``: none); by
        default every condition is compared with ``baseline``.
      looks: the baseline's seed count at every look so far, this one last; by default
        one look at its ``num_seeds``.
      first_look_share: the share of ``1 - level`` spent at the first look.
      estimand: what the intervals of metrics over test examples are about:
        ``"distribution"`` (seeds and examples both random) or ``"test_set"`` (these
        examples held fixed); metrics of other kinds are unaffected.
      claims: :class:`~negres.statistics.claims.Claim` values, judged at this look's
        nominal level (:func:`negres.statistics.claims.judge`).

    Returns:
      A :class:`~negres.results.StudyStatistics` with ``summaries`` (condition -> metric
      -> describe), ``comparisons`` (metric -> condition -> compare),
      ``within_conditions`` (evaluator -> condition -> family -> label -> compare),
      ``directions`` (metric -> direction), ``claims`` (one verdict record per claim)
      and ``settings``.
    """
    if looks is None:
        first = conditions[baseline]
        looks = [int(first.num_seeds or len(first.seed_indices))]
    looks = [int(n) for n in looks]
    total = round(1.0 - level, 12)  # 0.05, not 1 - 0.95's 0.05000000000000004
    alpha = sequential.nominal_alphas(looks, alpha=total, first_share=first_look_share)[-1]
    tested = sum(1 for n in looks if n >= 2)
    common = dict(level=level, num_resamples=num_resamples)

    def planned(family: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The family, Holm-adjusted, with the seeds the next look would need."""
        if len(family) > 1:
            family = stats.holm_adjust(family)
        for c in family.values():
            if c["verdict"] == "inconclusive":
                c["seeds_next_look"] = seeds_next_look(c, len(family))
        return family

    def seeds_next_look(c: dict[str, Any], family_size: int) -> int | None:
        """Seeds for 80% power at the next look, and at least enough for the permutation
        test to reach that look's level (with few seeds its smallest p-value is not small)."""
        planned = sequential.seeds_for_next_look(
            c["difference"], c["sd"], looks, alpha=total / family_size,
            first_share=first_look_share, power=c["seeds_needed_power"], paired=c["paired"])
        if planned is None:
            return None
        level = sequential.nominal_alphas([*looks, planned], alpha=total,
                                          first_share=first_look_share)[-1]
        return stats.seeds_for_permutations(planned, level / family_size, paired=c["paired"],
                                            num_permutations=num_permutations)


    summaries = {name: describe_evaluations(result, estimand=estimand, seed=seed, **common)
                 for name, result in conditions.items()}
    if references is None:
        references = {name: (None if name == baseline else baseline) for name in conditions}
    directions: dict[str, str] = {}
    for result in conditions.values():
        for metric in result.metrics:
            directions.setdefault(metric, result.direction(metric))
    comparisons: dict[str, dict[str, Any]] = {}
    for metric, direction in directions.items():
        family = {}
        for name, result in conditions.items():
            reference = references.get(name)
            if reference is None or metric not in result.metrics:
                continue
            if metric not in conditions[reference].metrics:
                continue
            x = result.sample(metric)
            y = conditions[reference].sample(metric)
            family[name] = sampling.compare_samples(
                x, y, paired=paired and x.values.size == y.values.size, estimand=estimand,
                higher_is_better=_HIGHER_IS_BETTER[direction],
                num_permutations=num_permutations, seed=seed, alpha=alpha, **common,
            ) | {"reference": reference}
        if family:
            comparisons[metric] = planned(family)

    def compare_within(x: Any, y: Any, direction: str) -> dict[str, Any]:
        return sampling.compare_samples(
            x, y, paired=True, estimand=estimand, higher_is_better=_HIGHER_IS_BETTER[direction],
            num_permutations=num_permutations, seed=seed, alpha=alpha, **common)

    within: dict[str, dict[str, Any]] = {}
    for name, result in conditions.items():
        for evaluator, saved in result.evaluations.items():
            kind = saved.kind or evaluator  # an instance: its kind's hook on its own view
            if kind not in REGISTRY:  # the caller's own: generic statistics only
                continue
            hook = get_evaluator(kind).statistics
            if hook is None or not len(result.seed_indices):
                continue
            families = {f: planned(c) for f, c in
                        hook(result.instance_view(evaluator), compare_within).items() if c}
            if families:
                within.setdefault(evaluator, {})[name] = families
    judged = judge_claims(claims, conditions, alpha=alpha, paired=paired, estimand=estimand,
                          num_resamples=num_resamples, seed=seed)
    return StudyStatistics(
        claims=judged,
        summaries=summaries,
        comparisons=comparisons,
        within_conditions=within,
        directions=directions,
        settings={
            "baseline": baseline, "references": dict(references), "level": level,
            "num_resamples": num_resamples,
            "num_permutations": num_permutations, "paired_conditions": paired,
            "verdict_rule": stats.VERDICT_RULE, "multiple_comparisons": "Holm across the "
            "conditions compared on each metric",
            "interval_method": stats.DEFAULT_INTERVAL,
            "estimand": estimand,
            "estimand_text": sampling.ESTIMAND_TEXT[estimand],
            "sampling_rules": {"pairwise": sampling.PAIRWISE_RULE,
                               "examples": sampling.EXAMPLES_RULE},
            "difference_interval_method": stats.DEFAULT_DIFFERENCE_INTERVAL,
            **({"claim_rule": CLAIM_RULE} if claims else {}),
            "sequential": {
                "looks": looks, "look": len(looks), "alpha": alpha,
                # A look of one seed tests nothing and spends nothing.
                "alpha_spent": sequential.cumulative_alpha(
                    tested, alpha=total, first_share=first_look_share) if tested else 0.0,
                "first_look_share": first_look_share, "rule": sequential.SPENDING_RULE,
            },
        },
    )


def _as_condition(
        evaluations: Mapping[str, Evaluation] | ConditionResults) -> ConditionResults:
    """A condition's results from :func:`negres.evaluate`'s ``{name: Evaluation}`` (or a
    condition's results as they are)."""
    if isinstance(evaluations, ConditionResults):
        return evaluations
    return as_results(evaluations)


def describe_evaluations(evaluations: Mapping[str, Evaluation] | ConditionResults, *,
                         estimand: str = sampling.DEFAULT_ESTIMAND,
                         **describe_kwargs: Any) -> dict[str, dict[str, Any]]:
    """Every metric of one set of seeds, each with the interval its sampling calls for.

    Args:
      evaluations: :func:`negres.evaluate`'s ``{evaluator: Evaluation}`` (negres's
        evaluators and your own), or one condition's
        :class:`~negres.results.ConditionResults`.
      estimand: for metrics over test examples: ``"distribution"`` or ``"test_set"``.
      **describe_kwargs: ``level``, ``num_resamples``, ``seed``.

    Returns:
      metric -> :func:`negres.statistics.sampling.describe_sample`'s summary.
    """
    condition = _as_condition(evaluations)
    return {m: sampling.describe_sample(condition.sample(m), estimand=estimand,
                                        **describe_kwargs)
            for m in condition.metrics}


def compare_evaluations(candidate: Mapping[str, Evaluation] | ConditionResults,
                        baseline: Mapping[str, Evaluation] | ConditionResults, *,
                        paired: bool, estimand: str = sampling.DEFAULT_ESTIMAND,
                        **compare_kwargs: Any) -> dict[str, dict[str, Any]]:
    """Every metric both sets of seeds have, candidate against baseline, each compared as
    its sampling calls for and in its declared direction (not Holm-adjusted: pass the
    result to :func:`negres.statistics.holm_adjust` for a family).

    Args:
      candidate, baseline: as :func:`describe_evaluations`.
      paired: seed ``i`` of each is the same seed (same seed index, e.g. two evaluations
        of the same trained seeds, or two conditions trained from the same seed keys).
      estimand: as :func:`describe_evaluations`.
      **compare_kwargs: :func:`negres.statistics.compare`'s ``level``, ``num_resamples``,
        ``num_permutations``, ``seed``, ``alpha``.

    Returns:
      metric -> the comparison.
    """
    x_condition, y_condition = _as_condition(candidate), _as_condition(baseline)
    out = {}
    for metric in x_condition.metrics:
        if metric not in y_condition.metrics:
            continue
        x, y = x_condition.sample(metric), y_condition.sample(metric)
        out[metric] = sampling.compare_samples(
            x, y, paired=paired and x.values.size == y.values.size, estimand=estimand,
            higher_is_better=_HIGHER_IS_BETTER[x_condition.direction(metric)],
            **compare_kwargs)
    return out
