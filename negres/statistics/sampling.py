"""Intervals and comparisons chosen by how a metric was sampled, never by its name.

A per-seed number ``(S,)`` is one of three kinds, and each needs its own standard error:

* ``"seeds"``: one independent value per seed (a training loss, a learning-curve point).
  The seeds are a sample; :func:`negres.statistics.describe` and
  :func:`negres.statistics.compare` apply as they are.
* ``"pairwise"``: row means of a seed x seed matrix (cross-seed agreement, churn between
  seeds). Each pair of seeds enters two rows, so the row means are not independent and
  their naive standard error is too small by a factor of 1.4-2.4. The mean off-diagonal
  value is a U-statistic of degree 2. Its variance has an unbiased estimate,
  ``2 / (S (S-1)) (2 (S-2) zeta1 + zeta2)`` (Hoeffding), where ``zeta1`` is the covariance
  of two pairs that share one seed and ``zeta2`` the variance of one pair's value; the
  leave-one-seed-out jackknife's estimate adds ``zeta2`` about twice over. negres uses
  the mean of the two (:data:`UNBIASED_WEIGHT`): the unbiased estimate alone is so noisy
  where the pairs' own noise dominates (often near 0) that its t interval covered only
  0.83 at 16 seeds, and the jackknife alone over-covered there (0.993); their mean covered
  0.955-0.961 at 16 seeds where seed effects matter and 0.973 where the pairs' noise
  dominates (0.941-0.978 at 8-32 seeds; Table 5 of docs/calibration.md).
  :func:`pairwise_values` turns the matrix into ``S`` *effective values*: the row means
  stretched about their mean so that their standard error is that one. Every interval
  and test of an independent sample then applies to them, the seeds being the units.
* ``"examples"``: per-seed means over test examples that every seed shares (accuracy,
  compliance with a rule on the examples where a shortcut conflicts with it). Seeds and
  examples are both random: as a crossed two-way random-effects design ``y_ij = mu +
  a_i + b_j + e_ij`` the grand mean has variance ``s_a^2 / S + s_b^2 / N + s_e^2 / (S N)``,
  estimated from the ANOVA mean squares, with Satterthwaite's degrees of freedom. That is
  the interval for the estimand "the data distribution"; "this test set" (the examples
  held fixed) is the interval over seeds alone. Which estimand an interval is about is
  written beside it (``estimand`` and ``covers``).

Comparisons follow the same rules: two conditions' pairwise metrics compare their
effective values (paired by seed: the difference matrix's); two example metrics over the
same test examples compare with the examples paired, whose shared difficulty cancels.
The simulations behind these choices are in ``bench/stats_calibration.py`` and
``docs/calibration.md``; ``tests/test_sampling.py`` checks their coverage at 16 seeds.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

from negres.statistics import inference

Sampling = Literal["seeds", "examples", "pairwise"]
SAMPLING_KINDS: tuple[Sampling, ...] = ("seeds", "examples", "pairwise")
Estimand = Literal["distribution", "test_set"]
ESTIMANDS: tuple[Estimand, ...] = ("distribution", "test_set")
DEFAULT_ESTIMAND: Estimand = "distribution"
# The share of the unbiased U-statistic variance in the variance a pairwise metric's
# interval uses; the rest is the jackknife's (see the module docstring).
UNBIASED_WEIGHT = 0.5

# What the interval of each kind (and estimand) treats as random, for the report.
COVERS = {
    "seeds": "seeds",
    "pairwise": "seeds (the mean over pairs of seeds, a U-statistic)",
    "examples/distribution": "seeds and test examples",
    "examples/test_set": "seeds (these test examples held fixed)",
}
ESTIMAND_TEXT = {
    "distribution": "the data distribution (seeds and test examples both resampled)",
    "test_set": "this test set (only seeds resampled)",
}
EXAMPLES_METHOD = "variance_components"
# A rate where every example is mostly right (or mostly wrong): the variance-components
# interval spanned with the exact binomial interval of the N examples.
EXAMPLES_BOUNDARY_METHOD = "variance_components_exact_binomial"
PAIRWISE_RULE = (
    "row means of a seed x seed matrix: intervals and tests use effective per-seed values, "
    "the row means stretched about the mean pairwise value so that their standard error is "
    f"that of the U-statistic ({UNBIASED_WEIGHT:g} of the unbiased variance 2/(S(S-1)) "
    f"(2(S-2) zeta1 + zeta2) and {1 - UNBIASED_WEIGHT:g} of the jackknife's)")
EXAMPLES_RULE = (
    "per-seed means over shared test examples: the variance of the grand mean is "
    "(MS_seeds + MS_examples - MS_residual) / (S N) of the crossed two-way ANOVA (the "
    "example part at least 0), with Satterthwaite's degrees of freedom; a difference of two "
    "conditions on the same examples pairs the examples (and the seeds when paired)")


def _check_estimand(estimand: str) -> None:
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand={estimand!r} is not allowed: one of {list(ESTIMANDS)}")


# ---------------------------------------------------------------------------- pairwise


def _finite_square(matrix: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix over the kept seeds, kept (S,) bool)``: seeds are left out, most
    non-finite entries first, until every off-diagonal entry is finite."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a seed x seed matrix (S, S); got shape {m.shape}")
    keep = np.ones(m.shape[0], dtype=bool)
    bad = ~np.isfinite(m)
    np.fill_diagonal(bad, False)
    while bad[np.ix_(keep, keep)].any():
        counts = np.where(keep, bad[:, keep].sum(axis=1), -1)
        keep[int(np.argmax(counts))] = False
    return m[np.ix_(keep, keep)], keep


def u_statistic_variances(matrix: Any) -> dict[str, float]:
    """The mean off-diagonal value of a finite ``(S, S)`` matrix (``S >= 4``; symmetrised,
    which leaves the mean over ordered pairs unchanged) and two estimates of its variance:
    ``unbiased`` (Hoeffding's, from ``zeta1`` and ``zeta2``; at least 0) and ``jackknife``
    (leave one seed out)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    h = (m + m.T) / 2.0
    np.fill_diagonal(h, 0.0)
    theta = float(h.sum() / (n * (n - 1)))
    # Centred first: the moments below difference large numbers otherwise.
    c = h - theta
    np.fill_diagonal(c, 0.0)
    rc = c.sum(axis=1)
    squares = float(np.sum(c * c))
    share_one = (float(np.sum(rc * rc)) - squares) / (n * (n - 1) * (n - 2))
    disjoint = (float(rc.sum()) ** 2 + 2.0 * squares - 4.0 * float(np.sum(rc * rc))) / (
        n * (n - 1) * (n - 2) * (n - 3))
    zeta1, zeta2 = share_one - disjoint, squares / (n * (n - 1)) - disjoint
    return {"mean": theta,
            "unbiased": max(2.0 / (n * (n - 1)) * (2.0 * (n - 2) * zeta1 + zeta2), 0.0),
            "jackknife": _jackknife_variance(h.sum(axis=1) / (n - 1), theta)}


def _jackknife_variance(row_means: np.ndarray, theta: float) -> float:
    """The leave-one-seed-out jackknife variance of the mean off-diagonal value ``theta``
    of a symmetric ``(S, S)`` matrix (``S >= 3``) from its row means: each seed's
    pseudo-value is ``theta + 2 (S - 1) / (S - 2) (row mean - theta)``."""
    n = row_means.size
    pseudo = theta + 2.0 * (n - 1) / (n - 2) * (row_means - theta)
    return float(np.var(pseudo, ddof=1) / n)


def _u_statistic(m: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(row means (S,), mean off-diagonal value, the variance its intervals use)`` of a
    finite ``(S, S)`` matrix."""
    n = m.shape[0]
    rows = np.asarray(m, dtype=np.float64).copy()
    np.fill_diagonal(rows, 0.0)
    row_means = rows.sum(axis=1) / max(n - 1, 1)
    if n < 2:
        return row_means, float("nan"), float("nan")
    theta = float(row_means.mean())
    if n < 4:  # no two disjoint pairs: the jackknife's (conservative) variance alone
        if n < 3:
            return row_means, theta, float("nan")
        return row_means, theta, _jackknife_variance(row_means, theta)
    v = u_statistic_variances(m)
    return row_means, theta, UNBIASED_WEIGHT * v["unbiased"] + (
        1.0 - UNBIASED_WEIGHT) * v["jackknife"]


def _stretch(row_means: np.ndarray, variance: float) -> float:
    """The factor that stretches ``row_means`` about their mean so that their
    ``var(ddof=1) / S`` is ``variance``; 1 where either is undefined or 0."""
    n = row_means.size
    spread = float(np.var(row_means, ddof=1)) if n > 1 else 0.0
    if not (math.isfinite(variance) and spread > 0.0):
        return 1.0
    return math.sqrt(n * variance / spread)


def _stretched(row_means: np.ndarray, theta: float, variance: float) -> np.ndarray:
    """Row means stretched about ``theta`` so that ``var(values, ddof=1) / S == variance``."""
    if not math.isfinite(theta):
        return row_means
    return theta + _stretch(row_means, variance) * (row_means - np.mean(row_means))


def pairwise_values(matrix: Any) -> np.ndarray:
    """Effective per-seed values of a metric that is the row means of ``matrix``.

    Their mean is the mean off-diagonal value and ``var(values, ddof=1) / S`` is the
    U-statistic variance described in the module docstring, so any interval or test for
    the mean of an independent sample applies to them. Seeds whose row or column holds a
    non-finite value are left out (most non-finite entries first) and get ``nan``.

    Args:
      matrix: ``(S, S)`` similarities or distances between seeds (the diagonal is ignored).

    Returns:
      ``(S,)``.
    """
    m, keep = _finite_square(matrix, "matrix")
    out = np.full(keep.size, np.nan)
    if keep.sum() == 0:
        return out
    row_means, theta, variance = _u_statistic(m)
    out[keep] = _stretched(row_means, theta, variance)
    return out


def paired_pairwise_values(matrix_x: Any, matrix_y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Effective values of two pairwise metrics of the same seeds (two attribution methods,
    or two conditions paired by seed), stretched by the *difference* matrix's variance, so
    that ``x - y`` are the effective values of ``matrix_x - matrix_y``.

    Returns:
      ``(x (S,), y (S,))``; seeds left out of the difference matrix are ``nan`` in both.
    """
    mx, my = np.asarray(matrix_x, dtype=np.float64), np.asarray(matrix_y, dtype=np.float64)
    if mx.shape != my.shape:
        raise ValueError(f"paired matrices must have one shape; got {mx.shape} and {my.shape}")
    d, keep = _finite_square(mx - my, "matrix_x - matrix_y")
    x, y = np.full(keep.size, np.nan), np.full(keep.size, np.nan)
    if keep.sum() == 0:
        return x, y
    row_d, _, variance = _u_statistic(d)
    scale = _stretch(row_d, variance)
    for out, m in ((x, mx), (y, my)):
        rows, theta, _ = _u_statistic(m[np.ix_(keep, keep)])
        out[keep] = theta + scale * (rows - np.mean(rows))
    return x, y


def _row_summary(row_means: np.ndarray) -> dict[str, Any]:
    """The descriptive keys of :func:`inference.describe` from the seeds' own row means."""
    n = row_means.size
    nan = float("nan")
    return {
        "std": float(np.std(row_means, ddof=1)) if n > 1 else nan,
        "median": float(np.median(row_means)) if n else nan,
        "iqm": inference.interquartile_mean(row_means),
        "min": float(np.min(row_means)) if n else nan,
        "max": float(np.max(row_means)) if n else nan,
        "skewness": inference.skewness(row_means),
    }


def describe_pairwise(matrix: Any, **describe_kwargs: Any) -> dict[str, Any]:
    """:func:`negres.statistics.describe` of a metric that is the row means of ``matrix``.

    Args:
      matrix: ``(S, S)``; seeds whose row holds a non-finite value are left out.
      **describe_kwargs: ``level``, ``num_resamples``, ``seed``.

    Returns:
      :func:`describe`'s keys, with ``mean`` the mean off-diagonal value and intervals and
      ``sem`` from the U-statistic's variance (:func:`pairwise_values`); ``std``, ``min``,
      ``max``, ``median``, ``iqm`` and ``skewness`` of the seeds' row means; plus
      ``sampling`` (``"pairwise"``), ``covers``, ``variance_method`` and ``num_pairs``.
    """
    m, keep = _finite_square(matrix, "matrix")
    row_means, theta, variance = _u_statistic(m)
    values = _stretched(row_means, theta, variance)
    out = inference.describe(values, **describe_kwargs)
    out.update(_row_summary(row_means))
    out["num_nonfinite"] = int((~keep).sum())
    out["mean"] = theta if values.size > 1 else out["mean"]
    out.update(sampling="pairwise", covers=COVERS["pairwise"], variance_method=PAIRWISE_RULE,
               num_pairs=int(values.size * (values.size - 1) // 2))
    return _one_pair_at_most(out, values.size)


# Two seeds make one pair: the spread between pairs, the U-statistic's variance, has
# nothing to be estimated from (the two row means are the one pair's value, alike), so an
# interval would have no width it could claim.
ONE_PAIR_REASON = ("one pair of seeds: a mean over pairs of seeds needs at least 3 seeds "
                   "(3 pairs) for an interval")


def _one_pair_at_most(out: dict[str, Any], num_seeds: int) -> dict[str, Any]:
    """``out`` without intervals, tests or a decided verdict where ``num_seeds`` < 3."""
    if num_seeds >= 3:
        return out
    nan = float("nan")
    for key, value in list(out.items()):
        if key.startswith("ci") and isinstance(value, list | tuple) and len(value) == 2:
            out[key] = [nan, nan]
        elif key in ("sem", "t") or key.startswith("p_value"):
            out[key] = nan
    if "verdict" in out:
        out["verdict"] = "inconclusive"
    out["interval_reason"] = ONE_PAIR_REASON
    return out


def compare_pairwise(matrix_x: Any, matrix_y: Any, *, paired: bool,
                     **compare_kwargs: Any) -> dict[str, Any]:
    """:func:`negres.statistics.compare` of two metrics that are row means of seed x seed
    matrices: candidate ``matrix_x`` ``(S1, S1)`` against baseline ``matrix_y`` ``(S2, S2)``.

    Paired (the same seeds, ``S1 == S2``), the difference matrix's U-statistic variance
    decides (:func:`paired_pairwise_values`); unpaired, each matrix's own.
    """
    if paired:
        x, y = paired_pairwise_values(matrix_x, matrix_y)
    else:
        x, y = pairwise_values(matrix_x), pairwise_values(matrix_y)
    out = inference.compare(x, y, paired=paired, **compare_kwargs)
    out |= {"sampling": "pairwise", "covers": COVERS["pairwise"],
            "variance_method": PAIRWISE_RULE}
    return _one_pair_at_most(out, min(np.shape(matrix_x)[0], np.shape(matrix_y)[0]))


# ---------------------------------------------------------------------------- examples


def _examples_matrix(values: Any, name: str) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"{name} must be per-seed, per-example values (S, N); got shape "
                         f"{y.shape}")
    return y


def _finite_rows(y: np.ndarray) -> np.ndarray:
    """The seeds (rows) whose every value is finite."""
    return y[np.all(np.isfinite(y), axis=1)]


def crossed_mean_squares(y: np.ndarray) -> dict[str, Any]:
    """Mean squares of a crossed two-way table ``(S, N)``, one value per cell (seeds x
    examples here; two sources of randomness in :mod:`negres.statistics.sources`):
    ``ms_seeds`` of the rows, ``ms_examples`` of the columns, ``ms_residual`` of the
    interaction, each of ``S - 1``, ``N - 1`` and ``(S - 1)(N - 1)`` degrees of freedom."""
    s, n = y.shape
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    grand = float(y.mean())
    residual = y - rows[:, None] - cols[None, :] + grand
    nan = float("nan")
    return dict(
        seeds=s, examples=n, grand=grand, rows=rows, cols=cols,
        ms_seeds=float(n * np.var(rows, ddof=1)) if s > 1 else nan,
        ms_examples=float(s * np.var(cols, ddof=1)) if n > 1 else nan,
        ms_residual=(float(np.sum(residual**2) / ((s - 1) * (n - 1)))
                     if s > 1 and n > 1 else nan),
    )


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Degrees of freedom of ``sum(term)`` for ``(term, its df)`` pairs (negative terms
    count by their size)."""
    total = sum(t for t, _ in terms)
    denominator = sum(t * t / df for t, df in terms if df > 0 and t != 0.0)
    return float(total * total / denominator) if denominator > 0 else float("nan")


Terms = list[tuple[float, float]]


def _variance_terms(a: dict[str, Any], estimand: str) -> tuple[Terms, Terms]:
    """The variance of one table's grand mean as ``(term, df)`` pairs: ``(the seeds' part,
    the examples' part)``; the examples' part is empty for "this test set", or where its
    estimate is not above 0."""
    s, n = a["seeds"], a["examples"]
    seeds = [(a["ms_seeds"] / (s * n), s - 1.0)]
    example_part = (a["ms_examples"] - a["ms_residual"]) / (s * n)
    if estimand == "distribution" and n > 1 and example_part > 0:
        return seeds, [(a["ms_examples"] / (s * n), n - 1.0),
                       (-a["ms_residual"] / (s * n), (s - 1.0) * (n - 1.0))]
    return seeds, []


def _difference_terms(ax: dict[str, Any], ay: dict[str, Any],
                      estimand: str) -> tuple[Terms, Terms]:
    """Variance terms of ``grand_x - grand_y`` for unpaired seeds on shared examples, as
    :func:`_variance_terms`: the examples' shared difficulty cancels in their difference."""
    sx, sy, n = ax["seeds"], ay["seeds"], ax["examples"]
    seeds = [(ax["ms_seeds"] / (sx * n), sx - 1.0), (ay["ms_seeds"] / (sy * n), sy - 1.0)]
    if estimand != "distribution" or n < 2:
        return seeds, []
    columns = float(np.var(ax["cols"] - ay["cols"], ddof=1))
    example_part = columns - ax["ms_residual"] / sx - ay["ms_residual"] / sy
    if example_part <= 0:
        return seeds, []
    return seeds, [(columns / n, n - 1.0),
                   (-ax["ms_residual"] / (sx * n), (sx - 1.0) * (n - 1.0)),
                   (-ay["ms_residual"] / (sy * n), (sy - 1.0) * (n - 1.0))]


def _t_interval(estimate: float, terms: Terms, level: float
                ) -> tuple[list[float], float, float, float]:
    """``([low, high], standard error, df, two-sided p of estimate = 0)``."""
    variance = sum(t for t, _ in terms)
    df = _satterthwaite(terms)
    nan = float("nan")
    if variance == 0.0:
        return [estimate, estimate], 0.0, df, (1.0 if estimate == 0.0 else 0.0)
    if not (math.isfinite(variance) and math.isfinite(df)) or variance < 0:
        return [nan, nan], nan, df, nan
    se = math.sqrt(variance)
    half = float(scipy_stats.t.ppf(0.5 + level / 2.0, df)) * se
    p = float(2.0 * scipy_stats.t.sf(abs(estimate) / se, df))
    return [estimate - half, estimate + half], se, df, p


def _components(a: dict[str, Any]) -> dict[str, float]:
    """Method-of-moments variance components (each at least 0)."""
    s, n = a["seeds"], a["examples"]
    return {"seeds": max((a["ms_seeds"] - a["ms_residual"]) / n, 0.0),
            "examples": max((a["ms_examples"] - a["ms_residual"]) / s, 0.0),
            "residual": a["ms_residual"]}


def describe_examples(per_example: Any, *, estimand: str = DEFAULT_ESTIMAND,
                      **describe_kwargs: Any) -> dict[str, Any]:
    """Summary of a metric that is each seed's mean over the same test examples.

    Args:
      per_example: ``(S, N)`` each seed's value on each example (1/0 for correct or not);
        a seed with a non-finite value is left out and counted.
      estimand: ``"distribution"``: the interval covers the metric over the data
        distribution, seeds and examples both random (variance components, Satterthwaite
        t); ``"test_set"``: over seeds alone, these examples held fixed (:func:`describe`'s
        default interval of the seeds' means).
      **describe_kwargs: ``level``, ``num_resamples``, ``seed``.

    Returns:
      :func:`describe`'s keys of the per-seed means; for ``"distribution"`` ``ci``,
      ``sem`` and ``ci_method`` are the variance-components interval's
      (``ci_variance_components``), a rate's (1/0 values) kept inside [0, 1] and, where
      every example is right for most seeds or wrong for most, spanned with the exact
      binomial interval of the N examples (``ci_method``
      ``"variance_components_exact_binomial"``). Plus ``sampling``, ``estimand``,
      ``covers``, ``num_examples`` and ``variance_components`` (``seeds``, ``examples``,
      ``residual``, ``df``).
    """
    _check_estimand(estimand)
    raw = _examples_matrix(per_example, "per_example")
    y = _finite_rows(raw)
    level = describe_kwargs.get("level", inference.DEFAULT_LEVEL)
    # Each seed's mean (nan for a seed with a non-finite value: describe counts it).
    out = inference.describe(raw.mean(axis=1) if raw.shape[1] else np.full(raw.shape[0], np.nan),
                             **describe_kwargs)
    out.update(sampling="examples", estimand=estimand, num_examples=int(y.shape[1]),
               covers=COVERS[f"examples/{estimand}"])
    if y.shape[0] < 2 or y.shape[1] < 1:
        out["variance_components"] = None
        return out
    a = crossed_mean_squares(y)
    seed_terms, example_terms = _variance_terms(a, estimand)
    ci, se, df, _ = _t_interval(a["grand"], seed_terms + example_terms, level)
    out["variance_components"] = _components(a) | {"df": df}
    if estimand == "distribution":
        shown, method = _binary_rate_interval(y, ci, level) if _binary(y) else (
            ci, EXAMPLES_METHOD)
        out.update(ci=shown, sem=se, ci_method=method, ci_fallback=None,
                   variance_method=EXAMPLES_RULE)
        out.update({"ci_variance_components": ci, f"ci_{method}": shown})
    return out


def _binary(y: np.ndarray) -> bool:
    return bool(np.all((y == 0.0) | (y == 1.0)))


def _binary_rate_interval(y: np.ndarray, ci: list[float], level: float
                          ) -> tuple[list[float], str]:
    """The variance-components interval of a rate (1/0 per seed and example), guarded at
    the boundary: where every example is right for most seeds (or wrong for most), the
    moments see almost no spread between examples, yet N such examples bound the
    distribution's rate no tighter than the exact binomial of N; the interval then spans
    both. A rate lies in [0, 1]: cutting the interval there loses no coverage."""
    exact = _exact_at_bound(y, level)
    method = EXAMPLES_METHOD
    if exact is not None:
        ci = [min(ci[0], exact[0]), max(ci[1], exact[1])]
        method = EXAMPLES_BOUNDARY_METHOD
    return [max(ci[0], 0.0), min(ci[1], 1.0)], method


def _exact_at_bound(y: np.ndarray, level: float) -> list[float] | None:
    """The exact binomial interval of the N examples of a rate ``(S, N)`` whose every
    example is right for most seeds (N of N) or wrong for most (0 of N); None otherwise,
    or where the values are not all 1 or 0."""
    if not y.size or not _binary(y):
        return None
    example_means = y.mean(axis=0)
    for right, side in ((True, example_means > 0.5), (False, example_means < 0.5)):
        if np.all(side):
            return _clopper_pearson(y.shape[1] if right else 0, y.shape[1], level)
    return None


def _clopper_pearson(successes: int, trials: int, level: float) -> list[float]:
    interval = scipy_stats.binomtest(successes, trials).proportion_ci(level, method="exact")
    return [float(interval.low), float(interval.high)]


def compare_examples(per_example_x: Any, per_example_y: Any, *, paired: bool,
                     estimand: str = DEFAULT_ESTIMAND, higher_is_better: bool | None = True,
                     level: float = inference.DEFAULT_LEVEL,
                     **compare_kwargs: Any) -> dict[str, Any]:
    """:func:`negres.statistics.compare` of two metrics that are per-seed means over test
    examples: candidate ``(S1, N)`` against baseline ``(S2, N2)``.

    Args:
      per_example_x, per_example_y: per-seed, per-example values. With ``N == N2`` the
        examples are taken as the same ones in the same order (a shift of the test set, a
        condition evaluated on the same test set), and their shared difficulty cancels in
        the difference; otherwise the two test sets count as independent.
      paired: seed ``i`` of each is the same seed (``S1 == S2``); ignored for two
        different test sets.
      estimand: ``"distribution"`` (seeds and examples random) or ``"test_set"`` (seeds
        alone: :func:`compare` of the seeds' means, unchanged).
      higher_is_better, level, **compare_kwargs: as :func:`compare`.

    Returns:
      :func:`compare`'s keys. For ``"distribution"``, ``ci`` (``ci_variance_components``,
      ``ci_method``/``ci_used`` ``"variance_components"``), ``p_value_t``, ``df``, ``t`` and
      the verdict come from the variance-components t test; the decision ``p_value`` is the
      larger of it and the seeds' permutation p-value. ``seeds_needed`` counts only what
      more seeds can resolve: None where the examples' variance alone exceeds what the
      observed difference allows (more test examples would be needed). Plus ``sampling``,
      ``estimand``, ``covers``, ``num_examples``.
    """
    _check_estimand(estimand)
    raw_x = _examples_matrix(per_example_x, "per_example_x")
    raw_y = _examples_matrix(per_example_y, "per_example_y")
    yx, yy = _finite_rows(raw_x), _finite_rows(raw_y)
    shared = raw_x.shape[1] == raw_y.shape[1]
    # Paired seeds on different test sets: the seeds' pairing is ignored (the examples'
    # independent draws dominate such a difference).
    paired = paired and shared and raw_x.shape[0] == raw_y.shape[0]
    out = inference.compare(raw_x.mean(axis=1), raw_y.mean(axis=1), paired=paired,
                            higher_is_better=higher_is_better, level=level, **compare_kwargs)
    out.update(sampling="examples", estimand=estimand, num_examples=int(raw_x.shape[1]),
               covers=COVERS[f"examples/{estimand}"])
    if estimand == "test_set":
        return out
    if paired:
        both = np.all(np.isfinite(raw_x), axis=1) & np.all(np.isfinite(raw_y), axis=1)
        d = raw_x[both] - raw_y[both]
        if d.shape[0] < 2:
            return out
        a = crossed_mean_squares(d)
        difference = a["grand"]
        seed_terms, example_terms = _variance_terms(a, estimand)
        seed_part = a["ms_seeds"] / a["examples"]  # variance of one seed's difference
    else:
        if min(yx.shape[0], yy.shape[0]) < 2:
            return out
        ax, ay = crossed_mean_squares(yx), crossed_mean_squares(yy)
        difference = ax["grand"] - ay["grand"]
        if shared:
            seed_terms, example_terms = _difference_terms(ax, ay, estimand)
        else:
            (sx, ex), (sy, ey) = _variance_terms(ax, estimand), _variance_terms(ay, estimand)
            seed_terms, example_terms = sx + sy, ex + ey
        seed_part = (ax["ms_seeds"] / ax["examples"] + ay["ms_seeds"] / ay["examples"]) / 2
    ci, se, df, p_t = _t_interval(difference, seed_terms + example_terms, level)
    shown, method = ci, EXAMPLES_METHOD
    exact_x, exact_y = _exact_at_bound(yx, level), _exact_at_bound(yy, level)
    if exact_x is not None and exact_y is not None:
        # Both rates at a bound (e.g. every example right in both): the moments see no
        # spread, but each rate is known only to its exact binomial interval.
        shown = [min(ci[0], exact_x[0] - exact_y[1]), max(ci[1], exact_x[1] - exact_y[0])]
        method = EXAMPLES_BOUNDARY_METHOD
    p_value = max(p_t, out["p_value_permutation"])
    if math.isnan(p_t) or math.isnan(out["p_value_permutation"]):
        p_value = float("nan")
    alpha = out["alpha"]
    # What more seeds can do: only the seeds' part of the variance shrinks with them.
    example_variance = max(sum(t for t, _ in example_terms), 0.0)
    needed = _seeds_needed_examples(difference, seed_part, example_variance, alpha,
                                    out["seeds_needed_power"], paired)
    out.update(
        ci=shown, ci_method=method, ci_used=method, ci_fallback=None,
        t=difference / se if se else float("nan"), df=df,
        t_test="variance components (Satterthwaite)", p_value_t=p_t, p_value=p_value,
        p_value_adjusted=p_value, seeds_needed=needed, variance_method=EXAMPLES_RULE,
        verdict=inference.verdict(shown, p_value, level=level,
                                  higher_is_better=higher_is_better, alpha=alpha),
    )
    # The unguarded interval, and the shown one under its method's name (Holm re-reads it).
    out.update({"ci_variance_components": ci, f"ci_{method}": shown})
    return out


def _seeds_needed_examples(delta: float, seed_variance: float, example_variance: float,
                           alpha: float, power: float, paired: bool) -> int | None:
    """Seeds (per group, or pairs) for a two-sided test at ``alpha`` with power ``power``
    to detect ``delta`` when ``example_variance`` does not shrink with the seeds; None
    where it alone is too large (or ``delta`` is 0)."""
    if not (math.isfinite(delta) and delta != 0.0 and alpha > 0):
        return None
    z = -special.ndtri(alpha / 2.0) + special.ndtri(power)
    room = delta * delta / (z * z) - example_variance
    if room <= 0:
        return None
    n = (1.0 if paired else 2.0) * seed_variance / room
    return max(2, math.ceil(n * (1.0 - 1e-12)))


# ---------------------------------------------------------------------------- dispatch


def _parts(sample: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(values, per_example, pairwise)`` of a :class:`negres.results.Sample`
    (or anything with those attributes), or of plain ``(S,)`` values."""
    if hasattr(sample, "values") and hasattr(sample, "per_example"):
        return (np.asarray(sample.values, dtype=float), sample.per_example,
                getattr(sample, "pairwise", None))
    return np.asarray(sample, dtype=float), None, None


def describe_sample(sample: Any, *, estimand: str = DEFAULT_ESTIMAND,
                    **describe_kwargs: Any) -> dict[str, Any]:
    """:func:`describe`, :func:`describe_examples` or :func:`describe_pairwise`, as the
    sample was drawn; every result carries ``sampling`` and ``covers``."""
    values, per_example, pairwise = _parts(sample)
    if pairwise is not None:
        return describe_pairwise(pairwise, **describe_kwargs)
    if per_example is not None:
        return describe_examples(per_example, estimand=estimand, **describe_kwargs)
    return inference.describe(values, **describe_kwargs) | {"sampling": "seeds",
                                                             "covers": COVERS["seeds"]}


def compare_samples(x: Any, y: Any, *, paired: bool, estimand: str = DEFAULT_ESTIMAND,
                    **compare_kwargs: Any) -> dict[str, Any]:
    """:func:`compare`, :func:`compare_examples` or :func:`compare_pairwise` of candidate
    ``x`` and baseline ``y``, as both were drawn. Two samples of different kinds compare
    as independent per-seed values (``sampling`` says ``"seeds"``)."""
    vx, ex, px = _parts(x)
    vy, ey, py = _parts(y)
    if px is not None and py is not None:
        return compare_pairwise(px, py, paired=paired, **compare_kwargs)
    if ex is not None and ey is not None:
        return compare_examples(ex, ey, paired=paired, estimand=estimand, **compare_kwargs)
    return inference.compare(vx, vy, paired=paired, **compare_kwargs) | {
        "sampling": "seeds", "covers": COVERS["seeds"]}
