"""Statistics across seeds: intervals, comparisons and verdicts that can say "inconclusive".

``inference`` works on per-seed numbers: :func:`describe` (mean, intervals, interquartile
mean and spread), :func:`compare` (difference with its interval, t and permutation tests,
effect size, probability of improvement, seeds needed and a verdict), and Holm's
adjustment across a family of comparisons; the default interval methods are those
``calibration`` (bench/stats_calibration.py) found to keep their coverage. ``sequential``
spends the false-positive probability over the looks of a study extended with more seeds.
``study`` applies them to a whole study: every metric of every condition, every condition
against its reference, shifts against clean data and attribution methods against each
other, with seeds whose training diverged left out and counted; ``claims`` judges the
claims a study declares (:class:`Claim`: an estimand, a direction, the smallest effect that
matters) so that each can come out "reproduces", "does not reproduce" or "inconclusive".
``negres.statistics`` is this package.

Layer: statistics. Intervals, tests and verdicts over what evaluators return; imports
evaluators and the layers below, never reporting or the study.
"""

from negres.statistics import calibration, claims, sampling, sequential
from negres.statistics.claims import Claim
from negres.statistics.inference import (
    DEFAULT_DIFFERENCE_INTERVAL,
    DEFAULT_INTERVAL,
    DEFAULT_LEVEL,
    INTERVAL_METHODS,
    VERDICT_RULE,
    bootstrap_difference_ci,
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
    skewness,
    smallest_permutation_p,
    t_test,
    verdict,
)
from negres.statistics.sampling import (
    ESTIMANDS,
    SAMPLING_KINDS,
    compare_examples,
    compare_pairwise,
    compare_samples,
    describe_examples,
    describe_pairwise,
    describe_sample,
    pairwise_values,
)
from negres.statistics.sources import variance_by_source
from negres.statistics.study import analyze, compare_evaluations, describe_evaluations

__all__ = [
    "DEFAULT_DIFFERENCE_INTERVAL",
    "DEFAULT_INTERVAL",
    "DEFAULT_LEVEL",
    "ESTIMANDS",
    "INTERVAL_METHODS",
    "SAMPLING_KINDS",
    "VERDICT_RULE",
    "Claim",
    "analyze",
    "bootstrap_difference_ci",
    "bootstrap_mean_ci",
    "calibration",
    "claims",
    "compare",
    "compare_evaluations",
    "compare_examples",
    "compare_pairwise",
    "compare_samples",
    "describe",
    "describe_evaluations",
    "describe_examples",
    "describe_pairwise",
    "describe_sample",
    "effect_size",
    "holm",
    "holm_adjust",
    "interquartile_mean",
    "pairwise_values",
    "permutation_test",
    "probability_of_improvement",
    "sampling",
    "seeds_needed",
    "sequential",
    "skewness",
    "smallest_permutation_p",
    "t_test",
    "variance_by_source",
    "verdict",
]
