"""Statistics across seeds: intervals, comparisons and verdicts that can say "inconclusive".

``inference`` works on per-seed numbers: :func:`describe` (mean, intervals, interquartile
mean and spread), :func:`compare` (difference with its interval, t and permutation tests,
effect size, probability of improvement, seeds needed and a verdict), and Holm's
adjustment across a family of comparisons; the default interval methods are those
``calibration`` (bench/stats_calibration.py) found to keep their coverage. ``sequential``
spends the false-positive probability over the looks of a study extended with more seeds.
``study`` applies them to a whole study: every metric of every condition, every condition
against its reference, shifts against clean data and attribution methods against each
other, with seeds whose training diverged left out and counted. ``negres.stats`` is this
package.
"""

from negres.statistics import calibration, sequential
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

__all__ = [
    "DEFAULT_DIFFERENCE_INTERVAL",
    "DEFAULT_INTERVAL",
    "DEFAULT_LEVEL",
    "INTERVAL_METHODS",
    "VERDICT_RULE",
    "bootstrap_difference_ci",
    "bootstrap_mean_ci",
    "calibration",
    "compare",
    "describe",
    "effect_size",
    "holm",
    "holm_adjust",
    "interquartile_mean",
    "permutation_test",
    "probability_of_improvement",
    "seeds_needed",
    "sequential",
    "skewness",
    "smallest_permutation_p",
    "t_test",
    "verdict",
]
