"""Intervals and comparisons by how a metric was sampled (negres.statistics.sampling).

The coverage and false-positive checks are small simulations through the public API at 16
seeds, the acceptance bounds of the issue that asked for them: a 95% interval covers within
[0.935, 0.965] (pair-dominated noise may be conservative, up to 0.99), and a comparison of
two conditions drawn from one distribution is not "inconclusive" at most 5% (+ 2 standard
errors) of the time. Each also shows what the per-seed treatment did wrong on the same data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import negres
from negres.results import ConditionResults, pairwise_row_means
from negres.statistics import inference, sampling
from negres.statistics.study import analyze

SEEDS = 16
FAST = {"num_resamples": 400}
FAST_COMPARE = {"num_resamples": 400, "num_permutations": 400}


def pair_matrix(rng: np.random.Generator, seeds: int, seed_sd: float, pair_sd: float,
                mean: float = 0.5) -> np.ndarray:
    """Similarities ``mean + a_i + a_j + e_ij`` (symmetric, diagonal 1): seed effects ``a``
    shared by every pair a seed is in, and each pair's own noise ``e``."""
    a = rng.normal(0.0, seed_sd, seeds)
    e = rng.normal(0.0, pair_sd, (seeds, seeds))
    m = mean + a[:, None] + a[None, :] + (e + e.T) / math.sqrt(2.0)
    np.fill_diagonal(m, 1.0)
    return m


def correct_matrix(rng: np.random.Generator, seeds: int, difficulty: np.ndarray) -> np.ndarray:
    """1/0 for each seed on each example: the example's difficulty (Beta-distributed, on the
    logit scale) plus the seed's skill."""
    logit = np.log(difficulty / (1.0 - difficulty))
    skill = rng.normal(0.0, 0.3, seeds)
    p = 1.0 / (1.0 + np.exp(-(logit[None, :] + skill[:, None])))
    return (rng.random((seeds, difficulty.size)) < p).astype(float)


def distribution_accuracy() -> float:
    """The accuracy of :func:`correct_matrix` over the data distribution (Monte Carlo)."""
    rng = np.random.default_rng(123)
    d = rng.beta(4.0, 1.5, 1_000_000)
    skill = rng.normal(0.0, 0.3, d.size)
    return float(np.mean(1.0 / (1.0 + np.exp(-(np.log(d / (1 - d)) + skill)))))


def bound(rate_hits: int, sims: int, nominal: float = 0.05) -> bool:
    """A false-positive count within 5% + 2 standard errors."""
    return rate_hits / sims <= nominal + 2 * math.sqrt(nominal * (1 - nominal) / sims)


# --------------------------------------------------------------- closed forms, properties


def brute_force_variance(m: np.ndarray) -> float:
    """The unbiased variance of the mean off-diagonal value, from the definitions: zeta2
    (one pair's variance) and zeta1 (two pairs sharing one seed), each estimated by the
    mean over index tuples of products minus the mean over disjoint pairs of pairs."""
    n = m.shape[0]
    h = (m + m.T) / 2
    pairs = list(itertools.permutations(range(n), 2))
    same = np.mean([h[i, j] ** 2 for i, j in pairs])
    share = np.mean([h[i, j] * h[i, k] for i, j, k in itertools.permutations(range(n), 3)])
    disjoint = np.mean([h[i, j] * h[k, m] for i, j, k, m in itertools.permutations(range(n), 4)])
    zeta1, zeta2 = share - disjoint, same - disjoint
    return max(2.0 / (n * (n - 1)) * (2 * (n - 2) * zeta1 + zeta2), 0.0)


def jackknife_variance(m: np.ndarray) -> float:
    """Leave each seed out, recompute the mean off-diagonal value: (S-1)/S sum of squares."""
    n = m.shape[0]
    leave_out = []
    for i in range(n):
        keep = np.arange(n) != i
        sub = m[np.ix_(keep, keep)]
        leave_out.append(sub[~np.eye(n - 1, dtype=bool)].mean())
    leave_out = np.asarray(leave_out)
    return float((n - 1) / n * np.sum((leave_out - leave_out.mean()) ** 2))


@pytest.mark.parametrize("seed_sd", [0.0, 0.2])
def test_pairwise_values_have_the_u_statistics_mean_and_variance(seed_sd):
    rng = np.random.default_rng(0)
    m = pair_matrix(rng, 7, seed_sd, 0.1)
    values = sampling.pairwise_values(m)
    off_diagonal = m[~np.eye(7, dtype=bool)]
    np.testing.assert_allclose(values.mean(), off_diagonal.mean(), rtol=1e-12)
    variances = sampling.u_statistic_variances(m)
    np.testing.assert_allclose(variances["unbiased"], brute_force_variance(m), rtol=1e-9)
    np.testing.assert_allclose(variances["jackknife"], jackknife_variance(m), rtol=1e-9)
    w = sampling.UNBIASED_WEIGHT
    np.testing.assert_allclose(values.var(ddof=1) / 7, w * variances["unbiased"]
                               + (1 - w) * variances["jackknife"], rtol=1e-9)
    # The row means' order is kept: the seed with the highest row mean stays highest.
    assert np.argmax(values) == np.argmax(pairwise_row_means(m))


def test_the_variance_estimate_is_unbiased_where_pairs_are_independent():
    """With no seed effect the mean over 120 independent pairs has variance sigma^2 / 120;
    the unbiased estimate averages to it, the jackknife's to about twice as much."""
    rng = np.random.default_rng(1)
    estimates = [sampling.u_statistic_variances(pair_matrix(rng, SEEDS, 0.0, 0.1))
                 for _ in range(400)]
    truth = 0.1**2 / (SEEDS * (SEEDS - 1) / 2)
    assert abs(np.mean([e["unbiased"] for e in estimates]) / truth - 1.0) < 0.1
    assert np.mean([e["jackknife"] for e in estimates]) / truth > 1.8


def test_a_seed_with_a_nonfinite_pair_leaves_the_matrix():
    m = pair_matrix(np.random.default_rng(2), 6, 0.1, 0.1)
    m[2, 4] = m[4, 2] = np.nan
    values = sampling.pairwise_values(m)
    assert np.isnan(values).sum() == 1 and np.isnan(values[[2, 4]]).sum() == 1
    summary = sampling.describe_pairwise(m, **FAST)
    assert summary["n"] == 5 and summary["num_nonfinite"] == 1


def test_examples_test_set_estimand_is_the_seeds_interval():
    rng = np.random.default_rng(3)
    y = correct_matrix(rng, SEEDS, rng.beta(4, 1.5, 80))
    test_set = sampling.describe_examples(y, estimand="test_set", **FAST)
    seeds = inference.describe(y.mean(axis=1), **FAST)
    assert test_set["ci"] == seeds["ci"] and test_set["covers"].startswith("seeds (these")
    distribution = sampling.describe_examples(y, **FAST)
    assert distribution["ci_method"] == "variance_components"
    assert distribution["ci"][1] - distribution["ci"][0] > seeds["ci"][1] - seeds["ci"][0]
    with pytest.raises(ValueError, match="estimand='population' is not allowed"):
        sampling.describe_examples(y, estimand="population")


def test_variance_components_match_their_closed_form_on_a_balanced_table():
    """For a table with no interaction, the ANOVA components recover the seeds' and the
    examples' variances exactly: y_ij = a_i + b_j."""
    a, b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 2.0, 4.0])
    out = sampling.describe_examples(a[:, None] + b[None, :], **FAST)
    components = out["variance_components"]
    assert components["seeds"] == pytest.approx(np.var(a, ddof=1))
    assert components["examples"] == pytest.approx(np.var(b, ddof=1))
    assert components["residual"] == pytest.approx(0.0, abs=1e-12)
    se = math.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 3)
    assert out["sem"] == pytest.approx(se)


def test_a_rate_with_no_spread_gets_the_exact_binomial_interval_of_its_examples():
    """Every seed right on all 14 examples: no variance to estimate, but 14 examples bound
    the distribution's rate from below at (alpha / 2) ** (1 / 14) (Clopper-Pearson)."""
    right = sampling.describe_examples(np.ones((3, 14)), **FAST)
    assert right["ci"] == pytest.approx([0.025 ** (1 / 14), 1.0])
    assert right["ci_method"] == "variance_components_exact_binomial"
    wrong = sampling.describe_examples(np.zeros((3, 14)), **FAST)
    assert wrong["ci"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 14)])
    # One wrong answer of 42 cannot make the interval narrower than none.
    one_wrong = np.ones((3, 14))
    one_wrong[1, 5] = 0.0
    assert sampling.describe_examples(one_wrong, **FAST)["ci"][0] <= right["ci"][0]
    # Two conditions both right everywhere differ by at most what their exact intervals
    # allow, not by exactly 0.
    both = sampling.compare_examples(np.ones((3, 14)), np.ones((3, 14)), paired=True, **FAST)
    bound = 1 - 0.025 ** (1 / 14)
    assert both["ci"] == pytest.approx([-bound, bound]) and both["verdict"] == "inconclusive"
    # About this test set alone, there is nothing left to vary.
    assert sampling.describe_examples(np.ones((3, 14)), estimand="test_set",
                                      **FAST)["ci"] == [1.0, 1.0]


def test_a_rate_near_one_keeps_its_interval_inside_0_and_1():
    rng = np.random.default_rng(4)
    for _ in range(50):
        y = correct_matrix(rng, SEEDS, rng.beta(30.0, 1.0, 16))
        low, high = sampling.describe_examples(y, **FAST)["ci"]
        assert 0.0 <= low <= high <= 1.0


# ------------------------------------------------------------------ coverage at 16 seeds


@pytest.mark.parametrize("seed_sd, pair_sd, high", [
    (0.1, 0.05, 0.965),  # seed effects dominate: the row means' naive interval covers ~0.7
    (0.0, 0.1, 0.99),    # each pair's own noise dominates: conservative, as documented
])
def test_pairwise_interval_covers_at_16_seeds(seed_sd, pair_sd, high):
    rng = np.random.default_rng(10)
    sims, hits, naive = 1500, 0, 0  # a coverage of 0.95 to within 0.006 (one SE)
    for _ in range(sims):
        m = pair_matrix(rng, SEEDS, seed_sd, pair_sd)
        low_high = sampling.describe_pairwise(m, seed=rng, **FAST)["ci"]
        hits += low_high[0] <= 0.5 <= low_high[1]
        row_ci = inference.describe(pairwise_row_means(m), seed=rng, **FAST)["ci"]
        naive += row_ci[0] <= 0.5 <= row_ci[1]
    assert 0.935 <= hits / sims <= high
    assert naive / sims < 0.9  # what treating the row means as independent gave


@pytest.mark.parametrize("examples", [50, 1000])
def test_examples_interval_covers_the_distribution_at_16_seeds(examples):
    rng = np.random.default_rng(11)
    truth = distribution_accuracy()
    sims, hits, seeds_only = 600, 0, 0
    for _ in range(sims):
        y = correct_matrix(rng, SEEDS, rng.beta(4.0, 1.5, examples))  # a fresh test set
        ci = sampling.describe_examples(y, seed=rng, **FAST)["ci"]
        hits += ci[0] <= truth <= ci[1]
        naive = inference.describe(y.mean(axis=1), seed=rng, **FAST)["ci"]
        seeds_only += naive[0] <= truth <= naive[1]
    assert 0.935 <= hits / sims <= 0.965
    if examples == 50:
        assert seeds_only / sims < 0.85  # the seeds-only interval misses the examples


# --------------------------------------------------------- false positives at 16 seeds


@pytest.mark.parametrize("paired", [False, True])
def test_pairwise_comparison_keeps_its_false_positive_rate(paired):
    rng = np.random.default_rng(12)
    sims, calls, naive = 300, 0, 0
    for _ in range(sims):
        if paired:  # two attribution methods of the same seeds: shared seed effects
            a = rng.normal(0.0, 0.1, SEEDS)
            mx, my = (0.5 + a[:, None] + a[None, :] + pair_matrix(rng, SEEDS, 0.0, 0.05, 0.0)
                      for _ in range(2))
        else:
            mx, my = pair_matrix(rng, SEEDS, 0.1, 0.05), pair_matrix(rng, SEEDS, 0.1, 0.05)
        c = sampling.compare_pairwise(mx, my, paired=paired, seed=rng, **FAST_COMPARE)
        calls += c["verdict"] != "inconclusive"
        n = inference.compare(pairwise_row_means(mx), pairwise_row_means(my), paired=paired,
                              seed=rng, **FAST_COMPARE)
        naive += n["verdict"] != "inconclusive"
    assert bound(calls, sims)
    if not paired:
        assert naive / sims > 0.15  # the per-seed treatment's false positives


@pytest.mark.parametrize("examples, paired", [(50, False), (1000, False), (50, True)])
def test_examples_comparison_keeps_its_false_positive_rate(examples, paired):
    """Two conditions (or a shift that changes nothing, paired by seed) on one fresh test
    set drawn per simulation."""
    rng = np.random.default_rng(13)
    sims, calls = 300, 0
    for _ in range(sims):
        difficulty = rng.beta(4.0, 1.5, examples)
        x = correct_matrix(rng, SEEDS, difficulty)
        if paired:  # the same seeds again, with fresh per-example noise
            y = (rng.random(x.shape) < 0.5 * (x + correct_matrix(rng, SEEDS, difficulty))
                 ).astype(float)
        else:
            y = correct_matrix(rng, SEEDS, difficulty)
        c = sampling.compare_examples(x, y, paired=paired, seed=rng, **FAST_COMPARE)
        calls += c["verdict"] != "inconclusive"
    assert bound(calls, sims)


def test_a_real_difference_is_still_found():
    """The honest intervals still call a real difference: 10 points of accuracy, 16 seeds,
    200 examples; and agreement 0.1 higher."""
    rng = np.random.default_rng(14)
    difficulty = rng.beta(4.0, 1.5, 200)
    better = correct_matrix(rng, SEEDS, np.clip(difficulty + 0.1, 0.01, 0.99))
    c = sampling.compare_examples(better, correct_matrix(rng, SEEDS, difficulty), paired=False,
                                  seed=rng, **FAST_COMPARE)
    assert c["verdict"] == "improved" and c["ci"][0] > 0
    c = sampling.compare_pairwise(pair_matrix(rng, SEEDS, 0.05, 0.05, 0.6),
                                  pair_matrix(rng, SEEDS, 0.05, 0.05, 0.5), paired=False,
                                  seed=rng, **FAST_COMPARE)
    assert c["verdict"] == "improved"


# ------------------------------------------------------------------------- in a study


def condition(rng: np.random.Generator, difficulty: np.ndarray,
              seeds: int = 8) -> ConditionResults:
    """A condition's results as an evaluator protocol writes them: one metric over test
    examples, one pairwise, one independent per seed."""
    correct = correct_matrix(rng, seeds, difficulty)
    agreement = pair_matrix(rng, seeds, 0.1, 0.05)
    return ConditionResults.from_json({
        "seed_indices": np.arange(seeds), "num_seeds": seeds,
        "diverged_at_step": np.full(seeds, -1),
        "metrics": {"test_accuracy": correct.mean(axis=1),
                    "agreement": pairwise_row_means(agreement),
                    "train_loss": rng.normal(1.0, 0.1, seeds)},
        "metric_info": {
            "test_accuracy": {"direction": "higher", "evaluator": "mine", "sampling": "examples",
                              "per_example": "per_example/test_accuracy"},
            "agreement": {"direction": "higher", "evaluator": "mine", "sampling": "pairwise",
                          "pairwise": "agreement"},
            "train_loss": {"direction": "lower", "evaluator": "mine"}},
        "evaluations": {"mine": {"per_seed": {"per_example": {"test_accuracy": correct}},
                                 "pairwise": {"agreement": agreement}, "shared": {}}},
    })


@pytest.mark.parametrize("estimand", ["distribution", "test_set"])
def test_a_study_chooses_each_metrics_interval_from_its_declaration(estimand):
    rng = np.random.default_rng(15)
    difficulty = rng.beta(4.0, 1.5, 60)
    conditions = {"a": condition(rng, difficulty), "b": condition(rng, difficulty)}
    out = analyze(conditions, "a", num_resamples=400, num_permutations=400, estimand=estimand)
    summaries = out.summaries["a"]
    assert summaries["agreement"]["sampling"] == "pairwise"
    assert summaries["agreement"]["ci"] == sampling.describe_pairwise(
        conditions["a"].evaluations["mine"].pairwise["agreement"], num_resamples=400,
        seed=0)["ci"]
    assert summaries["test_accuracy"]["estimand"] == estimand
    assert summaries["test_accuracy"]["ci_method"] == (
        "variance_components" if estimand == "distribution" else inference.DEFAULT_INTERVAL)
    assert summaries["train_loss"]["sampling"] == "seeds"
    comparisons = out.comparisons
    assert comparisons["agreement"]["b"]["sampling"] == "pairwise"
    assert comparisons["test_accuracy"]["b"]["sampling"] == "examples"
    assert out.settings["estimand"] == estimand


def test_a_seed_left_out_leaves_the_per_example_rows_and_the_pairwise_rows():
    rng = np.random.default_rng(16)
    result = condition(rng, rng.beta(4.0, 1.5, 30), seeds=6)
    keep = np.array([True, True, False, True, True, True])
    rows = result.kept(keep)
    saved = rows.evaluations["mine"]
    assert saved.per_seed["per_example"]["test_accuracy"].shape == (5, 30)
    assert saved.pairwise["agreement"].shape == (5, 5)
    np.testing.assert_allclose(rows.metrics["agreement"],
                               pairwise_row_means(saved.pairwise["agreement"]))


def test_the_library_reaches_the_same_functions():
    assert negres.statistics.describe_pairwise is sampling.describe_pairwise
    assert negres.statistics.describe_examples is sampling.describe_examples
    assert negres.statistics.compare_pairwise is sampling.compare_pairwise
    assert negres.statistics.compare_examples is sampling.compare_examples


def test_one_pair_of_seeds_gets_no_interval_and_no_verdict():
    # Two seeds are one pair: their two row means are that pair's value, so a bootstrap of
    # them has no spread and would print a zero-width interval.
    from negres.statistics.sampling import compare_pairwise, describe_pairwise

    two = np.array([[1.0, 0.4], [0.4, 1.0]])
    summary = describe_pairwise(two, num_resamples=100, seed=0)
    assert summary["mean"] == pytest.approx(0.4)
    assert np.isnan(summary["ci"]).all() and "3 seeds" in summary["interval_reason"]
    compared = compare_pairwise(two, 0.5 * two, paired=True, num_resamples=100,
                                num_permutations=100, seed=0)
    assert compared["verdict"] == "inconclusive" and np.isnan(compared["ci"]).all()
    three = np.array([[1.0, 0.4, 0.5], [0.4, 1.0, 0.6], [0.5, 0.6, 1.0]])
    assert np.isfinite(describe_pairwise(three, num_resamples=100, seed=0)["ci"]).all()
