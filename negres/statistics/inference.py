"""Honest statistics across the seed axis: estimates, bootstrap intervals, comparisons, verdicts.

Every seed of a study is one independent draw of the whole training procedure, so a
per-seed metric ``(S,)`` is a sample, and a finding is a statement about its
distribution. This module turns such samples into numbers a reader can trust:

* :func:`describe` summarises one metric: mean, std, median, interquartile mean and
  intervals of the mean (the studentized bootstrap by default, the span of the t and BCa
  intervals where it is undefined; the t, BCa and percentile intervals beside it). Seeds
  whose value is not finite (diverged runs) are left out and counted, never silently
  averaged in.
* :func:`compare` compares two metrics (candidate ``x`` against baseline ``y``): the
  difference of means with its bootstrap interval, Welch's (or the paired) t-test, a
  permutation test, the probability of improvement, an effect size, a verdict and
  the number of seeds that would resolve a difference of the observed size.
* :func:`holm` and :func:`holm_adjust` correct a family of comparisons.

The verdict is deliberately conservative (see :data:`VERDICT_RULE`): a difference is
called only when the bootstrap interval and *both* tests agree, so a finding is
either backed by every method here or plainly labelled ``"inconclusive"``.

All results are plain Python ``float``/``int``/``str``/``list``/``None`` so that they
go straight into ``results.json``. A number that cannot be computed (for example a
standard deviation from one seed) is ``nan``; ``seeds_needed`` is ``None`` when the
observed difference is exactly zero (no finite number of seeds resolves it).

Randomness (bootstrap resamples, random permutations) is explicit: every function
that draws takes ``seed``, an ``int``, a ``numpy.random.Generator`` or a JAX key.
The statistics are computed with NumPy and SciPy on the host: the arrays are small
``(S,)`` vectors, and SciPy gives the t and normal distributions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

from negres.statistics import calibration

DEFAULT_LEVEL = 0.95
DEFAULT_NUM_RESAMPLES = 10_000
DEFAULT_NUM_PERMUTATIONS = 10_000
DEFAULT_POWER = 0.8
# Interval methods for a mean (or a difference of means) across seeds. The defaults are
# those whose coverage the calibration (bench/stats_calibration.py, docs/statistics.md)
# found closest to the nominal level at 4-64 seeds: the studentized bootstrap for a mean
# (and so for paired differences, a mean of one sample), which handles skewed seeds best;
# Welch's t interval for the difference of two groups' means, which covered 0.944-0.986
# where the studentized bootstrap fell to 0.91.
INTERVAL_METHODS = ("bootstrap_t", "t", "bca", "percentile")
DEFAULT_INTERVAL = "bootstrap_t"
DEFAULT_DIFFERENCE_INTERVAL = "t"
# Where the studentized bootstrap is undefined (more than (1 - level)/2 of the resamples
# have no spread, so a quantile of the studentized values is infinite: accuracies at or
# near 1, where most seeds score the same), its interval is instead the span of the t and
# BCa intervals (the lower of their low ends, the higher of their high ends; the t interval
# where BCa is undefined), and ``bootstrap_t_fallback`` says so. In that regime the t
# interval covered best at 4 seeds and BCa from 8 seeds on; the span covered at least as
# well as either (docs/statistics.md, "When the studentized bootstrap is undefined").
BOOTSTRAP_T_FALLBACK = "t_bca_span"
INTERVAL_NAMES = {
    "bootstrap_t": "studentized bootstrap (bootstrap-t)",
    "t": "t interval",
    "bca": "BCa bootstrap",
    "percentile": "percentile bootstrap",
}

# Enumerate every permutation rather than sample when there are at most this many and
# at most ``num_permutations``; beyond it enumeration would cost more memory than it saves.
MAX_EXACT_PERMUTATIONS = 1 << 20
# Resamples are drawn in blocks of about this many numbers, so memory stays near 32 MB
# whatever the number of seeds; within a block everything is vectorized.
_BLOCK_ELEMENTS = 1 << 22

IQM_CONVENTION = (
    "mean of the sorted values after dropping floor(n/4) from each end (scipy.stats."
    "trim_mean(x, 0.25), as rliable's aggregate_iqm); when n is not divisible by 4 slightly "
    "more than the middle 50% is kept, and for n < 4 it equals the mean"
)
VERDICT_RULE = (
    "improved (worse): the interval of mean(x) - mean(y) at the given level (by default "
    "Welch's t interval, or the studentized bootstrap of paired differences) lies strictly "
    "on the good (bad) side of 0, where good is > 0 if "
    "higher_is_better else < 0, AND the decision p-value max(t-test p, permutation p) "
    "(Holm-adjusted after holm_adjust) is below the test level alpha (1 - level, or the "
    "nominal level of this look of a sequential design); otherwise inconclusive. A metric "
    "without a direction gets higher (lower) under the same rule, never improved or worse"
)
SEEDS_NEEDED_UNPAIRED = (
    "n = 2 * ((z_{1-alpha/2} + z_{power}) * sd_pooled / delta)^2 seeds per group, rounded up, "
    "at least 2 (normal approximation, two-sided; the t-test needs about one seed more), and "
    "at least enough for the permutation test to reach alpha"
)
SEEDS_NEEDED_PAIRED = (
    "n = ((z_{1-alpha/2} + z_{power}) * sd_difference / delta)^2 seed pairs, rounded up, "
    "at least 2 (normal approximation, two-sided; the t-test needs about one seed more), and "
    "at least enough for the permutation test to reach alpha"
)

Seed = int | np.random.Generator | Any  # Any: a JAX key (typed or raw uint32)


# ----------------------------------------------------------------------------- helpers


def _rng(seed: Seed) -> np.random.Generator:
    """A NumPy generator from an int, a generator (used as is) or a JAX key."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)):
        return np.random.default_rng(int(seed))
    if "key<" in str(getattr(seed, "dtype", "")):  # a typed JAX key: take its raw bits
        import jax  # only for a JAX key: the statistics run on NumPy without loading JAX

        seed = jax.random.key_data(seed)
    return np.random.default_rng(np.asarray(seed).astype(np.uint64).ravel().tolist())


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per seed, shape (S,); got shape {array.shape}")
    return array


def _mean(x: np.ndarray) -> Any:
    """Mean along axis 0, computed around the first row: exact when all rows are equal."""
    return x[0] + np.mean(x - x[0], axis=0)


def _var(x: np.ndarray) -> float:
    """Sample variance (ddof=1) of ``x (S,)``: exactly 0 when all values are equal."""
    return float(_column_var(x[:, None])[0])


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} is not allowed: a confidence level strictly in (0, 1)")


def _check_count(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: a positive integer")


def _block_sizes(total: int, row_elements: int) -> Iterator[int]:
    """Sizes of the blocks in which ``total`` rows of ``row_elements`` numbers are drawn."""
    step = max(1, _BLOCK_ELEMENTS // max(1, row_elements))
    for start in range(0, total, step):
        yield min(step, total - start)


def _bootstrap_moments(values: np.ndarray, num_resamples: int, rng: np.random.Generator):
    """Means and variances (ddof=1) of ``num_resamples`` bootstrap resamples of the rows of
    ``values (n, M)``, and whether each resample has no spread: three ``(B, M)`` arrays.

    Each resample draws ``n`` seed indices with replacement; all ``M`` columns share it, so
    for curves ``(S, T)`` whole seeds are resampled. Blocks of resamples are one gather.
    Variances are taken around the sample mean, so that they do not lose digits to a
    large common offset (accuracies near 1). Such a variance of a resample of one repeated
    value can be rounding noise instead of 0, hence the exact ``no_spread``.
    """
    n, m = values.shape
    centered = values - _mean(values)
    means, variances, flat = [], [], []
    for b in _block_sizes(num_resamples, n * m):
        idx = rng.integers(0, n, size=(b, n))
        drawn = centered[idx]
        mean = np.mean(drawn, axis=1)
        means.append(mean)
        if n > 1:
            variances.append(np.maximum(np.mean(drawn**2, axis=1) - mean**2, 0.0) * n / (n - 1))
            flat.append(np.ptp(drawn, axis=1) == 0.0)
    boot = np.concatenate(means, axis=0) + _mean(values)
    if n < 2:
        return boot, np.zeros_like(boot), np.ones(boot.shape, dtype=bool)
    return boot, np.concatenate(variances, axis=0), np.concatenate(flat, axis=0)


def _resample_se(no_spread: np.ndarray, variance_of_mean: np.ndarray) -> np.ndarray:
    """Each replicate's standard error: exactly 0 for a resample without spread, so that
    its studentized value is infinite (not a huge finite one from rounding noise)."""
    return np.where(no_spread, 0.0, np.sqrt(variance_of_mean))


def _bootstrap_means(values: np.ndarray, num_resamples: int, rng: np.random.Generator):
    """Means of ``num_resamples`` bootstrap resamples of the rows of ``values (n, M)``: (B, M)."""
    return _bootstrap_moments(values, num_resamples, rng)[0]


def _quantiles_of_sorted(sorted_boot: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Column-wise quantile ``q (M,)`` of ``sorted_boot (B, M)``, NumPy's default (linear) rule.

    Infinite replicates (a studentized replicate with no spread) give infinite quantiles,
    never ``inf - inf``; :func:`_intervals` then falls back (:data:`BOOTSTRAP_T_FALLBACK`).
    """
    num = sorted_boot.shape[0]
    valid = np.isfinite(q)
    pos = np.where(valid, np.clip(q, 0.0, 1.0), 0.0) * (num - 1)
    low = np.floor(pos).astype(np.intp)
    high = np.minimum(low + 1, num - 1)
    cols = np.arange(sorted_boot.shape[1])
    below, above = sorted_boot[low, cols], sorted_boot[high, cols]
    with np.errstate(invalid="ignore"):
        between = np.where(below == above, below, below + (pos - low) * (above - below))
    # Beside an infinite replicate the quantile is that infinity (the caller detects it).
    between = np.where(np.isneginf(below), -np.inf, np.where(np.isposinf(above), np.inf, between))
    return np.where(valid, between, np.nan)


def _acceleration(centered: Sequence[np.ndarray], signs: Sequence[float]) -> np.ndarray:
    """Jackknife acceleration of a (signed) sum of sample means, as in Efron & Tibshirani 14.3.

    For the mean of one sample, leaving out seed ``i`` moves the estimate by
    ``-(x_i - mean)/(n-1)``, so the jackknife needs no resampling: with
    ``U_i = sign * (x_i - mean)`` per sample ``j`` of size ``n_j``,
    ``a = sum_j sum_i U_ji^3 / n_j^3 / (6 * (sum_j sum_i U_ji^2 / n_j^2)^{3/2})``
    (the multi-sample form scipy.stats.bootstrap uses). ``centered``: each ``(n_j, M)``.
    """
    pairs = list(zip(centered, signs, strict=True))
    num = sum(s**3 * np.sum(c**3, axis=0) / c.shape[0] ** 3 for c, s in pairs)
    den = sum(s**2 * np.sum(c**2, axis=0) / c.shape[0] ** 2 for c, s in pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / (6.0 * den**1.5), 0.0)


def _intervals(boot: np.ndarray, boot_se: np.ndarray, theta_hat: np.ndarray,
               se_hat: np.ndarray, df: np.ndarray, accel: np.ndarray, tie_tol: np.ndarray,
               level: float) -> dict[str, np.ndarray]:
    """Every interval method's ``[low, high]`` per column (:data:`INTERVAL_METHODS`).

    Where a quantile of the studentized replicates is infinite (more than ``(1 - level)/2``
    of them come from resamples without spread), the studentized bootstrap is undefined:
    its interval is then the span of the t and BCa intervals (:data:`BOOTSTRAP_T_FALLBACK`),
    and ``bootstrap_t_fallback`` is True for that column. Elsewhere it is untouched.

    Args:
      boot: ``(B, M)`` bootstrap replicates of the estimate.
      boot_se: ``(B, M)`` each replicate's standard error, for the studentized bootstrap.
      theta_hat, se_hat, df: ``(M,)`` the estimate, its standard error and the t
        interval's degrees of freedom.
      accel: ``(M,)`` BCa's acceleration.
      tie_tol: ``(M,)`` replicates within this distance of ``theta_hat`` count as ties
        (half below, half above) when estimating BCa's bias correction ``z0`` and as a
        studentized 0, so that rounding noise in the resampled means of discrete metrics
        (accuracies) does not bias them.
      level: the confidence level.
    """
    num = boot.shape[0]
    alpha = (1.0 - level) / 2.0
    sorted_boot = np.sort(boot, axis=0)
    columns = boot.shape[1]
    less = np.sum(boot < theta_hat - tie_tol, axis=0)
    less_or_tied = np.sum(boot <= theta_hat + tie_tol, axis=0)
    z0 = special.ndtri((less + less_or_tied) / (2.0 * num))
    z_alpha = special.ndtri(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = special.ndtr(z0 + (z0 + z_alpha) / (1.0 - accel * (z0 + z_alpha)))
        upper = special.ndtr(z0 + (z0 - z_alpha) / (1.0 - accel * (z0 - z_alpha)))
        # A replicate without spread has an infinite studentized value unless it ties
        # with the estimate. A few of them (at most alpha) only widen the interval; beyond
        # that a quantile is infinite and the studentized bootstrap is undefined (below).
        away = boot - theta_hat
        studentized = np.where(np.abs(away) <= tie_tol, 0.0, away / boot_se)
    studentized = np.sort(studentized, axis=0)
    t_low = _quantiles_of_sorted(studentized, np.full(columns, alpha))
    t_high = _quantiles_of_sorted(studentized, np.full(columns, 1.0 - alpha))
    t_quantile = scipy_stats.t.ppf(1.0 - alpha, df)
    # An infinite quantile would report an unbounded interval ([-inf, 1.0001] for an
    # accuracy), which says nothing: fall back to the span of the t and BCa intervals in
    # those columns only.
    fallback = np.isinf(t_low) | np.isinf(t_high)
    # z0 is infinite when theta_hat lies outside every replicate (a handful of seeds):
    # BCa is then undefined and reported as nan rather than as an extreme quantile.
    lower = np.where(np.isfinite(z0), lower, np.nan)
    upper = np.where(np.isfinite(z0), upper, np.nan)
    with np.errstate(invalid="ignore"):
        t_interval = (theta_hat - t_quantile * se_hat, theta_hat + t_quantile * se_hat)
        bca = (_quantiles_of_sorted(sorted_boot, lower), _quantiles_of_sorted(sorted_boot, upper))
        # fmin/fmax: the t interval's end where BCa's is nan (undefined).
        span = (np.fmin(t_interval[0], bca[0]), np.fmax(t_interval[1], bca[1]))
        return {
            "bootstrap_t_low": np.where(fallback, span[0], theta_hat - t_high * se_hat),
            "bootstrap_t_high": np.where(fallback, span[1], theta_hat - t_low * se_hat),
            "t_low": t_interval[0],
            "t_high": t_interval[1],
            "bca_low": bca[0],
            "bca_high": bca[1],
            "percentile_low": _quantiles_of_sorted(sorted_boot, np.full(columns, alpha)),
            "percentile_high": _quantiles_of_sorted(sorted_boot, np.full(columns, 1.0 - alpha)),
            "acceleration": accel,
            "bias_correction": z0,
            "bootstrap_t_fallback": fallback,
        }


def _tie_tolerance(*samples: np.ndarray) -> np.ndarray:
    """Rounding scale of a mean of these samples, per column (64 ulps of the largest value)."""
    scale = np.max([np.max(np.abs(s), axis=0) for s in samples], axis=0)
    return 64.0 * np.finfo(np.float64).eps * scale


def _pair(interval: dict[str, np.ndarray], kind: str, column: int = 0) -> list[float]:
    return [float(interval[f"{kind}_low"][column]), float(interval[f"{kind}_high"][column])]


# ------------------------------------------------------------------------- describing


def interquartile_mean(values: Any) -> float:
    """Interquartile mean (IQM) of the finite values of ``values (S,)``; see IQM_CONVENTION."""
    x = _as_1d(values, "values")
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        return float("nan")
    cut = x.size // 4
    return float(np.mean(x[cut : x.size - cut]))


def _as_columns(values: Any, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim < 1:
        raise ValueError(f"{name} must have the seed axis first, shape (S, ...); got {array.shape}")
    trailing = array.shape[1:]
    return array.reshape(array.shape[0], math.prod(trailing)), trailing


def _column_var(x: np.ndarray) -> np.ndarray:
    """Per-column sample variance (ddof=1) of ``x (n, M)``, exactly 0 for equal rows."""
    return np.var(x - x[0], axis=0, ddof=1)


_FALLBACK_KEY = "bootstrap_t_fallback"
_INTERVAL_KEYS = tuple(f"{m}_{end}" for m in INTERVAL_METHODS
                       for end in ("low", "high")) + ("acceleration", "bias_correction")


def _finish(out: dict[str, np.ndarray] | None, estimate: np.ndarray, constant: np.ndarray,
            finite: np.ndarray, trailing: tuple[int, ...]) -> dict[str, Any]:
    """Intervals as nested lists of ``trailing``: a point where nothing varies, nan where a
    column is not finite or could not be resampled (``out`` is None); ``bootstrap_t_fallback``
    is False there."""
    columns = estimate.shape[0]
    if out is None:
        out = {k: np.full(columns, np.nan) for k in _INTERVAL_KEYS}
        fallback = np.zeros(columns, dtype=bool)
    else:
        out = dict(out)
        fallback = out.pop(_FALLBACK_KEY) & finite & ~constant
        out = {k: np.where(constant, estimate, v) if k.endswith(("_low", "_high")) else v
               for k, v in out.items()}
        out = {k: np.where(finite, v, np.nan) for k, v in out.items()}
    out[_FALLBACK_KEY] = fallback
    out["mean"] = estimate
    return {k: np.asarray(v).reshape(trailing).tolist() for k, v in out.items()}


def skewness(values: Any) -> float:
    """Adjusted sample skewness ``G1`` of the finite values of ``values (S,)`` (scipy's
    ``skew(bias=False)``); nan for fewer than 3 values or no spread."""
    x = _as_1d(values, "values")
    x = x[np.isfinite(x)]
    if x.size < 3 or np.ptp(x) == 0.0:
        return float("nan")
    return float(scipy_stats.skew(x, bias=False))


def bootstrap_mean_ci(
    values: Any,
    *,
    level: float = DEFAULT_LEVEL,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    seed: Seed = 0,
) -> dict[str, Any]:
    """Intervals of the mean over the seed axis, every method, for every trailing element.

    Seeds are resampled jointly for all trailing elements (for learning curves ``(S, T)``
    this resamples whole curves, as it should). Columns holding a non-finite value, and
    all columns when ``S < 2``, get ``nan``; use :func:`describe` to drop diverged seeds.

    Args:
      values: ``(S, ...)`` per-seed values, seed axis first.
      level: confidence level of the two-sided intervals.
      num_resamples: number of bootstrap resamples ``B``.
      seed: int, ``numpy.random.Generator`` or JAX key for the resamples.

    Returns:
      ``mean`` and, per method of :data:`INTERVAL_METHODS`, ``{method}_low`` and
      ``{method}_high``; BCa's ``acceleration`` and ``bias_correction`` (``a`` and ``z0``);
      ``bootstrap_t_fallback``, True where the studentized bootstrap was undefined (more
      than ``(1 - level)/2`` of the resamples without spread) and ``bootstrap_t_low/high``
      are the span of the t and BCa intervals instead (:data:`BOOTSTRAP_T_FALLBACK`). Each
      is a float (a bool for the flag) for ``(S,)`` input or nested lists of shape
      ``values.shape[1:]``.
    """
    _check_level(level)
    _check_count("num_resamples", num_resamples)
    flat, trailing = _as_columns(values, "values")
    n, columns = flat.shape
    mean = _mean(flat) if n else np.full(columns, np.nan)
    finite = np.all(np.isfinite(flat), axis=0)
    if n < 2 or not finite.any():
        return _finish(None, mean, finite, finite, trailing)
    clean = np.where(finite, flat, 0.0)
    boot, boot_var, no_spread = _bootstrap_moments(clean, int(num_resamples), _rng(seed))
    centered = clean - _mean(clean)
    out = _intervals(boot, _resample_se(no_spread, boot_var / n), _mean(clean),
                     np.sqrt(_column_var(clean) / n), np.full(columns, n - 1.0),
                     _acceleration([centered], [1.0]), _tie_tolerance(clean), level)
    return _finish(out, mean, np.ptp(clean, axis=0) == 0.0, finite, trailing)


def bootstrap_difference_ci(
    x: Any,
    y: Any,
    *,
    paired: bool,
    level: float = DEFAULT_LEVEL,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    seed: Seed = 0,
) -> dict[str, Any]:
    """Intervals of ``mean(x) - mean(y)``, every method, for every trailing element.

    Paired, the differences of matched seeds are resampled (:func:`bootstrap_mean_ci` of
    ``x - y``); unpaired, each group is resampled on its own and the t intervals use
    Welch's standard error and degrees of freedom.

    Args:
      x: ``(S1, ...)`` candidate values, seed axis first.
      y: ``(S2, ...)`` baseline values (``S2 == S1`` when paired).
      paired: resample seed pairs instead of each group.
      level, num_resamples, seed: as :func:`bootstrap_mean_ci`.

    Returns:
      The keys of :func:`bootstrap_mean_ci`, ``mean`` being the difference of means
      (``bootstrap_t_fallback`` included; unpaired, the span uses Welch's t interval).
    """
    xs, trailing = _as_columns(x, "x")
    ys, _ = _as_columns(y, "y")
    if xs.shape[1] != ys.shape[1] or (paired and xs.shape[0] != ys.shape[0]):
        raise ValueError(f"x and y must match{' in every axis (paired)' if paired else ''} "
                         f"after the seed axis; got {np.shape(x)} and {np.shape(y)}")
    if paired:
        return bootstrap_mean_ci((xs - ys).reshape((xs.shape[0], *trailing)), level=level,
                                 num_resamples=num_resamples, seed=seed)
    _check_level(level)
    _check_count("num_resamples", num_resamples)
    nx, ny = xs.shape[0], ys.shape[0]
    columns = xs.shape[1]
    difference = (_mean(xs) - _mean(ys)) if nx and ny else np.full(columns, np.nan)
    finite = np.all(np.isfinite(xs), axis=0) & np.all(np.isfinite(ys), axis=0)
    if min(nx, ny) < 2 or not finite.any():
        return _finish(None, difference, finite, finite, trailing)
    xs, ys = np.where(finite, xs, 0.0), np.where(finite, ys, 0.0)
    rng = _rng(seed)
    boot_x, var_x, flat_x = _bootstrap_moments(xs, int(num_resamples), rng)
    boot_y, var_y, flat_y = _bootstrap_moments(ys, int(num_resamples), rng)
    vx, vy = _column_var(xs) / nx, _column_var(ys) / ny
    se2 = vx + vy
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(se2 > 0, se2**2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1)), nx + ny - 2.0)
    accel = _acceleration([xs - _mean(xs), ys - _mean(ys)], [1.0, -1.0])
    out = _intervals(boot_x - boot_y, _resample_se(flat_x & flat_y, var_x / nx + var_y / ny),
                     _mean(xs) - _mean(ys), np.sqrt(se2), df, accel, _tie_tolerance(xs, ys),
                     level)
    constant = (np.ptp(xs, axis=0) == 0.0) & (np.ptp(ys, axis=0) == 0.0)
    return _finish(out, difference, constant, finite, trailing)


def _fallback_of(method: str, fell_back: bool) -> str | None:
    """The method that gave ``ci`` instead of ``method``, or None when ``method`` did."""
    return BOOTSTRAP_T_FALLBACK if method == "bootstrap_t" and fell_back else None


def describe(
    values: Any,
    *,
    level: float = DEFAULT_LEVEL,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    seed: Seed = 0,
) -> dict[str, Any]:
    """Summary of one metric across seeds, with bootstrap intervals of its mean.

    Args:
      values: ``(S,)`` one value per seed. Non-finite values (diverged seeds) are left
        out of every statistic and counted in ``num_nonfinite``.
      level: confidence level of the two-sided intervals.
      num_resamples: number of bootstrap resamples.
      seed: int, ``numpy.random.Generator`` or JAX key for the resamples.

    Returns:
      ``n`` (finite seeds used), ``num_nonfinite``, ``mean``, ``std`` (ddof=1), ``sem``,
      ``median``, ``iqm``, ``min``, ``max``, ``ci`` (``[low, high]`` interval of the mean by
      the default method, named in ``ci_method``; ``ci_fallback`` is
      :data:`BOOTSTRAP_T_FALLBACK` where the studentized bootstrap was undefined and ``ci``
      (and ``ci_bootstrap_t``) is the span of ``ci_t`` and ``ci_bca`` instead, else None) and
      ``ci_{method}`` for every method of :data:`INTERVAL_METHODS`, ``skewness`` and
      ``shape`` (of the seeds' values, :func:`negres.statistics.calibration.shape_of`:
      intervals under-cover for skewed or split ones), ``level``, ``num_resamples``,
      ``iqm_convention``.
    """
    raw = _as_1d(values, "values")
    x = raw[np.isfinite(raw)]
    n = int(x.size)
    nan = float("nan")
    ci = bootstrap_mean_ci(x, level=level, num_resamples=num_resamples, seed=seed)
    std = math.sqrt(_var(x)) if n > 1 else nan
    return {
        "n": n,
        "num_nonfinite": int(raw.size - n),
        "mean": float(_mean(x)) if n else nan,
        "std": std,
        "sem": std / math.sqrt(n) if n > 1 else nan,
        "median": float(np.median(x)) if n else nan,
        "iqm": interquartile_mean(x),
        "min": float(np.min(x)) if n else nan,
        "max": float(np.max(x)) if n else nan,
        "level": float(level),
        "num_resamples": int(num_resamples),
        "ci": [ci[f"{DEFAULT_INTERVAL}_low"], ci[f"{DEFAULT_INTERVAL}_high"]],
        "ci_method": DEFAULT_INTERVAL,
        "ci_fallback": _fallback_of(DEFAULT_INTERVAL, ci[_FALLBACK_KEY]),
        **{f"ci_{m}": [ci[f"{m}_low"], ci[f"{m}_high"]] for m in INTERVAL_METHODS},
        "skewness": skewness(x),
        "shape": calibration.shape_of(x),
        "iqm_convention": IQM_CONVENTION,
    }


# ------------------------------------------------------------------------------ tests


def t_test(x: Any, y: Any, *, paired: bool) -> dict[str, float]:
    """Welch's unequal-variance t-test of ``mean(x) = mean(y)``, or the paired t-test.

    Args:
      x, y: ``(S1,)`` and ``(S2,)`` finite values (``S1 == S2`` when paired).
      paired: test the differences ``x - y`` of matched seeds against 0 (df = S - 1).

    Returns:
      ``t``, ``df`` (Welch-Satterthwaite when unpaired) and the two-sided ``p_value``;
      ``nan`` with fewer than 2 values in a group. When every value within each group is
      equal the standard error is 0: ``t`` is then ±inf with ``p = 0`` if the means differ,
      and ``t = 0`` with ``p = 1`` if they do not.
    """
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    if paired:
        d = x - y
        n = d.size
        if n < 2:
            return {"t": float("nan"), "df": float("nan"), "p_value": float("nan")}
        diff, se2, df = float(_mean(d)), _var(d) / n, float(n - 1)
    else:
        if x.size < 2 or y.size < 2:
            return {"t": float("nan"), "df": float("nan"), "p_value": float("nan")}
        vx, vy = _var(x) / x.size, _var(y) / y.size
        diff, se2 = float(_mean(x) - _mean(y)), vx + vy
        df = (
            float(se2**2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1)))
            if se2 > 0 else float(x.size + y.size - 2)
        )
    if se2 == 0.0:
        if diff == 0.0:
            return {"t": 0.0, "df": df, "p_value": 1.0}
        return {"t": math.copysign(math.inf, diff), "df": df, "p_value": 0.0}
    t = diff / math.sqrt(se2)
    return {"t": t, "df": df, "p_value": float(2.0 * scipy_stats.t.sf(abs(t), df))}


def permutation_test(
    x: Any,
    y: Any,
    *,
    paired: bool,
    num_permutations: int = DEFAULT_NUM_PERMUTATIONS,
    seed: Seed = 0,
    exact: bool | None = None,
) -> dict[str, Any]:
    """Two-sided permutation test of ``|mean(x) - mean(y)|`` under exchangeability.

    Unpaired, the null hypothesis is that ``x`` and ``y`` come from one distribution (the
    seeds' labels are exchangeable) and the seeds are relabelled at random; paired, that
    each difference ``x_i - y_i`` is symmetric about 0 and its sign is flipped at random.

    When the number of distinct relabellings (``C(S1+S2, S1)``, or ``2^S`` sign patterns)
    is at most ``num_permutations`` (and :data:`MAX_EXACT_PERMUTATIONS`), all are enumerated
    and ``p = #{|T| >= |T_obs|} / N`` exactly (the identity is one of them). Otherwise
    ``num_permutations`` random ones are drawn and ``p = (1 + #{|T| >= |T_obs|}) / (1 + B)``,
    which counts the observed labelling and so never gives 0.

    Args:
      x, y: ``(S1,)`` and ``(S2,)`` finite values (``S1 == S2`` when paired).
      paired: flip signs of paired differences instead of relabelling.
      num_permutations: random permutations ``B`` (and the enumeration threshold).
      seed: int, ``numpy.random.Generator`` or JAX key for the random permutations.
      exact: force enumeration (True) or sampling (False); None chooses as above.

    Returns:
      ``p_value``, ``statistic`` (observed mean difference), ``exact`` and
      ``num_permutations`` (number enumerated or drawn).
    """
    _check_count("num_permutations", num_permutations)
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("permutation_test needs finite values; drop diverged seeds first")
    if paired and x.size != y.size:
        raise ValueError(f"paired samples must have equal sizes; got {x.size} and {y.size}")
    if min(x.size, y.size) < 1:
        return {"p_value": float("nan"), "statistic": float("nan"), "exact": False,
                "num_permutations": 0}
    if paired:
        d = x - y
        num_total = 2 ** min(d.size, 62)
        observed = float(np.mean(d))
        scale = float(np.max(np.abs(d), initial=0.0))
    else:
        pooled = np.concatenate([x, y])
        n1 = x.size
        num_total = math.comb(pooled.size, n1)
        total_sum = float(np.sum(pooled))
        observed = float(np.sum(x) / n1 - (total_sum - np.sum(x)) / y.size)
        scale = float(np.max(np.abs(pooled), initial=0.0))
    if exact is None:
        exact = num_total <= min(int(num_permutations), MAX_EXACT_PERMUTATIONS)
    if exact and num_total > MAX_EXACT_PERMUTATIONS:
        raise ValueError(f"exact=True would enumerate {num_total} permutations; the limit is "
                         f"{MAX_EXACT_PERMUTATIONS}")

    def statistics(rows: np.ndarray) -> np.ndarray:
        # rows: sign patterns (b, S) when paired, chosen x-indices (b, S1) otherwise.
        if paired:
            return np.mean(rows * d, axis=1)
        sum_x = np.sum(pooled[rows], axis=1)
        return sum_x / n1 - (total_sum - sum_x) / y.size

    # Differences equal to the observed one in exact arithmetic may differ by rounding.
    threshold = abs(observed) - 1e-9 * scale
    if exact:
        if paired:
            bits = (np.arange(num_total)[:, None] >> np.arange(d.size)) & 1
            rows = 1.0 - 2.0 * bits
        else:
            combos = itertools.chain.from_iterable(itertools.combinations(range(pooled.size), n1))
            rows = np.fromiter(combos, dtype=np.intp, count=num_total * n1).reshape(num_total, n1)
        count = int(np.sum(np.abs(statistics(rows)) >= threshold))
        p_value, used = count / num_total, num_total
    else:
        rng = _rng(seed)
        count = 0
        width = d.size if paired else pooled.size
        for b in _block_sizes(int(num_permutations), width):
            if paired:
                rows = 1.0 - 2.0 * rng.integers(0, 2, size=(b, width))
            else:
                rows = rng.permuted(np.broadcast_to(np.arange(width), (b, width)), axis=1)[:, :n1]
            count += int(np.sum(np.abs(statistics(rows)) >= threshold))
        p_value, used = (1 + count) / (1 + int(num_permutations)), int(num_permutations)
    return {"p_value": float(min(1.0, p_value)), "statistic": observed, "exact": bool(exact),
            "num_permutations": int(used)}


def smallest_permutation_p(n_x: int, n_y: int, *, paired: bool,
                           num_permutations: int = DEFAULT_NUM_PERMUTATIONS) -> float:
    """The smallest p-value :func:`permutation_test` can give for these group sizes: the
    observed labelling and its mirror image out of all of them when it enumerates them,
    ``1 / (1 + B)`` when it draws ``B`` (``num_permutations``) at random. With few seeds it
    is not small: 2 / 2^8 = 0.0078 for 8 seed pairs."""
    # Past 40 seeds in all the count exceeds MAX_EXACT_PERMUTATIONS by far; computing
    # C(2n, n) for the n of a tiny difference's plan would take minutes.
    total = (2 ** min(n_x, 62) if paired else
             math.comb(n_x + n_y, n_x) if n_x + n_y <= 40 else math.inf)
    if total <= min(int(num_permutations), MAX_EXACT_PERMUTATIONS):
        # Flipping every sign, or swapping equal-sized groups, mirrors the statistic.
        return (2.0 if paired or n_x == n_y else 1.0) / total
    return 1.0 / (1 + int(num_permutations))


def seeds_for_permutations(num_seeds: int, alpha: float, *, paired: bool,
                           num_permutations: int = DEFAULT_NUM_PERMUTATIONS) -> int:
    """At least ``num_seeds``, and enough seeds (per group, or pairs) for the permutation
    test to give a p-value below ``alpha`` at all: with few seeds it cannot (4 pairs: p >=
    0.125). Where only more permutations would help (``1 / (1 + B) >= alpha``), more seeds
    are not asked for."""
    n = num_seeds
    while smallest_permutation_p(n, n, paired=paired, num_permutations=num_permutations) >= alpha:
        if smallest_permutation_p(n + 1, n + 1, paired=paired,
                                  num_permutations=num_permutations) == 1 / (1 + num_permutations):
            # From here on the permutations are drawn: their count, not the seeds', limits p.
            return n + 1 if 1 / (1 + num_permutations) < alpha else num_seeds
        n += 1
    return n


def probability_of_improvement(x: Any, y: Any, *, paired: bool) -> float:
    """``P(X > Y) + P(X = Y) / 2`` over all pairs (Mann-Whitney ``U / (S1 S2)``) or seed pairs."""
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    if paired:
        d = x - y
        return float(np.mean((d > 0) + 0.5 * (d == 0))) if d.size else float("nan")
    if x.size == 0 or y.size == 0:
        return float("nan")
    ranks = scipy_stats.rankdata(np.concatenate([x, y]))  # average ranks: ties count 1/2
    u = np.sum(ranks[: x.size]) - x.size * (x.size + 1) / 2.0
    return float(u / (x.size * y.size))


def _hedges_correction(df: float) -> float:
    """Exact small-sample factor J(df) = Γ(df/2) / (sqrt(df/2) Γ((df-1)/2)) of Hedges' g."""
    if not df > 1:
        return float("nan")
    return float(math.exp(special.gammaln(df / 2) - 0.5 * math.log(df / 2)
                          - special.gammaln((df - 1) / 2)))


def effect_size(x: Any, y: Any, *, paired: bool) -> dict[str, Any]:
    """Standardised difference of means ``x - y``.

    Unpaired: Cohen's d with the pooled std ``sqrt(((S1-1) s1^2 + (S2-1) s2^2) / (S1+S2-2))``.
    Paired: ``d_z = mean(x - y) / std(x - y)``. Both with Hedges' small-sample correction
    ``g = J(df) d`` (df = S1+S2-2, or S-1 paired). ``sd`` is the std in the denominator.
    A zero ``sd`` gives ±inf (or nan when the means are equal too).
    """
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    if paired:
        d = x - y
        df = d.size - 1
        diff = float(_mean(d)) if d.size else float("nan")
        sd = math.sqrt(_var(d)) if df > 0 else float("nan")
        name = "d_z"
    else:
        df = x.size + y.size - 2
        diff = float(_mean(x) - _mean(y)) if x.size and y.size else float("nan")
        if x.size > 1 and y.size > 1:
            sd = math.sqrt(((x.size - 1) * _var(x) + (y.size - 1) * _var(y)) / df)
        else:
            sd = float("nan")
        name = "cohens_d"
    with np.errstate(divide="ignore", invalid="ignore"):
        d_value = float(np.float64(diff) / np.float64(sd))
    return {"name": name, "value": d_value, "hedges_g": _hedges_correction(df) * d_value,
            "sd": sd}


def seeds_needed(
    delta: float,
    sd: float,
    *,
    level: float = DEFAULT_LEVEL,
    power: float = DEFAULT_POWER,
    paired: bool = False,
) -> int | None:
    """Seeds (per group, or pairs) for a two-sided test at ``1 - level`` to detect ``delta``.

    Normal approximation: ``n = k ((z_{1-alpha/2} + z_power) sd / delta)^2`` with ``k = 2``
    per group unpaired (``sd`` the common std) and ``k = 1`` paired (``sd`` the std of the
    differences), rounded up and at least 2. ``None`` when ``delta`` is 0 or either input
    is not finite. Planned from an observed ``delta`` and ``sd`` it is itself an estimate.
    """
    _check_level(level)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power={power!r} is not allowed: a probability strictly in (0, 1)")
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0.0:
        return None
    return seeds_at_level(delta, sd, 1.0 - level, float(special.ndtri(power)), paired)


def seeds_at_level(delta: float, sd: float, alpha: float, z_power: float, paired: bool) -> int:
    """:func:`seeds_needed`'s formula for a two-sided test at ``alpha`` (finite ``delta``
    != 0 and ``sd``), with ``z_power`` the normal quantile of the power. The quantile is
    taken of ``alpha / 2`` itself, so that the tiny levels of a late sequential look keep
    their digits; a count past 2^62 is reported as 2^62."""
    z = -special.ndtri(alpha / 2.0) + z_power
    n = (1.0 if paired else 2.0) * (z * sd / delta) ** 2
    if not math.isfinite(n) or n > 2.0**62:
        return 2**62
    return max(2, math.ceil(n * (1.0 - 1e-12)))  # guard against 16.000000000000004 -> 17


# -------------------------------------------------------------------------- verdicts


def verdict(ci: Sequence[float], p_value: float, *, level: float,
            higher_is_better: bool | None, alpha: float | None = None) -> str:
    """``"improved"``, ``"worse"`` or ``"inconclusive"`` for ``x`` against ``y``; see VERDICT_RULE.

    Args:
      ci: ``[low, high]`` interval of ``mean(x) - mean(y)``.
      p_value: the decision p-value (adjusted, when comparisons form a family).
      level: the confidence level of ``ci``.
      higher_is_better: True for accuracy-like metrics, False for losses and errors, None
        for a metric with no better direction: its verdict only says ``"higher"`` or
        ``"lower"`` (or ``"inconclusive"``), never improved or worse.
      alpha: the test level ``p_value`` must be below; ``1 - level`` by default, less at a
        look of a sequential design (:mod:`negres.statistics.sequential`).
    """
    low, high = float(ci[0]), float(ci[1])
    if not p_value < (1.0 - level if alpha is None else alpha):  # also catches nan
        return "inconclusive"
    if higher_is_better is None:
        return "higher" if low > 0.0 else ("lower" if high < 0.0 else "inconclusive")
    if low > 0.0:
        return "improved" if higher_is_better else "worse"
    if high < 0.0:
        return "worse" if higher_is_better else "improved"
    return "inconclusive"


def compare(
    x: Any,
    y: Any,
    *,
    paired: bool,
    higher_is_better: bool | None = True,
    level: float = DEFAULT_LEVEL,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    num_permutations: int = DEFAULT_NUM_PERMUTATIONS,
    power: float = DEFAULT_POWER,
    seed: Seed = 0,
    alpha: float | None = None,
) -> dict[str, Any]:
    """Compare a candidate metric ``x`` with a baseline ``y`` across seeds.

    Args:
      x: ``(S1,)`` per-seed values of the candidate.
      y: ``(S2,)`` per-seed values of the baseline.
      paired: seed ``i`` of ``x`` and of ``y`` are matched (same seed, two evaluations);
        needs ``S1 == S2``. Pairs with a non-finite value in either are dropped; unpaired,
        non-finite values are dropped from their own group.
      higher_is_better: direction of the metric (False for losses, MSE, error rates; None
        for a metric without one, which gets a "higher"/"lower" verdict, never
        improved/worse, and no probability of improvement).
      level: confidence level of the intervals; the tests run at ``alpha = 1 - level``.
      num_resamples: bootstrap resamples for the interval of the difference.
      num_permutations: random permutations (or the enumeration threshold).
      power: target power of ``seeds_needed``.
      seed: int, ``numpy.random.Generator`` or JAX key; the bootstrap and the
        permutations draw from separate child streams.
      alpha: the test level of the verdict and of ``seeds_needed``; ``1 - level`` by
        default, less at a later look of a sequential design.

    Returns:
      A JSON-ready dict: ``difference`` (``mean_x - mean_y``), ``ci`` of it by the default
      method (``ci_method``; ``ci_fallback`` as in :func:`describe`) and ``ci_{method}`` by
      every method, ``t``, ``df``, ``p_value_t``, ``p_value_permutation``, ``p_value`` (the
      decision p-value, the larger of the two), ``alpha`` (the test level),
      ``p_value_adjusted`` (equal until :func:`holm_adjust`), ``prob_x_greater`` (P(X > Y),
      ties 1/2), ``prob_improvement`` (the same in the good direction), ``effect_size``
      (``cohens_d`` or ``d_z``; ``hedges_g``), ``seeds_needed`` with its formula, the
      ``verdict`` and the rule that gave it; see the code for all keys.
    """
    _check_level(level)
    _check_count("num_resamples", num_resamples)
    if alpha is None:
        alpha = round(1.0 - level, 12)
    elif not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is not allowed: a test level in [0, 1)")
    x_raw, y_raw = _as_1d(x, "x"), _as_1d(y, "y")
    if paired and x_raw.size != y_raw.size:
        raise ValueError(f"paired samples must have equal sizes; got {x_raw.size} and {y_raw.size}")
    if paired:
        keep = np.isfinite(x_raw) & np.isfinite(y_raw)
        x_use, y_use = x_raw[keep], y_raw[keep]
    else:
        x_use, y_use = x_raw[np.isfinite(x_raw)], y_raw[np.isfinite(y_raw)]
    boot_rng, perm_rng = _rng(seed).spawn(2)
    nan = float("nan")
    enough = min(x_use.size, y_use.size) >= 2
    difference = float(_mean(x_use) - _mean(y_use)) if enough else nan

    # Intervals of the difference: resample seed pairs (paired) or each group.
    method = DEFAULT_INTERVAL if paired else DEFAULT_DIFFERENCE_INTERVAL
    intervals = {m: [nan, nan] for m in INTERVAL_METHODS}
    fell_back = False
    if enough:
        ci = bootstrap_difference_ci(x_use, y_use, paired=paired, level=level,
                                     num_resamples=num_resamples, seed=boot_rng)
        intervals = {m: [ci[f"{m}_low"], ci[f"{m}_high"]] for m in INTERVAL_METHODS}
        fell_back = ci[_FALLBACK_KEY]

    t_result = t_test(x_use, y_use, paired=paired)
    if enough:
        perm = permutation_test(x_use, y_use, paired=paired, num_permutations=num_permutations,
                                seed=perm_rng)
    else:
        perm = {"p_value": nan, "exact": False, "num_permutations": 0}
    p_value = max(t_result["p_value"], perm["p_value"])  # nan if either is nan
    if math.isnan(t_result["p_value"]) or math.isnan(perm["p_value"]):
        p_value = nan
    prob = probability_of_improvement(x_use, y_use, paired=paired)
    effect = effect_size(x_use, y_use, paired=paired) if enough else {
        "name": "d_z" if paired else "cohens_d", "value": nan, "hedges_g": nan, "sd": nan}
    needed = (seeds_needed(difference, effect["sd"], level=1.0 - alpha, power=power,
                           paired=paired) if alpha > 0 else None)
    if needed is not None:
        needed = seeds_for_permutations(needed, alpha, paired=paired,
                                        num_permutations=num_permutations)
    return {
        "paired": bool(paired),
        "higher_is_better": None if higher_is_better is None else bool(higher_is_better),
        "level": float(level),
        "alpha": float(alpha),
        "n_x": int(x_use.size),
        "n_y": int(y_use.size),
        "num_nonfinite_x": int(np.sum(~np.isfinite(x_raw))),
        "num_nonfinite_y": int(np.sum(~np.isfinite(y_raw))),
        "mean_x": float(_mean(x_use)) if x_use.size else nan,
        "mean_y": float(_mean(y_use)) if y_use.size else nan,
        "difference": difference,
        "ci": intervals[method],
        "ci_method": method,
        "ci_fallback": _fallback_of(method, fell_back),
        **{f"ci_{m}": v for m, v in intervals.items()},
        "ci_used": method,
        # What the interval's coverage depends on: the differences' shape when paired, the
        # less regular group's otherwise.
        "shape": (calibration.shape_of(x_use - y_use) if paired else max(
            calibration.shape_of(x_use), calibration.shape_of(y_use),
            key=list(calibration.SHAPES).index)),
        "num_resamples": int(num_resamples),
        "t_test": "paired" if paired else "welch",
        "t": t_result["t"],
        "df": t_result["df"],
        "p_value_t": t_result["p_value"],
        "p_value_permutation": perm["p_value"],
        "permutation_exact": perm["exact"],
        "num_permutations": perm["num_permutations"],
        "p_value": p_value,
        "p_value_adjusted": p_value,
        "adjustment": "none",
        "num_comparisons": 1,
        "prob_x_greater": prob,
        "prob_improvement": (nan if higher_is_better is None
                             else prob if higher_is_better else 1.0 - prob),
        "effect_size_name": effect["name"],
        "effect_size": effect["value"],
        "hedges_g": effect["hedges_g"],
        "sd": effect["sd"],
        "seeds_needed": needed,
        "seeds_needed_power": float(power),
        "seeds_needed_formula": SEEDS_NEEDED_PAIRED if paired else SEEDS_NEEDED_UNPAIRED,
        "verdict": verdict(intervals[method], p_value, level=level,
                           higher_is_better=higher_is_better, alpha=alpha),
        "verdict_rule": VERDICT_RULE,
    }


# ------------------------------------------------------------------ multiple testing


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sorted ascending, ``p_(j)`` becomes ``max_{k <= j} min(1, (m - k + 1) p_(k))``, so the
    adjusted values are monotone in the raw ones; rejecting where ``adjusted < alpha``
    controls the family-wise error rate at ``alpha``. A ``nan`` p-value (a test that could
    not run) counts in ``m``, is sorted last and stays ``nan``.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return []
    missing = np.isnan(p)
    order = np.argsort(np.where(missing, np.inf, p), kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * np.where(missing, 1.0, p)[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return np.where(missing, np.nan, adjusted).tolist()


def holm_adjust(comparisons: Mapping[str, dict] | Sequence[dict]) -> Any:
    """Holm-adjust a family of :func:`compare` results so their verdicts use adjusted p-values.

    Returns new dicts (the inputs are not modified), in the same container kind, with
    ``p_value_adjusted``, ``adjustment = "holm"``, ``num_comparisons = m``, the verdict
    recomputed from the adjusted p-value, the one before in ``verdict_unadjusted``, and
    ``seeds_needed_adjusted``: seeds for the observed difference at the Bonferroni level
    ``alpha / m`` (what the first step of Holm demands; a conservative plan for the family).
    All comparisons must share one ``level``.
    """
    is_mapping = isinstance(comparisons, Mapping)
    items = list(comparisons.values()) if is_mapping else list(comparisons)
    levels = {(c["level"], c["alpha"]) for c in items}
    if len(levels) > 1:
        raise ValueError("a Holm family needs one confidence level and test level; got "
                         f"(level, alpha) {sorted(levels)}")
    adjusted_p = holm([c["p_value"] for c in items])
    m = len(items)
    out = []
    for c, p in zip(items, adjusted_p, strict=True):
        new = dict(c)
        new.update(
            p_value_adjusted=p,
            adjustment="holm",
            num_comparisons=m,
            verdict_unadjusted=c["verdict"],
            verdict=verdict(c[f"ci_{c['ci_used']}"], p, level=c["level"],
                            higher_is_better=c["higher_is_better"], alpha=c["alpha"]),
            seeds_needed_adjusted=seeds_needed(
                c["difference"], c["sd"], level=1.0 - c["alpha"] / m,
                power=c["seeds_needed_power"], paired=c["paired"]) if c["alpha"] > 0 else None,
        )
        out.append(new)
    return dict(zip(comparisons.keys(), out, strict=True)) if is_mapping else out
