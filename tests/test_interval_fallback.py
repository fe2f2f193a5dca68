"""The studentized bootstrap falls back to the span of the t and BCa intervals where it is
undefined.

When more than (1 - level)/2 of the resamples have no spread (accuracies at or near 1,
most seeds scoring the same), a quantile of the studentized values is infinite; the
interval is then the span of the t and BCa intervals, flagged, instead of an unbounded one
such as [-inf, 1.0001]. Everywhere else the studentized bootstrap is unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from negres.reporting.tables import interval
from negres.results import ConditionResults, Saved
from negres.statistics import inference as stats

LEVEL = 0.95
ALPHA = (1.0 - LEVEL) / 2.0
NEAR_ONE = np.r_[np.ones(15), 0.99]  # 15 of 16 seeds at accuracy 1.0


def _draws(n: int, num_resamples: int, seed: int) -> np.ndarray:
    """The seed indices bootstrap_mean_ci draws (one block for these sizes)."""
    return np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))


def _studentized(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Studentized replicates by hand; a resample without spread gives +-inf."""
    drawn = x[idx]
    se = drawn.std(axis=1, ddof=1) / math.sqrt(x.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (drawn.mean(axis=1) - x.mean()) / se


def _span(ci: dict, column: int | None = None) -> list[float]:
    """The span of the t and BCa intervals in a bootstrap_mean_ci result."""
    get = (lambda k: ci[k]) if column is None else (lambda k: ci[k][column])
    return [min(get("t_low"), get("bca_low")), max(get("t_high"), get("bca_high"))]


def _bootstrap_t_by_hand(x: np.ndarray, idx: np.ndarray) -> list[float]:
    low, high = np.quantile(_studentized(x, idx), [ALPHA, 1.0 - ALPHA])
    se = x.std(ddof=1) / math.sqrt(x.size)
    return [x.mean() - high * se, x.mean() - low * se]


def test_undefined_bootstrap_t_falls_back_to_the_span_of_t_and_bca():
    b = 2000
    idx = _draws(NEAR_ONE.size, b, seed=0)
    # The regime: far more than alpha of the resamples hold no 0.99 and have no spread,
    # so the studentized quantile itself is infinite.
    no_spread = np.mean(np.ptp(NEAR_ONE[idx], axis=1) == 0.0)
    assert no_spread > 10 * ALPHA
    assert np.mean(np.isposinf(_studentized(NEAR_ONE, idx))) > ALPHA

    ci = stats.bootstrap_mean_ci(NEAR_ONE, num_resamples=b, seed=0)
    assert ci["bootstrap_t_fallback"] is True
    got = [ci["bootstrap_t_low"], ci["bootstrap_t_high"]]
    assert got == _span(ci)
    # Here BCa gives the low end and the t interval the high one: the span is neither.
    assert got == [ci["bca_low"], ci["t_high"]]
    assert ci["bca_low"] < ci["t_low"] and ci["t_high"] > ci["bca_high"]
    t_interval = scipy_stats.t.interval(LEVEL, NEAR_ONE.size - 1, NEAR_ONE.mean(),
                                        scipy_stats.sem(NEAR_ONE))
    np.testing.assert_allclose([ci["t_low"], ci["t_high"]], t_interval, rtol=1e-12)

    out = stats.describe(NEAR_ONE, num_resamples=b, seed=0)
    assert out["ci_method"] == "bootstrap_t"
    assert out["ci_fallback"] == stats.BOOTSTRAP_T_FALLBACK == "t_bca_span"
    assert out["ci"] == out["ci_bootstrap_t"] == got
    assert all(math.isfinite(v) for v in out["ci"])
    assert out["ci"][0] < out["mean"] < out["ci"][1]


def test_defined_bootstrap_t_is_unchanged_and_not_flagged():
    x = np.random.default_rng(11).lognormal(size=10)
    ci = stats.bootstrap_mean_ci(x, num_resamples=2000, seed=3)
    assert ci["bootstrap_t_fallback"] is False
    got = [ci["bootstrap_t_low"], ci["bootstrap_t_high"]]
    # The studentized bootstrap by hand, from the same resamples.
    np.testing.assert_allclose(got, _bootstrap_t_by_hand(x, _draws(x.size, 2000, 3)),
                               rtol=1e-9)
    assert got != [ci["t_low"], ci["t_high"]]
    out = stats.describe(x, num_resamples=2000, seed=3)
    assert out["ci_fallback"] is None and out["ci"] == got

    # Bit for bit the same beside a column that falls back (the same resamples).
    other = np.random.default_rng(12).normal(size=10)
    near_one = np.r_[np.ones(9), 0.99]
    beside_defined = stats.bootstrap_mean_ci(np.c_[x, other], num_resamples=2000, seed=3)
    beside_fallback = stats.bootstrap_mean_ci(np.c_[x, near_one], num_resamples=2000, seed=3)
    assert beside_defined["bootstrap_t_fallback"] == [False, False]
    assert beside_fallback["bootstrap_t_fallback"] == [False, True]
    for key in ("bootstrap_t_low", "bootstrap_t_high"):
        assert beside_fallback[key][0] == beside_defined[key][0]
        assert math.isfinite(beside_fallback[key][1])
    assert [beside_fallback["bootstrap_t_low"][1], beside_fallback["bootstrap_t_high"][1]] == (
        _span(beside_fallback, 1))


def test_a_few_infinite_replicates_keep_the_bootstrap_t():
    # Four distinct seeds: a resample of one seed repeated has no spread (1/64 of them),
    # an infinite studentized value, but fewer than alpha on either side.
    x = np.array([0.1, 0.4, 0.35, 0.9])
    b = 4000
    idx = _draws(x.size, b, seed=5)
    studentized = _studentized(x, idx)
    assert 0 < np.mean(np.isposinf(studentized)) < ALPHA
    assert 0 < np.mean(np.isneginf(studentized)) < ALPHA
    ci = stats.bootstrap_mean_ci(x, num_resamples=b, seed=5)
    assert ci["bootstrap_t_fallback"] is False
    got = [ci["bootstrap_t_low"], ci["bootstrap_t_high"]]
    np.testing.assert_allclose(got, _bootstrap_t_by_hand(x, idx), rtol=1e-9)
    assert got != [ci["t_low"], ci["t_high"]]
    assert stats.describe(x, num_resamples=b, seed=5)["ci_fallback"] is None


def test_paired_comparison_with_one_differing_seed_falls_back():
    y = np.random.default_rng(2).binomial(1000, 0.999, size=16) / 1000
    x = y.copy()
    x[4] -= 0.002  # every paired difference 0 but one
    out = stats.compare(x, y, paired=True, num_resamples=2000, num_permutations=500, seed=0)
    assert out["ci_method"] == "bootstrap_t" and out["ci_fallback"] == "t_bca_span"
    assert out["ci"] == out["ci_bootstrap_t"]
    assert out["ci"] == [min(out["ci_t"][0], out["ci_bca"][0]),
                         max(out["ci_t"][1], out["ci_bca"][1])]
    assert all(math.isfinite(v) for v in out["ci"])
    paired_t = scipy_stats.ttest_rel(x, y).confidence_interval(LEVEL)
    np.testing.assert_allclose(out["ci_t"], paired_t, rtol=1e-9, atol=1e-15)
    assert out["ci"][0] <= 0.0 <= out["ci"][1]
    assert out["verdict"] == "inconclusive"
    ci = stats.bootstrap_difference_ci(x, y, paired=True, num_resamples=2000, seed=0)
    assert ci["bootstrap_t_fallback"] is True
    assert [ci["bootstrap_t_low"], ci["bootstrap_t_high"]] == _span(ci)


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # scipy, on near-equal values
def test_unpaired_difference_falls_back_to_the_span_with_welch_t():
    ci = stats.bootstrap_difference_ci(NEAR_ONE, np.ones(16), paired=False,
                                       num_resamples=2000, seed=0)
    assert ci["bootstrap_t_fallback"] is True
    assert [ci["bootstrap_t_low"], ci["bootstrap_t_high"]] == _span(ci)
    assert math.isfinite(ci["bootstrap_t_low"])
    welch = scipy_stats.ttest_ind(NEAR_ONE, np.ones(16), equal_var=False)
    np.testing.assert_allclose([ci["t_low"], ci["t_high"]], welch.confidence_interval(LEVEL),
                               rtol=1e-9, atol=1e-15)
    out = stats.compare(NEAR_ONE, np.ones(16), paired=False, num_resamples=2000,
                        num_permutations=500, seed=0)
    # The unpaired default is Welch's t interval itself: nothing fell back in ``ci``.
    assert out["ci_method"] == "t" and out["ci_fallback"] is None
    assert out["ci"] == out["ci_t"]
    assert out["ci_bootstrap_t"] == [min(out["ci_t"][0], out["ci_bca"][0]),
                                     max(out["ci_t"][1], out["ci_bca"][1])]


def test_flag_on_constant_nonfinite_and_tiny_samples():
    out = stats.bootstrap_mean_ci(np.c_[np.ones(6), np.r_[np.nan, np.ones(5)],
                                        np.arange(6.0)], num_resamples=500, seed=0)
    assert out["bootstrap_t_fallback"] == [False, False, False]
    assert out["bootstrap_t_low"][0] == out["bootstrap_t_high"][0] == 1.0
    assert math.isnan(out["bootstrap_t_low"][1])
    assert stats.bootstrap_mean_ci([0.5], num_resamples=100)["bootstrap_t_fallback"] is False
    one = stats.describe([0.5], num_resamples=100)
    assert one["ci_fallback"] is None and all(math.isnan(v) for v in one["ci"])


def test_ci_label_names_the_fallback():
    from negres.reporting.tables import ci_label

    assert ci_label(stats.describe(NEAR_ONE, num_resamples=200)) == (
        "bootstrap-t, t ∪ BCa where undefined")
    # The rule is in the header whether or not this row fell back.
    assert ci_label(stats.describe(np.arange(5.0), num_resamples=200)) == (
        "bootstrap-t, t ∪ BCa where undefined")
    assert ci_label({"ci_method": "bootstrap_t"}) == "bootstrap-t"  # results before it
    assert ci_label({"ci_method": "t", "ci_fallback": None}) == "t"
    assert ci_label({}) == "BCa"


def test_robustness_severity_table_uses_the_default_interval():
    pytest.importorskip("jax")
    from negres.reporting.sections.robustness import _severity_table
    from negres.reporting.tables import ci_label, interval

    rng = np.random.default_rng(4)
    accuracy = np.c_[NEAR_ONE, rng.binomial(200, 0.8, size=16) / 200]  # (S, K)
    accuracy[3, 1] = np.nan  # a diverged seed is left out, as in describe
    condition = ConditionResults(evaluations={"robustness": Saved(
        per_seed={"curves": {"noise": {"accuracy": accuracy}}},
        shared={"severities": {"noise": [0.0, 0.5]}})})
    lines = _severity_table(condition, "accuracy", "distribution")
    header = next(line for line in lines if line.startswith("| severity"))
    assert "(BCa)" not in header
    summaries = [stats.describe(accuracy[:, k], num_resamples=2000) for k in range(2)]
    assert f"95% CI ({ci_label(summaries[0])})" in header
    assert "95% CI (bootstrap-t," in header
    rows = [line for line in lines if line.startswith("| 0.")]
    assert len(rows) == 2
    for row, summary in zip(rows, summaries, strict=True):
        assert interval(summary["ci"]) in row
        assert "∞" not in row
    assert summaries[0]["ci_fallback"] == "t_bca_span"
    assert summaries[1]["ci_fallback"] is None


def test_robustness_severity_table_covers_the_examples_where_they_were_saved():
    """With each test example's score saved, a severity's interval is the seeds x examples
    one (wider than the seeds' alone on a small test set) and the table says so."""
    pytest.importorskip("jax")
    from negres.reporting.sections.robustness import _severity_table
    from negres.statistics import sampling

    rng = np.random.default_rng(5)
    difficulty = rng.beta(4, 1.5, size=50)
    per_example = (rng.random((16, 2, 50)) < difficulty).astype(float)  # (S, K, N)
    condition = ConditionResults(evaluations={"robustness": Saved(
        per_seed={"curves": {"noise": {"accuracy": per_example.mean(axis=2)}},
                  "per_example": {"noise": per_example}},
        shared={"severities": {"noise": [0.0, 0.5]}})})
    lines = _severity_table(condition, "accuracy", "distribution")
    assert any("covers seeds × 50 test examples" in line or "seeds and test examples" in line
               for line in lines)
    for k in range(2):
        summary = sampling.describe_examples(per_example[:, k], num_resamples=2000)
        seeds_only = stats.describe(per_example[:, k].mean(axis=1), num_resamples=2000)
        assert any(interval(summary["ci"]) in line for line in lines)
        assert summary["ci"][1] - summary["ci"][0] > seeds_only["ci"][1] - seeds_only["ci"][0]
