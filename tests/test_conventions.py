"""Conventions where reasonable implementations differ, each pinned against a reference.

* the permutation p-value is P(|T| >= |t_obs|), not scipy's twice the smaller tail;
* the expected calibration error's bins are right-closed (the first also holds 0);
* the BCa bias correction counts replicates tied with the estimate half below, half above.

See the "Conventions" section of docs/statistics.md.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

from negres.measures import metrics
from negres.statistics import bootstrap_mean_ci, permutation_test

# ------------------------------------------------------------- permutation p-value

# Skewed and of unequal sizes: the one large value makes the permutation distribution of
# T = mean(x) - mean(y) very asymmetric (T is large and positive whenever 9.8 is relabelled
# into x), so the two two-sided conventions disagree by far more than rounding.
SKEWED_X = np.array([0.21, 0.34, 0.45])
SKEWED_Y = np.array([0.52, 0.61, 0.73, 0.88, 1.04, 1.27, 1.63, 2.35, 9.8])


def _all_relabellings(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """T = mean(x*) - mean(y*) for every choice of len(x) of the pooled values as x*."""
    pooled = np.concatenate([x, y])
    out = []
    for chosen in itertools.combinations(range(pooled.size), x.size):
        in_x = np.zeros(pooled.size, bool)
        in_x[list(chosen)] = True
        out.append(pooled[in_x].mean() - pooled[~in_x].mean())
    return np.array(out)


def test_permutation_p_is_absolute_tail_and_scipy_doubles_the_smaller_tail():
    x, y = SKEWED_X, SKEWED_Y
    t = _all_relabellings(x, y)
    assert t.size == 220  # C(12, 3)
    observed = x.mean() - y.mean()
    slack = 1e-9 * np.max(np.abs(np.concatenate([x, y])))
    # No relabelling lies within rounding of a threshold: the counts below are exact.
    assert np.sort(np.abs(np.abs(t) - abs(observed)))[1] > 1e-3
    assert np.sort(np.abs(t - observed))[1] > 1e-3
    p_absolute = np.sum(np.abs(t) >= abs(observed) - slack) / t.size
    p_greater = np.sum(t >= observed - slack) / t.size
    p_less = np.sum(t <= observed + slack) / t.size
    p_doubled = min(1.0, 2.0 * min(p_greater, p_less))

    ours = permutation_test(x, y, paired=False)
    assert ours["exact"] and ours["num_permutations"] == 220
    assert ours["p_value"] == pytest.approx(p_absolute, abs=1e-12)

    theirs = scipy_stats.permutation_test(
        (x, y), lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        permutation_type="independent", alternative="two-sided", n_resamples=np.inf,
        vectorized=True)
    assert len(theirs.null_distribution) == 220  # enumerated, not sampled
    assert theirs.pvalue == pytest.approx(p_doubled, abs=1e-12)

    # Here the conventions disagree on significance, not just in the last digit:
    # 56/220 (every relabelling with 9.8 in x has |T| > |t_obs|) against 2 * 1/220.
    assert p_absolute == pytest.approx(56 / 220, abs=1e-12)
    assert p_doubled == pytest.approx(2 / 220, abs=1e-12)
    assert ours["p_value"] > 0.05 > theirs.pvalue


# ----------------------------------------------------------------- ECE bin edges


def _edge_logits(target: np.float32, num_classes: int) -> np.ndarray | None:
    """Logits ``(num_classes,)`` whose float32 top softmax probability is exactly ``target``.

    The top class gets logit ``a`` and ``m - 1`` others 0 (the rest are far below), so the
    top probability is ``e^a / (e^a + m - 1)`` with ``m`` the smallest count that can reach
    ``target``; ``a`` is searched over float32 neighbours of the exact solution. None when
    no neighbour lands exactly (softmax rounds), so the caller skips that edge.
    """
    m = int(np.floor(1.0 / float(target) + 1e-9))
    if abs(m * float(target) - 1.0) > 1e-6:
        m += 1
    start = np.float32(np.log(float(target) * (m - 1) / (1.0 - float(target))))
    candidates = [start]
    for direction in (np.float32(np.inf), np.float32(-np.inf)):
        a = start
        for _ in range(64):
            a = np.nextafter(a, direction)
            candidates.append(a)
    logits = np.full((len(candidates), num_classes), -1e9, np.float32)
    logits[:, 0], logits[:, 1:m] = candidates, 0.0
    exact = np.flatnonzero(_confidence(logits) == target)  # one softmax for all candidates
    return logits[exact[0]] if exact.size else None


@jax.jit
def _jit_confidence(logits: jax.Array) -> jax.Array:
    return jax.nn.softmax(logits, axis=-1).max(axis=-1)


def _confidence(logits: np.ndarray) -> np.ndarray:
    """Top softmax probability as the metric computes it (float32)."""
    return np.asarray(_jit_confidence(jnp.asarray(logits)))


# Compiled once per shape, as the metric runs in a study (eager, op by op, it is slower).
_ece = jax.jit(metrics.expected_calibration_error, static_argnums=2)


def _reference_ece(logits: np.ndarray, labels: np.ndarray, num_bins: int, *,
                   right_closed: bool) -> float:
    """ECE with bins from np.digitize on the edges in the confidences' dtype (float32).

    ``right=True``: bin i holds (e_i, e_{i+1}], and bin 0 also holds 0. ``right=False``:
    bin i holds [e_i, e_{i+1}), and the last bin also holds 1.
    """
    confidence = _confidence(logits)
    edges = np.linspace(0.0, 1.0, num_bins + 1).astype(confidence.dtype)
    bins = np.digitize(confidence, edges[1:-1], right=right_closed)
    hits = (np.argmax(logits, axis=-1) == labels).astype(np.float64)
    gap = (np.bincount(bins, hits, num_bins)
           - np.bincount(bins, confidence.astype(np.float64), num_bins))
    return float(np.sum(np.abs(gap)) / labels.size)


@pytest.mark.parametrize("num_bins", [8, metrics.ECE_BINS])
def test_ece_bins_are_right_closed_on_exact_edges(num_bins):
    num_classes = 6
    # digitize's conventions, checked where they matter: an edge value goes to the bin
    # below it with right=True, and 0 to the first bin.
    inner = np.linspace(0.0, 1.0, num_bins + 1)[1:-1]
    assert list(np.digitize([0.0, inner[0], inner[1], 1.0], inner, right=True)) == [
        0, 0, 1, num_bins - 1]
    assert list(np.digitize([0.0, inner[0], inner[1], 1.0], inner, right=False)) == [
        0, 1, 2, num_bins - 1]

    logits, labels, edges_hit = [], [], []
    edges = np.linspace(0.0, 1.0, num_bins + 1).astype(np.float32)
    for k in range(1, num_bins):
        inside = (k - 0.5) / num_bins  # the middle of the bin below edge k
        competitors = int(np.floor(1.0 / inside))  # so that 1 / (competitors + 1) < inside
        if competitors + 1 > num_classes or k - 1 in edges_hit:
            # No confidence that low fits in the classes here, or (adjacent edges) the
            # example on edge k - 1 would share the bin below edge k when left-closed.
            continue
        on_edge = _edge_logits(edges[k], num_classes)
        if on_edge is None:
            continue
        # The edge counts as an edge for the metric itself: confidence * num_bins is k.
        assert np.float32(_confidence(on_edge[None])[0] * np.float32(num_bins)) == k
        below = np.full(num_classes, -1e9, np.float32)
        below[0] = np.log(inside * competitors / (1.0 - inside))
        below[1 : competitors + 1] = 0.0
        assert edges[k - 1] < _confidence(below[None])[0] < edges[k]
        # A correct example exactly on edge k and a wrong one inside the bin below it:
        # right-closed bins put both in one bin (their gaps partly cancel), left-closed
        # bins keep them apart, so the two ECEs differ by 2 min(1 - k/B, (k - 1/2)/B) / N.
        logits += [on_edge, below]
        labels += [int(np.argmax(on_edge)), (int(np.argmax(below)) + 1) % num_classes]
        edges_hit.append(k)
    assert len(edges_hit) >= 3, edges_hit  # for 8 bins: 2, 4, 6; for 15: 3, 5, ..., 13
    logits = np.stack(logits)
    labels = np.array(labels)

    ours = float(_ece(jnp.asarray(logits), jnp.asarray(labels), num_bins))
    right = _reference_ece(logits, labels, num_bins, right_closed=True)
    left = _reference_ece(logits, labels, num_bins, right_closed=False)
    assert abs(right - left) > 0.1
    assert ours == pytest.approx(right, abs=1e-6)
    assert ours != pytest.approx(left, abs=1e-2)


def test_ece_confidence_one_falls_in_the_last_bin():
    # Confidence exactly 1 (the other class far below) shares the last bin with any
    # confidence above its lower edge: not a bin of its own, and not past the end (a
    # scatter past the end would be dropped silently).
    logits = np.array([[0.0, -1e9], [3.0, 0.0]], np.float32)
    confidence = _confidence(logits)
    assert confidence[0] == 1.0 and 14 / 15 < confidence[1] < 1.0
    ece = _ece(jnp.asarray(logits), jnp.asarray([1, 0]), metrics.ECE_BINS)
    # One bin: |1 - (1 + c)| / 2 = c / 2 (apart: (2 - c) / 2, dropped: (1 - c) / 2).
    assert float(ece) == pytest.approx(confidence[1] / 2, abs=1e-6)


# ----------------------------------------------------- ties in the bias correction

# Accuracy-like values on a grid of 0.0025 (a 400-example test set), symmetric about 0.9:
# a resample's mean equals the sample mean whenever its offsets sum to 0, which is often.
TIED_OFFSETS = np.array([-1, 0, 0, 0, 1])
TIED_VALUES = 0.9 + 0.0025 * TIED_OFFSETS
# The same in decimals that binary floats do not hold: 0.1 + 0.3 and 0.2 + 0.2 differ by
# rounding, so resampled means that tie in exact arithmetic tie only within the tolerance.
DECIMAL_OFFSETS = np.array([1, 2, 3, 2, 2])
DECIMAL_VALUES = np.array([0.1, 0.2, 0.3, 0.2, 0.2])


def _classify_resamples(offsets: np.ndarray, num_resamples: int, seed: int) -> tuple[int, int]:
    """(#below, #tied) among the resamples bootstrap_mean_ci draws, in exact arithmetic.

    The resamples are regenerated as negres draws them (indices from
    ``np.random.default_rng(seed).integers(0, n, size=(B, n))``), and each is compared
    with the sample mean through the integer ``offsets`` of its values from a common
    base in common steps, so rounding plays no part.
    """
    n = offsets.size
    idx = np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))
    offset_sums = offsets[idx].sum(axis=1)
    total = offsets.sum()  # a resample's mean is below the mean iff its sum is below
    return int(np.sum(offset_sums < total)), int(np.sum(offset_sums == total))


@pytest.mark.parametrize("values, offsets", [(TIED_VALUES, TIED_OFFSETS),
                                             (DECIMAL_VALUES, DECIMAL_OFFSETS)])
def test_bca_bias_correction_counts_ties_half_below_half_above(values, offsets):
    num_resamples, seed = 4000, 3
    below, tied = _classify_resamples(offsets, num_resamples, seed)
    assert tied > 0.1 * num_resamples  # ties are common, not a corner case
    reported = bootstrap_mean_ci(values, num_resamples=num_resamples,
                                 seed=seed)["bias_correction"]
    half = special.ndtri((below + (below + tied)) / (2.0 * num_resamples))
    assert reported == pytest.approx(half, abs=1e-12)
    # The conventions it is not: ties all below, or all above.
    assert abs(reported - special.ndtri((below + tied) / num_resamples)) > 0.1
    assert abs(reported - special.ndtri(below / num_resamples)) > 0.1


def test_bca_bias_correction_is_near_zero_for_a_symmetric_tied_sample():
    # Symmetric about its mean, so below and above are equally likely: z0 must be 0 up to
    # Monte Carlo error (sd about 1.25 / sqrt(B) = 0.009); counting ties as below would
    # give ndtri(P(below) + P(tie)), about 0.36 here.
    num_resamples = 20_000
    reported = bootstrap_mean_ci(TIED_VALUES, num_resamples=num_resamples,
                                 seed=11)["bias_correction"]
    assert abs(reported) < 0.04
    below, tied = _classify_resamples(TIED_OFFSETS, num_resamples, 11)
    assert special.ndtri((below + tied) / num_resamples) > 0.25
