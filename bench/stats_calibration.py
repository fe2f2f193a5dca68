"""Calibration of negres's own statistics at the seed counts and distributions studies have.

A 95% interval printed by a seed study should cover the true mean in 95% of studies, and
a verdict should be a false finding in at most 5% of studies where nothing differs. This
script simulates many studies whose truth is known and counts:

1. Coverage of the mean. For each distribution and S in {4, 8, 16, 32, 64} seeds, M
   simulated studies of S seeds each (one vectorised ``inference.bootstrap_mean_ci`` call
   per cell; all M columns share the resample indices, which does not bias coverage): the
   share whose interval covers the exact true mean, per method of
   ``inference.INTERVAL_METHODS``, and each method's width relative to the t interval's
   (the median over studies of the ratio), so the cost of the coverage shows.
2. Coverage of the difference of two conditions' means: two unpaired groups of S seeds
   from one distribution (true difference 0), ``inference.bootstrap_difference_ci``.
3. The verdict of ``inference.compare``: the false-positive rate (two groups of S seeds
   from one distribution; any verdict but "inconclusive" is false) at the study's
   first-look level ``sequential.nominal_alphas([S])[0]`` (0.04) and at 0.05, and the
   power: ``x`` shifted by the ``delta`` for which ``inference.seeds_needed(delta, sd,
   level=1 - 0.04, power=0.8) == S`` (``sd`` the distribution's true one), the share of
   "improved" verdicts. Both levels come from one ``compare`` call per pair (passed the
   first-look alpha): at level ``a`` the verdict is not inconclusive iff ``p_value < a``
   and the default interval excludes 0; the script checks that this reproduces
   ``compare``'s own verdict at the alpha it was given, for every pair.
4. Sequential looks: look at 16 seeds per group at 0.04; if inconclusive extend to
   ``N = sequential.seeds_for_next_look(difference, sd, [16])`` seeds (capped, see
   ``--cap``), draw the new seeds from the same distributions and look again at
   ``sequential.nominal_alphas([16, N])[1]``. Reported: the overall false-positive rate
   under the null, the share extended, the median N, and, under the alternative whose
   delta gives 80% power at 64 seeds, the power against stopping at 16 and against a
   fixed 64 seeds planned in advance. For contrast the naive procedure: look at 16 at
   0.05, extend to ``inference.seeds_needed(difference, sd, level=0.95)`` (same cap),
   look again at 0.05.

Distributions (each with its exact mean and standard deviation, ``true_moments``):
``normal`` N(0, 1); ``lognormal`` exp(N(0, 1)); ``t3`` Student t with 3 df; ``bimodal``
(10% of seeds fail to train and score 0.1, the rest N(0.9, 0.01^2)); ``accuracy`` (each
seed's true accuracy p ~ N(0.9, 0.01^2) clipped to [0, 1], observed Binomial(360, p) / 360:
accuracy on a 360-example test set, bounded and with ties). Under the alternative the
candidate's values are the baseline distribution's shifted by ``delta``.

5-7. Metrics that are not independent per-seed values (``negres.statistics.sampling``):
   pairwise metrics (row means of a seed x seed matrix), metrics over shared test
   examples (both estimands): coverage and false positives, in
   ``bench/stats_calibration_kinds.py`` (its docstring says how each is simulated).

Every number is reproducible: pair ``i`` of a cell draws from
``numpy.random.default_rng([root_seed, *cell, i])``, whichever worker runs it.
The compare() loops run in ``--workers`` processes (2 by default).
Markdown goes to stdout and ``bench/results/stats_calibration.md``, all numbers to the
``.json`` beside it (``--quick``: tiny sizes into ``bench/results/quick/``, a check that
everything runs, its numbers mean little). ``--tables seeds`` runs Tables 1-4 alone,
``--tables kinds`` Tables 5-7 alone (into ``stats_calibration_kinds.md``).

    python bench/stats_calibration.py [--quick] [--tables all|seeds|kinds] [--workers 2]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stats_calibration_kinds as kinds
from tables import load_average, markdown_table

from negres.statistics import inference, sequential

DISTRIBUTIONS = ("normal", "lognormal", "t3", "bimodal", "accuracy")
SEED_COUNTS = (4, 8, 16, 32, 64)
LEVEL = 0.95
NUM_RESAMPLES = 2000  # the study's defaults (config.stats)
NUM_PERMUTATIONS = 2000
ROOT_SEED = 20240601
FIRST_LOOK = 16
CAP = 256

BIMODAL_FAIL_SHARE, BIMODAL_FAIL_VALUE = 0.1, 0.1
BIMODAL_MEAN, BIMODAL_SD = 0.9, 0.01
ACCURACY_MEAN, ACCURACY_SD, ACCURACY_TEST_SIZE = 0.9, 0.01, 360

DESCRIPTIONS = {
    "normal": "N(0, 1)",
    "lognormal": "exp(N(0, 1)), skewed",
    "t3": "Student t, 3 df, heavy tails",
    "bimodal": "10% of seeds fail (0.1), else N(0.9, 0.01^2)",
    "accuracy": "Binomial(360, p)/360, p ~ N(0.9, 0.01^2)",
}
_TABLE_CODES = {"mean": 1, "difference": 2, "verdict": 3, "sequential": 4}


def first_alpha() -> float:
    """The test level of a study's first look (0.04)."""
    return sequential.nominal_alphas([FIRST_LOOK])[0]


# ----------------------------------------------------------------------- distributions


def true_moments(dist: str) -> tuple[float, float]:
    """The exact mean and standard deviation of one seed's value under ``dist``.

    ``accuracy``: the clipping of p ~ N(0.9, 0.01^2) to [0, 1] moves the mean by less than
    1e-20 (10 standard deviations from either bound), so it is left out.
    """
    if dist == "normal":
        return 0.0, 1.0
    if dist == "lognormal":
        return math.exp(0.5), math.sqrt((math.e - 1.0) * math.e)
    if dist == "t3":
        return 0.0, math.sqrt(3.0)
    if dist == "bimodal":
        q = BIMODAL_FAIL_SHARE
        mean = q * BIMODAL_FAIL_VALUE + (1 - q) * BIMODAL_MEAN
        var = (1 - q) * BIMODAL_SD**2 + q * (1 - q) * (BIMODAL_MEAN - BIMODAL_FAIL_VALUE) ** 2
        return mean, math.sqrt(var)
    if dist == "accuracy":
        m, s, n = ACCURACY_MEAN, ACCURACY_SD, ACCURACY_TEST_SIZE
        # Var = Var(p) + E[p (1 - p)] / n, with E[p (1 - p)] = m (1 - m) - s^2.
        return m, math.sqrt(s**2 + (m * (1 - m) - s**2) / n)
    raise ValueError(f"unknown distribution {dist!r}; one of {DISTRIBUTIONS}")


def draw(dist: str, num_seeds: int, num_studies: int,
         rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``num_studies`` simulated studies of ``num_seeds`` seeds: values ``(S, M)``, true mean."""
    shape = (num_seeds, num_studies)
    if dist == "normal":
        values = rng.standard_normal(shape)
    elif dist == "lognormal":
        values = rng.lognormal(0.0, 1.0, shape)
    elif dist == "t3":
        values = rng.standard_t(3, shape)
    elif dist == "bimodal":
        failed = rng.random(shape) < BIMODAL_FAIL_SHARE
        values = np.where(failed, BIMODAL_FAIL_VALUE, rng.normal(BIMODAL_MEAN, BIMODAL_SD, shape))
    elif dist == "accuracy":
        p = np.clip(rng.normal(ACCURACY_MEAN, ACCURACY_SD, shape), 0.0, 1.0)
        values = rng.binomial(ACCURACY_TEST_SIZE, p) / ACCURACY_TEST_SIZE
    else:
        raise ValueError(f"unknown distribution {dist!r}; one of {DISTRIBUTIONS}")
    return values, true_moments(dist)[0]


# ------------------------------------------------------------------ interval coverage


def interval_summary(intervals: dict[str, Any], truth: float) -> dict[str, dict[str, float]]:
    """Per method: coverage of ``truth``, misses below/above, undefined (nan) intervals, and
    the median over studies of the width relative to the t interval's.

    An undefined interval (BCa when the estimate lies outside every replicate) counts as
    not covering.
    """
    t_width = np.asarray(intervals["t_high"]) - np.asarray(intervals["t_low"])
    out = {}
    for method in inference.INTERVAL_METHODS:
        low = np.asarray(intervals[f"{method}_low"], dtype=np.float64)
        high = np.asarray(intervals[f"{method}_high"], dtype=np.float64)
        defined = ~(np.isnan(low) | np.isnan(high))  # an infinite end is still defined
        width = high - low
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(defined, width / t_width, np.nan)
        out[method] = {
            "coverage": float(np.mean(defined & (low <= truth) & (truth <= high))),
            "miss_low": float(np.mean(defined & (truth < low))),
            "miss_high": float(np.mean(defined & (truth > high))),
            "undefined": float(np.mean(~defined)),
            "unbounded": float(np.mean(defined & ~(np.isfinite(low) & np.isfinite(high)))),
            "median_width_ratio": float(np.nanmedian(ratio)) if defined.any() else math.nan,
            "median_width": float(np.nanmedian(np.where(defined, width, np.nan)))
            if defined.any() else math.nan,
        }
    return out


def coverage(dist: str, num_seeds: int, num_studies: int, rng: np.random.Generator, *,
             level: float = LEVEL, num_resamples: int = NUM_RESAMPLES,
             seed: inference.Seed = 0) -> dict[str, dict[str, float]]:
    """Coverage of the mean by every interval method over ``num_studies`` simulated studies."""
    values, truth = draw(dist, num_seeds, num_studies, rng)
    intervals = inference.bootstrap_mean_ci(values, level=level, num_resamples=num_resamples,
                                            seed=seed)
    return interval_summary(intervals, truth)


def difference_coverage(dist: str, num_seeds: int, num_studies: int, rng: np.random.Generator,
                        *, level: float = LEVEL, num_resamples: int = NUM_RESAMPLES,
                        seed: inference.Seed = 0) -> dict[str, dict[str, float]]:
    """Coverage of the difference of two unpaired groups' means (both from ``dist``: 0)."""
    x, _ = draw(dist, num_seeds, num_studies, rng)
    y, _ = draw(dist, num_seeds, num_studies, rng)
    intervals = inference.bootstrap_difference_ci(x, y, paired=False, level=level,
                                                  num_resamples=num_resamples, seed=seed)
    return interval_summary(intervals, 0.0)


# ------------------------------------------------------------------------- verdicts


def verdict_at(p_value: Any, low: Any, high: Any, alpha: float) -> np.ndarray:
    """compare()'s verdict (higher is better) at test level ``alpha``, from its decision
    p-value and its default interval: arrays in, an array of strings out."""
    p, low, high = (np.asarray(a, dtype=np.float64) for a in (p_value, low, high))
    significant = p < alpha  # False for nan
    return np.where(significant & (low > 0.0), "improved",
                    np.where(significant & (high < 0.0), "worse", "inconclusive"))


def delta_for_seeds(sd: float, num_seeds: int, alpha: float, power: float = 0.8) -> float:
    """The difference ``delta`` with ``inference.seeds_needed(delta, sd, level=1 - alpha,
    power=power) == num_seeds`` (the largest such, up to rounding)."""
    z = special.ndtri(1.0 - alpha / 2.0) + special.ndtri(power)
    delta = float(z * sd * math.sqrt(2.0 / num_seeds))
    for _ in range(60):
        needed = inference.seeds_needed(delta, sd, level=1.0 - alpha, power=power)
        if needed == num_seeds:
            return delta
        delta *= (1.0 + 1e-12) if needed > num_seeds else (1.0 - 1e-12)
    raise RuntimeError(f"no delta gives seeds_needed == {num_seeds}")


def _pair_rng(root_seed: int, cell: Sequence[int], index: int) -> np.random.Generator:
    return np.random.default_rng([root_seed, *cell, index])


def _compare(x: np.ndarray, y: np.ndarray, alpha: float, rng: np.random.Generator, *,
             level: float, num_resamples: int, num_permutations: int) -> dict[str, Any]:
    return inference.compare(x, y, paired=False, higher_is_better=True, level=level,
                             num_resamples=num_resamples, num_permutations=num_permutations,
                             seed=rng, alpha=alpha)


def pairs_chunk(dist: str, num_seeds: int, delta: float, cell: Sequence[int], start: int,
                stop: int, *, alpha: float, root_seed: int = ROOT_SEED, level: float = LEVEL,
                num_resamples: int = NUM_RESAMPLES,
                num_permutations: int = NUM_PERMUTATIONS) -> dict[str, list]:
    """``compare`` of pairs ``start..stop-1`` of a cell: candidate (shifted by ``delta``)
    against baseline, ``num_seeds`` seeds each; decision p-values, default intervals and
    verdicts at ``alpha``."""
    out: dict[str, list] = {"p_value": [], "low": [], "high": [], "verdict": []}
    for i in range(start, stop):
        rng = _pair_rng(root_seed, cell, i)
        values, _ = draw(dist, num_seeds, 2, rng)
        result = _compare(values[:, 0] + delta, values[:, 1], alpha, rng, level=level,
                          num_resamples=num_resamples, num_permutations=num_permutations)
        out["p_value"].append(result["p_value"])
        out["low"].append(result["ci"][0])
        out["high"].append(result["ci"][1])
        out["verdict"].append(result["verdict"])
    return out


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _merge(parts: Sequence[dict[str, list]]) -> dict[str, np.ndarray]:
    return {k: np.asarray([v for p in parts for v in p[k]]) for k in parts[0]}


def simulate_pairs(dist: str, num_seeds: int, num_pairs: int, *, delta: float = 0.0,
                   alpha: float, cell: Sequence[int] = (0,), root_seed: int = ROOT_SEED,
                   level: float = LEVEL, num_resamples: int = NUM_RESAMPLES,
                   num_permutations: int = NUM_PERMUTATIONS,
                   chunk: int = 100) -> dict[str, np.ndarray]:
    """``pairs_chunk`` over all ``num_pairs`` pairs in this process; checks that
    :func:`verdict_at` reproduces every verdict of ``compare``."""
    parts = [pairs_chunk(dist, num_seeds, delta, cell, a, b, alpha=alpha, root_seed=root_seed,
                         level=level, num_resamples=num_resamples,
                         num_permutations=num_permutations)
             for a, b in _chunks(num_pairs, chunk)]
    return check_verdicts(_merge(parts), alpha)


def check_verdicts(pairs: dict[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    mine = verdict_at(pairs["p_value"], pairs["low"], pairs["high"], alpha)
    mismatched = int(np.sum(mine != pairs["verdict"]))
    if mismatched:
        raise AssertionError(f"verdict_at disagrees with compare() on {mismatched} pairs")
    return pairs


def rate(hits: np.ndarray) -> tuple[float, float]:
    """A share and its Monte Carlo standard error."""
    p = float(np.mean(hits))
    return p, math.sqrt(p * (1.0 - p) / hits.size)


def false_positive_rate(pairs: dict[str, np.ndarray], alpha: float) -> tuple[float, float]:
    """Share of pairs with any verdict but "inconclusive" at ``alpha``, and its MC SE."""
    return rate(verdict_at(pairs["p_value"], pairs["low"], pairs["high"], alpha)
                != "inconclusive")


def improved_rate(pairs: dict[str, np.ndarray], alpha: float) -> tuple[float, float]:
    """Share of pairs whose verdict at ``alpha`` is "improved", and its MC SE."""
    return rate(verdict_at(pairs["p_value"], pairs["low"], pairs["high"], alpha) == "improved")


# ------------------------------------------------------------------------ sequential


def sequential_trial(dist: str, delta: float, rng: np.random.Generator, *,
                     first: int = FIRST_LOOK, cap: int = CAP, alpha: float = 0.05,
                     fixed: int | None = None, level: float = LEVEL,
                     num_resamples: int = NUM_RESAMPLES,
                     num_permutations: int = NUM_PERMUTATIONS) -> dict[str, Any]:
    """One simulated study run three ways on the same seeds (``cap`` drawn per group).

    Sequential: look at ``first`` seeds at ``nominal_alphas([first])[0]``; if inconclusive,
    extend to ``N = seeds_for_next_look(difference, sd, [first])`` (``cap`` when it would be
    more, or when there is no plan) and look at ``nominal_alphas([first, N])[1]``.
    Naive: look at ``first`` at ``alpha``; if inconclusive extend to
    ``seeds_needed(difference, sd, level=1 - alpha)`` (at least ``first + 1``, at most
    ``cap``) and look again at ``alpha``. ``fixed``: one look at ``fixed`` seeds at the
    first-look level (a study planned at that size).
    """
    values, _ = draw(dist, cap, 2, rng)
    x, y = values[:, 0] + delta, values[:, 1]
    kw = {"level": level, "num_resamples": num_resamples, "num_permutations": num_permutations}
    a1 = sequential.nominal_alphas([first], alpha=alpha)[0]
    looks: dict[int, dict[str, Any]] = {}

    def look(n: int) -> dict[str, Any]:
        if n not in looks:
            looks[n] = _compare(x[:n], y[:n], a1, rng, **kw)
        return looks[n]

    def at(result: dict[str, Any], a: float) -> str:
        return str(verdict_at(result["p_value"], result["ci"][0], result["ci"][1], a))

    r1 = look(first)
    out: dict[str, Any] = {"first_verdict": r1["verdict"], "first_p": r1["p_value"]}
    if r1["verdict"] == "inconclusive":
        n = sequential.seeds_for_next_look(r1["difference"], r1["sd"], [first], alpha=alpha,
                                           max_seeds=cap)
        n = cap if n is None else n
        a2 = sequential.nominal_alphas([first, n], alpha=alpha)[1]
        out.update(seq_n=n, seq_alpha=a2, seq_verdict=at(look(n), a2))
    else:
        out.update(seq_n=first, seq_alpha=a1, seq_verdict=r1["verdict"])
    naive = at(r1, alpha)
    if naive == "inconclusive":
        needed = inference.seeds_needed(r1["difference"], r1["sd"], level=1.0 - alpha)
        n = cap if needed is None else min(cap, max(first + 1, needed))
        out.update(naive_n=n, naive_verdict=at(look(n), alpha))
    else:
        out.update(naive_n=first, naive_verdict=naive)
    if fixed is not None:
        out["fixed_verdict"] = at(look(fixed), a1)
    return out


def sequential_chunk(dist: str, delta: float, cell: Sequence[int], start: int, stop: int, *,
                     root_seed: int = ROOT_SEED, **kwargs: Any) -> list[dict[str, Any]]:
    """``sequential_trial`` for trials ``start..stop-1`` of a cell."""
    return [sequential_trial(dist, delta, _pair_rng(root_seed, cell, i), **kwargs)
            for i in range(start, stop)]


def summarize_sequential(trials: Sequence[dict[str, Any]], *, first: int = FIRST_LOOK,
                         cap: int = CAP) -> dict[str, Any]:
    """Rates (with MC SE) and seed counts of a list of :func:`sequential_trial` results."""
    def share(key: str, value: Any = None) -> tuple[float, float]:
        if value is None:
            return rate(np.array([t[key] != "inconclusive" for t in trials]))
        return rate(np.array([t[key] == value for t in trials]))

    seq_n = np.array([t["seq_n"] for t in trials])
    naive_n = np.array([t["naive_n"] for t in trials])
    out = {
        "trials": len(trials),
        "first_any": share("first_verdict"),
        "first_improved": share("first_verdict", "improved"),
        "seq_any": share("seq_verdict"),
        "seq_improved": share("seq_verdict", "improved"),
        "naive_any": share("naive_verdict"),
        "naive_improved": share("naive_verdict", "improved"),
        "extended": rate(seq_n > first),
        "median_n_extended": float(np.median(seq_n[seq_n > first])) if (seq_n > first).any()
        else math.nan,
        "share_at_cap": float(np.mean(seq_n == cap)),
        "mean_seeds": float(np.mean(seq_n)),
        "naive_extended": rate(naive_n > first),
        "naive_median_n_extended": float(np.median(naive_n[naive_n > first]))
        if (naive_n > first).any() else math.nan,
    }
    if "fixed_verdict" in trials[0]:
        out["fixed_improved"] = share("fixed_verdict", "improved")
        out["fixed_any"] = share("fixed_verdict")
    return out


# ------------------------------------------------------------------------------ running


def _run_job(job: tuple[str, dict[str, Any]]) -> Any:
    kind, kwargs = job
    if kind in ("mean", "difference"):
        fn: Callable[..., Any] = coverage if kind == "mean" else difference_coverage
        rng = np.random.default_rng([kwargs["root_seed"], *kwargs["cell"]])
        return fn(kwargs["dist"], kwargs["num_seeds"], kwargs["num_studies"], rng,
                  num_resamples=kwargs["num_resamples"], seed=rng)
    if kind == "pairs":
        return pairs_chunk(**kwargs)
    if kind == "sequential":
        return sequential_chunk(**kwargs)
    raise ValueError(kind)


def run(sizes: dict[str, Any], workers: int, root_seed: int = ROOT_SEED) -> dict[str, Any]:
    """Every table's simulations; returns all numbers (the JSON)."""
    a1 = first_alpha()
    common = {"num_resamples": sizes["num_resamples"]}
    jobs: list[tuple[str, dict[str, Any]]] = []
    keys: list[tuple] = []
    # Sequential first: its chunks are the longest, so both workers stay busy to the end.
    delta64 = {d: delta_for_seeds(true_moments(d)[1], 64, a1) for d in DISTRIBUTIONS}
    for di, dist in enumerate(DISTRIBUTIONS):
        for variant, delta, count in (("null", 0.0, sizes["seq_null"]),
                                      ("alt", delta64[dist], sizes["seq_alt"])):
            cell = (_TABLE_CODES["sequential"], di, int(variant == "alt"))
            for a, b in _chunks(count, sizes["seq_chunk"]):
                jobs.append(("sequential", {
                    "dist": dist, "delta": delta, "cell": cell, "start": a, "stop": b,
                    "root_seed": root_seed, "cap": sizes["cap"], "level": LEVEL,
                    "fixed": 64 if variant == "alt" else None,
                    "num_permutations": sizes["num_permutations"], **common}))
                keys.append(("sequential", dist, variant))
    for di, dist in enumerate(DISTRIBUTIONS):
        for num_seeds in SEED_COUNTS:
            variants = [("null", 0.0)]
            if num_seeds >= 8:
                variants.append(("alt", delta_for_seeds(true_moments(dist)[1], num_seeds, a1)))
            for variant, delta in variants:
                cell = (_TABLE_CODES["verdict"], di, num_seeds, int(variant == "alt"))
                count = sizes["pairs"].get(num_seeds, sizes["pairs"]["default"])
                for a, b in _chunks(count, sizes["pair_chunk"]):
                    jobs.append(("pairs", {
                        "dist": dist, "num_seeds": num_seeds, "delta": delta, "cell": cell,
                        "start": a, "stop": b, "alpha": a1, "root_seed": root_seed,
                        "level": LEVEL, "num_permutations": sizes["num_permutations"],
                        **common}))
                    keys.append(("pairs", dist, num_seeds, variant, delta))
    for kind in ("mean", "difference"):
        for di, dist in enumerate(DISTRIBUTIONS):
            for num_seeds in SEED_COUNTS:
                jobs.append((kind, {"dist": dist, "num_seeds": num_seeds,
                                    "num_studies": sizes["studies"], "root_seed": root_seed,
                                    "cell": (_TABLE_CODES[kind], di, num_seeds), **common}))
                keys.append((kind, dist, num_seeds))

    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_run_job, jobs, chunksize=1)
    else:
        results = [_run_job(job) for job in jobs]

    out: dict[str, Any] = {"mean": {}, "difference": {}, "verdict": {}, "sequential": {}}
    grouped: dict[tuple, list] = {}
    for key, result in zip(keys, results, strict=True):
        grouped.setdefault(key, []).append(result)
    for key, parts in grouped.items():
        if key[0] in ("mean", "difference"):
            out[key[0]][f"{key[1]}/{key[2]}"] = parts[0]
        elif key[0] == "pairs":
            _, dist, num_seeds, variant, delta = key
            pairs = check_verdicts(_merge(parts), a1)
            cell = out["verdict"].setdefault(f"{dist}/{num_seeds}", {"pairs": {}})
            if variant == "null":
                cell["fpr_first_look"] = false_positive_rate(pairs, a1)
                cell["fpr_0.05"] = false_positive_rate(pairs, 0.05)
            else:
                cell["delta"] = delta
                cell["power_first_look"] = improved_rate(pairs, a1)
                cell["power_0.05"] = improved_rate(pairs, 0.05)
            cell["pairs"][variant] = int(pairs["p_value"].size)
        else:
            _, dist, variant = key
            trials = [t for part in parts for t in part]
            cell = out["sequential"].setdefault(dist, {"delta_64": delta64[dist]})
            cell[variant] = summarize_sequential(trials, cap=sizes["cap"])
    out["first_alpha"] = a1
    out["second_alpha_16_64"] = sequential.nominal_alphas([FIRST_LOOK, 64])[1]
    return out


# ------------------------------------------------------------------------------- tables


def _f(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _pm(pair: Sequence[float], digits: int = 3) -> str:
    return f"{_f(pair[0], digits)} ± {_f(pair[1], digits)}"


def coverage_tables(cells: dict[str, Any], num_studies: int, what: str) -> str:
    methods = inference.INTERVAL_METHODS
    headers = (["distribution", "S"] + [f"cover {m}" for m in methods]
               + [f"width {m}" for m in methods if m != "t"])
    rows = []
    for dist in DISTRIBUTIONS:
        for s in SEED_COUNTS:
            cell = cells[f"{dist}/{s}"]
            rows.append([dist if s == SEED_COUNTS[0] else "", s]
                        + [_f(cell[m]["coverage"]) for m in methods]
                        + [_f(cell[m]["median_width_ratio"], 2) for m in methods if m != "t"])
    se = math.sqrt(LEVEL * (1 - LEVEL) / num_studies)
    notes = []
    for dist in DISTRIBUTIONS:
        for s in SEED_COUNTS:
            for m in methods:
                c = cells[f"{dist}/{s}"][m]
                if c["undefined"] > 0:
                    notes.append(f"{m} undefined (nan, counted as a miss) in "
                                 f"{round(c['undefined'] * num_studies)} of {num_studies} "
                                 f"studies at {dist}, S={s}")
                if c["unbounded"] > 0:
                    notes.append(f"{m} unbounded (an infinite end) in "
                                 f"{round(c['unbounded'] * num_studies)} of {num_studies} "
                                 f"studies at {dist}, S={s}")
    text = (f"Coverage of {what} at nominal {LEVEL:.0%}: share of {num_studies} simulated "
            f"studies per cell whose interval covers the truth (Monte Carlo SE at 0.95: "
            f"{se:.4f}, so ±{2 * se:.3f} is 2 SE). Width: median over studies of the "
            "interval's width / the t interval's width.\n\n" + markdown_table(headers, rows))
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def method_summary(cells: dict[str, Any], num_studies: int, default: str) -> str:
    """Per method: how far from nominal, over all cells, S >= 8 and S >= 16."""
    se = math.sqrt(LEVEL * (1 - LEVEL) / num_studies)
    rows = []
    for m in inference.INTERVAL_METHODS:
        row = [m + (" (default)" if m == default else "")]
        for smin in (4, 8, 16):
            cov = np.array([cells[f"{d}/{s}"][m]["coverage"] for d in DISTRIBUTIONS
                            for s in SEED_COUNTS if s >= smin])
            row.append(f"{np.mean(np.abs(cov - LEVEL)):.3f} / {cov.min():.3f} / "
                       f"{int(np.sum(np.abs(cov - LEVEL) <= 2 * se))}/{cov.size}")
        rows.append(row)
    headers = ["method", "all S", "S >= 8", "S >= 16"]
    return ("Each entry: mean |coverage - 0.95| / lowest coverage / cells within 2 SE of 0.95."
            "\n\n" + markdown_table(headers, rows))


def verdict_table(cells: dict[str, Any], a1: float) -> str:
    headers = ["distribution", "S", "pairs", f"FPR at {a1:g}", "FPR at 0.05", "delta / sd",
               f"power at {a1:g}", "power at 0.05"]
    rows = []
    for dist in DISTRIBUTIONS:
        sd = true_moments(dist)[1]
        for s in SEED_COUNTS:
            c = cells[f"{dist}/{s}"]
            has_alt = "power_first_look" in c
            pairs = str(c["pairs"]["null"]) + (f" / {c['pairs']['alt']}" if has_alt else "")
            rows.append([dist if s == SEED_COUNTS[0] else "", s, pairs,
                         _pm(c["fpr_first_look"]), _pm(c["fpr_0.05"]),
                         _f(c["delta"] / sd, 2) if has_alt else "—",
                         _pm(c["power_first_look"]) if has_alt else "—",
                         _pm(c["power_0.05"]) if has_alt else "—"])
    return (f"compare() verdicts, two unpaired groups of S seeds. FPR: share of null pairs "
            f"(one distribution) with any verdict but inconclusive, at the study's first-look "
            f"level {a1:g} and at 0.05 (± Monte Carlo SE). Power: candidate shifted by delta "
            f"with seeds_needed(delta, true sd, level={1 - a1:g}, power=0.8) = S; share "
            "'improved'. Pairs: null / alternative.\n\n" + markdown_table(headers, rows))


def sequential_tables(cells: dict[str, Any], a1: float, a2: float, cap: int) -> str:
    null_headers = ["distribution", "trials", "FPR 16 only", "FPR sequential", "extended",
                    "median N", "at cap", "FPR naive", "naive extended", "naive median N"]
    alt_headers = ["distribution", "delta / sd", "trials", "power 16 only",
                   "power sequential", "extended", "median N", "mean seeds",
                   "power fixed 64", "power naive"]
    null_rows, alt_rows = [], []
    for dist in DISTRIBUTIONS:
        c = cells[dist]
        n, a = c["null"], c["alt"]
        null_rows.append([dist, n["trials"], _pm(n["first_any"]), _pm(n["seq_any"]),
                          _f(n["extended"][0]), _f(n["median_n_extended"], 0),
                          _f(n["share_at_cap"], 2), _pm(n["naive_any"]),
                          _f(n["naive_extended"][0]), _f(n["naive_median_n_extended"], 0)])
        alt_rows.append([dist, _f(c["delta_64"] / true_moments(dist)[1], 3), a["trials"],
                         _pm(a["first_improved"]), _pm(a["seq_improved"]),
                         _f(a["extended"][0]), _f(a["median_n_extended"], 0),
                         _f(a["mean_seeds"], 1), _pm(a["fixed_improved"]),
                         _pm(a["naive_improved"])])
    return (f"Look at 16 seeds per group at {a1:g}; if inconclusive extend to N = "
            f"seeds_for_next_look(difference, sd, [16]) capped at {cap} (also when there is "
            f"no plan), look again at nominal_alphas([16, N])[1] ({a2:.4f} for N = 64). "
            f"Naive: look at 16 at 0.05, extend to seeds_needed(difference, sd, level=0.95) "
            f"(17..{cap}), look again at 0.05. Under the null (FPR: any verdict but "
            "inconclusive, overall; the design spends 0.048); 'at cap': share of trials "
            f"extended to {cap}.\n\n" + markdown_table(null_headers, null_rows)
            + f"\n\nUnder the alternative with delta such that seeds_needed(delta, sd, "
            f"level={1 - a1:g}) = 64 (power: share 'improved'; fixed 64: one look at 64 "
            f"seeds at {a1:g}; mean seeds: per group, sequential):\n\n"
            + markdown_table(alt_headers, alt_rows))


def machine() -> str:
    uname = platform.uname()
    processor = platform.processor() or uname.machine
    return (f"{uname.system} {uname.release} {processor}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, NumPy {np.__version__}")


def render(result: dict[str, Any]) -> str:
    """Markdown of every table the run made (Tables 1-4, 5-7 or both)."""
    parts = []
    if "mean" in result:
        parts.append(render_seeds(result))
    if "kinds" in result:
        parts.append(render_kinds(result, title="mean" not in result))
    return "\n".join(parts)


def render_kinds(result: dict[str, Any], *, title: bool) -> str:
    """Tables 5-7 with the line that says how they were run."""
    meta = result["meta"]
    sizes = meta["sizes_kinds"]
    line = (
        f"Tables 5-7: {meta['machine']}; {meta['date']}; load average "
        f"{meta['load_before_kinds']} before, {meta['load_after']} after; {meta['workers']} "
        f"worker processes; wall time {meta['wall_kinds_s']:.0f} s. Simulated studies per "
        f"coverage cell: {sizes['coverage']} (Table 7: {sizes['test_sets']} fixed test sets "
        f"x {sizes['coverage'] // sizes['test_sets']} studies); null pairs per "
        f"false-positive cell: {sizes['fpr']}. num_resamples={sizes['num_resamples']}, "
        f"num_permutations={sizes['num_permutations']}, level {LEVEL}, root seed "
        f"{meta['root_seed']}.")
    head = "# Calibration of negres's statistics: metric kinds\n\n" if title else ""
    return (head + line + "\n\n" + kinds.render(result["kinds"], sizes, markdown_table)
            + "\n")


def render_seeds(result: dict[str, Any]) -> str:
    meta = result["meta"]
    a1, a2 = result["first_alpha"], result["second_alpha_16_64"]
    pairs = ", ".join(f"{v}" if k == "default" else f"{v} at S={k}"
                      for k, v in meta["sizes"]["pairs"].items())
    header = (
        f"# Calibration of negres's statistics\n\n"
        f"{meta['machine']}; {meta['date']}; load average {meta['load_before']} before, "
        f"{meta['load_after']} after; {meta['workers']} worker processes; wall time "
        f"{meta['wall_s']:.0f} s. Simulated studies per cell: {meta['sizes']['studies']} "
        f"(Tables 1, 2), pairs per cell {pairs} (Table 3), sequential trials "
        f"{meta['sizes']['seq_null']} null + {meta['sizes']['seq_alt']} alternative per "
        f"distribution (Table 4). num_resamples={meta['sizes']['num_resamples']}, "
        f"num_permutations={meta['sizes']['num_permutations']}, level {LEVEL}, root seed "
        f"{meta['root_seed']}. Default intervals: {inference.DEFAULT_INTERVAL} for a mean, "
        f"{inference.DEFAULT_DIFFERENCE_INTERVAL} for an unpaired difference.\n\n"
        + "Distributions: " + "; ".join(f"{d}: {DESCRIPTIONS[d]}" for d in DISTRIBUTIONS)
        + ".")
    studies = meta["sizes"]["studies"]
    return "\n\n".join([
        header,
        "## Table 1: coverage of the mean\n\n" + coverage_tables(result["mean"], studies,
                                                                  "the mean"),
        "### Methods across Table 1\n\n" + method_summary(result["mean"], studies,
                                                          inference.DEFAULT_INTERVAL),
        "## Table 2: coverage of the difference of two conditions' means (unpaired, S per "
        "group)\n\n" + coverage_tables(result["difference"], studies, "the difference"),
        "### Methods across Table 2\n\n" + method_summary(
            result["difference"], studies, inference.DEFAULT_DIFFERENCE_INTERVAL),
        "## Table 3: verdicts\n\n" + verdict_table(result["verdict"], a1),
        "## Table 4: sequential looks\n\n" + sequential_tables(result["sequential"], a1, a2,
                                                                meta["sizes"]["cap"]),
    ]) + "\n"


FULL = {"studies": 4000, "pairs": {"default": 1000}, "pair_chunk": 100, "seq_null": 2000,
        "seq_alt": 1000, "seq_chunk": 50, "cap": CAP, "num_resamples": NUM_RESAMPLES,
        "num_permutations": NUM_PERMUTATIONS}
QUICK = {"studies": 200, "pairs": {"default": 40}, "pair_chunk": 20, "seq_null": 40,
         "seq_alt": 20, "seq_chunk": 20, "cap": 64, "num_resamples": 500,
         "num_permutations": 500}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument("--tables", choices=("all", "seeds", "kinds"), default="all",
                        help="seeds: Tables 1-4 (independent per-seed values); kinds: Tables "
                             "5-7 (pairwise and example-based metrics); all: both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=ROOT_SEED)
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown file (the JSON goes beside it)")
    args = parser.parse_args(argv)
    results = Path(__file__).resolve().parent / "results"
    name = "stats_calibration_kinds.md" if args.tables == "kinds" else "stats_calibration.md"
    out = args.out or (results / "quick" if args.quick else results) / name
    sizes = QUICK if args.quick else FULL
    sizes_kinds = kinds.QUICK if args.quick else kinds.FULL
    result: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "workers": args.workers, "root_seed": args.seed, "quick": args.quick,
        "tables": args.tables, "default_interval": inference.DEFAULT_INTERVAL,
        "default_difference_interval": inference.DEFAULT_DIFFERENCE_INTERVAL,
    }
    if args.tables in ("all", "seeds"):
        meta["load_before"] = load_average()
        start = time.perf_counter()
        result = run(sizes, args.workers, args.seed)
        meta.update(wall_s=time.perf_counter() - start, sizes=sizes)
    if args.tables in ("all", "kinds"):
        meta["load_before_kinds"] = load_average()
        start = time.perf_counter()
        result["kinds"] = kinds.run(sizes_kinds, args.workers, args.seed)
        meta.update(wall_kinds_s=time.perf_counter() - start, sizes_kinds=sizes_kinds)
    meta["load_after"] = load_average()
    result["meta"] = meta
    text = render(result)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    if "kinds" in result and result["kinds"]["outside"]:
        print("cells outside the acceptance bounds:\n  "
              + "\n  ".join(result["kinds"]["outside"]), file=sys.stderr)
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
