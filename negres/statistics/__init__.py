"""Statistics across seeds: intervals, comparisons and verdicts that can say "inconclusive".

``inference`` works on per-seed numbers: :func:`describe` (mean, BCa bootstrap interval,
interquartile mean and spread), :func:`compare` (difference with its interval, t and
permutation tests, effect size, probability of improvement, seeds needed and a verdict),
and Holm's adjustment across a family of comparisons. ``study`` applies them to a whole
study: every metric of every condition, every condition against its reference, shifts
against clean data and attribution methods against each other, with seeds whose training
diverged left out and counted. ``negres.stats`` is this package.
"""

from negres.statistics.inference import (
    DEFAULT_LEVEL,
    VERDICT_RULE,
    bootstrap_mean_ci,
    compare,
    describe,
    effect_size,
    holm,
    holm_adjust,
    interquartile_mean,
    permutation_test,
    probability_of_improvement,
    seeds_needed,
    t_test,
    verdict,
)

__all__ = [
    "DEFAULT_LEVEL",
    "VERDICT_RULE",
    "bootstrap_mean_ci",
    "compare",
    "describe",
    "effect_size",
    "holm",
    "holm_adjust",
    "interquartile_mean",
    "permutation_test",
    "probability_of_improvement",
    "seeds_needed",
    "t_test",
    "verdict",
]
