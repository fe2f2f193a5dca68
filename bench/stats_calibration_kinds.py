"""Calibration of the intervals and comparisons of metrics that are not independent per-seed
values: Tables 5-7 of docs/calibration.md (``negres.statistics.sampling``).

Run by ``bench/stats_calibration.py`` (``--tables kinds`` for these alone). Each coverage
cell is many simulated studies whose truth is known; each false-positive cell many pairs of
conditions drawn from one distribution (any verdict but "inconclusive" at the default level
0.95 is false).

5. Pairwise metrics (row means of a seed x seed matrix). Noise cases: ``similarity_ij =
   0.5 + a_i + a_j + e_ij`` with (sd(a), sd(e)) = (0.1, 0.05) seed-dominated, (0.04, 0.1)
   mixed and (0, 0.1) pair-dominated (true mean 0.5); and ``cosine``: the cosine similarity
   of per-seed attribution vectors of 64 features, each a fixed shared signal (norm 1) plus
   Gaussian noise of norm about ``sigma_i = exp(0.3 g_i)``, ``g_i ~ N(0, 1)``, a seed's own
   noise level (bounded, not additive; true mean by Monte Carlo over 10^6 pairs of seeds).
   Coverage of the mean off-diagonal value at S in {8, 16, 32} by ``describe_pairwise``'s
   ``ci``, by the old per-seed treatment (``describe`` of the row means), by the plain
   leave-one-seed-out jackknife t interval and by the unbiased U-statistic variance's t
   interval. For speed the two bootstrap-t intervals of a cell are one vectorised
   ``inference.bootstrap_mean_ci`` call over its studies (of the effective values
   ``sampling.pairwise_values`` and of the row means; the studies share resample indices,
   which does not bias coverage), checked equal to ``describe_pairwise(...)["ci"]`` and
   ``describe(row means)["ci"]`` study by study for the first ``check`` studies of a cell.
   False positives of ``compare_pairwise`` against ``compare`` of the row means: unpaired,
   two independent draws of a case; paired, two methods of the same seeds (seed effects
   ``a`` shared, each method its own seed effects of half their sd and its own pair noise;
   ``cosine``: each method adds its own noise of norm 0.5 to the seed's attribution).
6. Metrics over test examples, (S, N) 1/0 correct: example ``j``'s difficulty ``p_j ~
   Beta(4, 1.5)``, seed ``i``'s skill ``a_i ~ N(0, 0.3^2)``, correct with probability
   ``expit(logit(p_j) + a_i)``; a fresh test set per simulated study. The data distribution's
   accuracy (the truth) by quadrature. Coverage at S in {4, 16, 64} and N in {50, 1000}
   by ``describe_examples`` (estimand "distribution", per study) and by the seeds-only
   interval (``describe``'s of the seeds' means, vectorised and checked as above).
   False positives of ``compare_examples`` (estimand "distribution") and of ``compare`` of
   the seeds' means (the old treatment, rebuilt from the same call's permutation p-value
   and intervals, and checked against ``compare`` itself for the first ``check`` pairs of
   each chunk), for designs: ``shared`` (unpaired seeds, one test set); ``shared+effects``
   (each condition also moves each example's logit by its own N(0, 0.3^2): the conditions
   differ on this test set, not over the distribution); ``paired`` (the same seeds and test
   set evaluated again with fresh per-example noise: a shift that changes nothing);
   ``paired+effects`` (the same seeds; each condition moves each seed's logit by its own
   N(0, 0.1^2) and each example's by its own N(0, 0.3^2)); ``separate`` (each condition its
   own test set of N examples, which compare_examples, seeing equal sizes, takes as shared);
   ``separate N/2`` (the baseline's own test set has N/2 examples: independent sets).
7. The "this test set" estimand: ``test_sets`` fixed test sets per cell (difficulties drawn
   once), fresh seeds per study; the truth is the mean over seeds on that test set
   (``mean_j E_a expit(logit(p_j) + a)``, by Gauss-Hermite quadrature). Coverage of it by
   ``describe_examples(estimand="test_set")`` and by the "distribution" interval.

Pair, study and chunk ``i`` of a cell draws from ``numpy.random.default_rng([root_seed,
table, *cell, i])``, whichever worker runs it.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from scipy import integrate, special
from scipy import stats as scipy_stats

from negres.statistics import inference, sampling

LEVEL = 0.95
ROOT_SEED = 20240601
NUM_RESAMPLES = 2000
NUM_PERMUTATIONS = 2000
ACCEPT = (0.935, 0.965)  # issue 27's acceptance band of a 95% interval
PAIR_DOMINATED_HIGH = 0.99  # pair-dominated noise may be conservative up to this

# ----------------------------------------------------------------------- pairwise data

PAIR_MEAN = 0.5
PAIR_CASES = {"seed": (0.1, 0.05), "mixed": (0.04, 0.1), "pair": (0.0, 0.1), "cosine": None}
PAIR_DESCRIPTIONS = {
    "seed": "seed-dominated: sd(a) 0.1, sd(e) 0.05",
    "mixed": "mixed: sd(a) 0.04, sd(e) 0.1",
    "pair": "pair-dominated: sd(a) 0, sd(e) 0.1",
    "cosine": "cosine of 64-feature attributions, seed noise exp(0.3 N(0,1))",
}
PAIR_SEEDS = (8, 16, 32)
COSINE_DIM, COSINE_LOG_SD, COSINE_METHOD_NOISE = 64, 0.3, 0.5
COSINE_TRUTH_PAIRS = 1_000_000


@cache
def cosine_signal() -> np.ndarray:
    """The attributions' shared signal: a fixed unit vector."""
    s = np.random.default_rng(7).standard_normal(COSINE_DIM)
    return s / np.linalg.norm(s)


def attributions(rng: np.random.Generator, num_studies: int, num_seeds: int) -> np.ndarray:
    """``(M, S, D)``: the shared signal plus each seed's noise at its own level."""
    sigma = np.exp(COSINE_LOG_SD * rng.standard_normal((num_studies, num_seeds, 1)))
    noise = rng.standard_normal((num_studies, num_seeds, COSINE_DIM)) / math.sqrt(COSINE_DIM)
    return cosine_signal() + sigma * noise


def cosine_matrices(v: np.ndarray) -> np.ndarray:
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.einsum("msd,mtd->mst", u, u)


@cache
def cosine_truth() -> tuple[float, float]:
    """E cos(v_i, v_j) of two independent seeds (Monte Carlo over 10^6 pairs) and its MC SE."""
    rng = np.random.default_rng(8)
    values = []
    for _ in range(COSINE_TRUTH_PAIRS // 100_000):
        v = attributions(rng, 100_000, 2)
        u = v / np.linalg.norm(v, axis=-1, keepdims=True)
        values.append(np.sum(u[:, 0] * u[:, 1], axis=-1))
    c = np.concatenate(values)
    return float(c.mean()), float(c.std() / math.sqrt(c.size))


def pair_truth(case: str) -> float:
    return cosine_truth()[0] if case == "cosine" else PAIR_MEAN


def _additive(a: np.ndarray, rng: np.random.Generator, pair_sd: float) -> np.ndarray:
    """``0.5 + a_i + a_j + e_ij`` for seed effects ``a (M, S)``, symmetric, diagonal 1."""
    m_, s = a.shape
    e = rng.normal(0.0, pair_sd, (m_, s, s))
    m = PAIR_MEAN + a[:, :, None] + a[:, None, :] + (e + e.swapaxes(1, 2)) / math.sqrt(2.0)
    m[:, np.arange(s), np.arange(s)] = 1.0
    return m


def pair_matrices(case: str, num_seeds: int, num_studies: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``(M, S, S)`` similarity matrices of ``num_studies`` studies under ``case``."""
    if case == "cosine":
        return cosine_matrices(attributions(rng, num_studies, num_seeds))
    seed_sd, pair_sd = PAIR_CASES[case]
    return _additive(rng.normal(0.0, seed_sd, (num_studies, num_seeds)), rng, pair_sd)


def paired_pair_matrices(case: str, num_seeds: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two methods' ``(S, S)`` matrices of the same seeds, one distribution (see the top)."""
    if case == "cosine":
        v = attributions(rng, 1, num_seeds)
        return tuple(cosine_matrices(v + COSINE_METHOD_NOISE * rng.standard_normal(v.shape)
                                     / math.sqrt(COSINE_DIM))[0] for _ in range(2))
    seed_sd, pair_sd = PAIR_CASES[case]
    a = rng.normal(0.0, seed_sd, (1, num_seeds))
    return tuple(_additive(a + rng.normal(0.0, seed_sd / 2.0, a.shape), rng, pair_sd)[0]
                 for _ in range(2))


def row_means(m: np.ndarray) -> np.ndarray:
    """Each seed's mean over the other seeds (what a pairwise metric holds per seed)."""
    s = m.shape[-1]
    return (m.sum(axis=-1) - np.diagonal(m, axis1=-2, axis2=-1)) / (s - 1)


# ----------------------------------------------------------------------- examples data

SKILL_SD = 0.3
BETA = (4.0, 1.5)
EFFECT_SEED_SD, EFFECT_EXAMPLE_SD = 0.1, 0.3
EXAMPLE_SEEDS = (4, 16, 64)
EXAMPLE_COUNTS = (50, 1000)
DESIGNS = ("shared", "shared+effects", "paired", "paired+effects", "separate",
           "separate N/2")
DESIGN_DESCRIPTIONS = {
    "shared": "unpaired seeds, one test set",
    "shared+effects": "unpaired, one test set; each condition moves each example's logit by "
                      "its own N(0, 0.3^2)",
    "paired": "the same seeds and test set again, fresh per-example noise",
    "paired+effects": "the same seeds; each condition moves each seed's logit by its own "
                      "N(0, 0.1^2) and each example's by its own N(0, 0.3^2)",
    "separate": "unpaired, each condition its own test set of N examples (taken as shared)",
    "separate N/2": "unpaired, the baseline's own test set of N/2 examples",
}
_GH = np.polynomial.hermite_e.hermegauss(64)
_GH_NODES, _GH_WEIGHTS = _GH[0], _GH[1] / _GH[1].sum()


def difficulty_logits(rng: np.random.Generator, num_examples: int) -> np.ndarray:
    p = rng.beta(*BETA, num_examples)
    return np.log(p) - np.log1p(-p)


def correct(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """1/0 per seed and example, correct with probability ``expit(logits)``."""
    return (rng.random(logits.shape) < special.expit(logits)).astype(np.float64)


def seed_averaged(logits: np.ndarray) -> np.ndarray:
    """``E_a expit(logit + a)``, ``a ~ N(0, SKILL_SD^2)``, by Gauss-Hermite quadrature."""
    return special.expit(np.asarray(logits)[..., None] + SKILL_SD * _GH_NODES) @ _GH_WEIGHTS


@cache
def distribution_accuracy() -> float:
    """The accuracy over the data distribution: E over Beta difficulty and seed skill."""
    def integrand(p: float) -> float:
        return float(scipy_stats.beta.pdf(p, *BETA) * seed_averaged(math.log(p / (1 - p))))
    value, _ = integrate.quad(integrand, 0.0, 1.0, epsabs=1e-12, epsrel=1e-12, limit=200)
    return float(value)


def draw_design(design: str, num_seeds: int, num_examples: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Candidate and baseline ``(S, N)`` of one null pair, and whether they are paired."""
    s, n = num_seeds, num_examples
    skill = rng.normal(0.0, SKILL_SD, (s, 1))
    if design.startswith("separate"):
        ny = n // 2 if design == "separate N/2" else n
        x = correct(rng, difficulty_logits(rng, n)[None, :] + skill)
        y = correct(rng, difficulty_logits(rng, ny)[None, :] + rng.normal(0.0, SKILL_SD, (s, 1)))
        return x, y, False
    logits = difficulty_logits(rng, n)[None, :]
    if design == "shared":
        return (correct(rng, logits + skill),
                correct(rng, logits + rng.normal(0.0, SKILL_SD, (s, 1))), False)
    if design == "shared+effects":
        return tuple(correct(rng, logits + rng.normal(0.0, SKILL_SD, (s, 1))
                             + rng.normal(0.0, EFFECT_EXAMPLE_SD, (1, n)))
                     for _ in range(2)) + (False,)
    if design == "paired":
        return correct(rng, logits + skill), correct(rng, logits + skill), True
    if design == "paired+effects":
        return tuple(correct(rng, logits + skill + rng.normal(0.0, EFFECT_SEED_SD, (s, 1))
                             + rng.normal(0.0, EFFECT_EXAMPLE_SD, (1, n)))
                     for _ in range(2)) + (True,)
    raise ValueError(f"unknown design {design!r}; one of {DESIGNS}")


# ------------------------------------------------------------------------ simulations


def _bootstrap_t(values: np.ndarray, num_resamples: int, seed: Any) -> tuple[np.ndarray, ...]:
    ci = inference.bootstrap_mean_ci(values, level=LEVEL, num_resamples=num_resamples, seed=seed)
    return (np.asarray(ci["bootstrap_t_low"], dtype=np.float64),
            np.asarray(ci["bootstrap_t_high"], dtype=np.float64))


def _covers(low: Any, high: Any, truth: Any) -> np.ndarray:
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return (low <= truth) & (truth <= high)  # nan: a miss


def _same(a: Sequence[float], b: Sequence[float], what: str) -> None:
    if not np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-10,
                       atol=1e-12, equal_nan=True):
        raise AssertionError(f"{what}: the bench's interval {list(b)} is not the API's "
                             f"{list(a)}")


def pairwise_coverage(case: str, num_seeds: int, num_studies: int, rng: np.random.Generator,
                      *, num_resamples: int = NUM_RESAMPLES, check: int = 5) -> dict[str, Any]:
    """Coverage of the mean off-diagonal value by each interval (see the module docstring)."""
    mats = pair_matrices(case, num_seeds, num_studies, rng)
    truth = pair_truth(case)
    effective = np.stack([sampling.pairwise_values(m) for m in mats], axis=1)  # (S, M)
    rows = row_means(mats).T  # (S, M)
    variances = [sampling.u_statistic_variances(m) for m in mats]
    theta = np.array([v["mean"] for v in variances])
    q = scipy_stats.t.ppf(0.5 + LEVEL / 2.0, num_seeds - 1)
    new = _bootstrap_t(effective, num_resamples, rng)
    old = _bootstrap_t(rows, num_resamples, rng)
    out: dict[str, Any] = {"studies": num_studies, "truth": truth}
    for name, (low, high) in (("new", new), ("old", old)):
        out[name] = float(np.mean(_covers(low, high, truth)))
    for name in ("jackknife", "unbiased"):
        half = q * np.sqrt([v[name] for v in variances])
        out[name] = float(np.mean(_covers(theta - half, theta + half, truth)))
    out["width_new_over_old"] = _median_ratio(new[1] - new[0], old[1] - old[0])
    out["width_new_over_jackknife"] = _median_ratio(
        new[1] - new[0], 2 * q * np.sqrt([v["jackknife"] for v in variances]))
    for i in range(min(check, num_studies)):  # the bench's intervals are the API's
        k = 1000 + i
        _same(sampling.describe_pairwise(mats[i], num_resamples=num_resamples, seed=k)["ci"],
              _pair(_bootstrap_t(effective[:, i], num_resamples, k)), "describe_pairwise")
        _same(inference.describe(rows[:, i], num_resamples=num_resamples, seed=k)["ci"],
              _pair(_bootstrap_t(rows[:, i], num_resamples, k)), "describe(row means)")
    return out


def _median_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """The median of ``a / b`` over the studies where both are finite and ``b > 0`` (a
    seeds-only interval has no width where every seed scored the same)."""
    ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
    return float(np.median(a[ok] / b[ok])) if ok.any() else math.nan


def _pair(ci: tuple[np.ndarray, ...]) -> list[float]:
    return [float(ci[0]), float(ci[1])]


def _called(verdict: str) -> bool:
    return verdict != "inconclusive"


def pairwise_fpr_chunk(case: str, num_seeds: int, paired: bool, cell: Sequence[int],
                       start: int, stop: int, *, root_seed: int = ROOT_SEED,
                       num_resamples: int = NUM_RESAMPLES,
                       num_permutations: int = NUM_PERMUTATIONS) -> dict[str, list]:
    """Null pairs ``start..stop-1``: verdicts of ``compare_pairwise`` and of ``compare`` of
    the row means (True where not "inconclusive")."""
    out: dict[str, list] = {"new": [], "old": [], "p_new": [], "p_old": []}
    kw = {"num_resamples": num_resamples, "num_permutations": num_permutations}
    for i in range(start, stop):
        rng = np.random.default_rng([root_seed, 5, *cell, i])
        if paired:
            mx, my = paired_pair_matrices(case, num_seeds, rng)
        else:
            mx, my = pair_matrices(case, num_seeds, 2, rng)
        seed = int(rng.integers(2**62))
        new = sampling.compare_pairwise(mx, my, paired=paired, seed=seed, **kw)
        old = inference.compare(row_means(mx), row_means(my), paired=paired, seed=seed, **kw)
        out["new"].append(_called(new["verdict"]))
        out["old"].append(_called(old["verdict"]))
        out["p_new"].append(new["p_value"])
        out["p_old"].append(old["p_value"])
    return out


def examples_coverage(num_seeds: int, num_examples: int, num_studies: int,
                      rng: np.random.Generator, *, num_resamples: int = NUM_RESAMPLES,
                      check: int = 5) -> dict[str, Any]:
    """Coverage of the distribution's accuracy, a fresh test set per study (Table 6)."""
    truth = distribution_accuracy()
    means = np.empty((num_seeds, num_studies))
    vc = np.empty((num_studies, 2))
    df = np.empty(num_studies)
    kept = []
    for i in range(num_studies):
        logits = difficulty_logits(rng, num_examples)[None, :]
        y = correct(rng, logits + rng.normal(0.0, SKILL_SD, (num_seeds, 1)))
        # The distribution interval does not depend on the bootstrap (checked below).
        d = sampling.describe_examples(y, num_resamples=20, seed=0)
        vc[i], df[i] = d["ci"], d["variance_components"]["df"]
        means[:, i] = y.mean(axis=1)
        if i < check:
            kept.append(y)
    seeds_only = _bootstrap_t(means, num_resamples, rng)
    for i, y in enumerate(kept):
        k = 2000 + i
        full = sampling.describe_examples(y, num_resamples=num_resamples, seed=k)
        _same(full["ci"], vc[i], "describe_examples (distribution)")
        _same(sampling.describe_examples(y, estimand="test_set", num_resamples=num_resamples,
                                         seed=k)["ci"],
              _pair(_bootstrap_t(means[:, i], num_resamples, k)), "describe_examples (test_set)")
    return {
        "studies": num_studies, "truth": truth,
        "distribution": float(np.mean(_covers(vc[:, 0], vc[:, 1], truth))),
        "seeds_only": float(np.mean(_covers(*seeds_only, truth))),
        "width_ratio": _median_ratio(vc[:, 1] - vc[:, 0], seeds_only[1] - seeds_only[0]),
        "median_df": float(np.nanmedian(df)),
    }


def test_set_coverage(num_seeds: int, num_examples: int, num_studies: int, num_test_sets: int,
                      rng: np.random.Generator, *, num_resamples: int = NUM_RESAMPLES,
                      check: int = 5) -> dict[str, Any]:
    """Coverage of a fixed test set's mean over seeds (Table 7)."""
    per_set = max(1, num_studies // num_test_sets)
    total = per_set * num_test_sets
    means = np.empty((num_seeds, total))
    truths, vc = np.empty(total), np.empty((total, 2))
    kept = []
    for k in range(num_test_sets):
        logits = difficulty_logits(rng, num_examples)
        truth = float(np.mean(seed_averaged(logits)))
        for j in range(per_set):
            i = k * per_set + j
            y = correct(rng, logits[None, :] + rng.normal(0.0, SKILL_SD, (num_seeds, 1)))
            vc[i] = sampling.describe_examples(y, num_resamples=20, seed=0)["ci"]
            means[:, i], truths[i] = y.mean(axis=1), truth
            if len(kept) < check:
                kept.append((i, y))
    test_set = _bootstrap_t(means, num_resamples, rng)
    for i, y in kept:
        _same(sampling.describe_examples(y, estimand="test_set", num_resamples=num_resamples,
                                         seed=3000 + i)["ci"],
              _pair(_bootstrap_t(means[:, i], num_resamples, 3000 + i)),
              "describe_examples (test_set)")
    return {
        "studies": total, "test_sets": num_test_sets,
        "test_set": float(np.mean(_covers(*test_set, truths))),
        "distribution": float(np.mean(_covers(vc[:, 0], vc[:, 1], truths))),
        "width_ratio": _median_ratio(vc[:, 1] - vc[:, 0], test_set[1] - test_set[0]),
    }


def examples_fpr_chunk(design: str, num_seeds: int, num_examples: int, cell: Sequence[int],
                       start: int, stop: int, *, root_seed: int = ROOT_SEED,
                       num_resamples: int = NUM_RESAMPLES,
                       num_permutations: int = NUM_PERMUTATIONS,
                       check: int = 2) -> dict[str, list]:
    """Null pairs ``start..stop-1`` of a design: ``compare_examples``'s verdict and the one
    ``compare`` of the seeds' means gives (True where not "inconclusive")."""
    out: dict[str, list] = {"new": [], "old": [], "p_new": []}
    kw = {"num_resamples": num_resamples, "num_permutations": num_permutations}
    for i in range(start, stop):
        rng = np.random.default_rng([root_seed, 6, *cell, i])
        x, y, paired = draw_design(design, num_seeds, num_examples, rng)
        seed = int(rng.integers(2**62))
        new = sampling.compare_examples(x, y, paired=paired, seed=seed, **kw)
        # compare_examples ran compare() on the seeds' means and kept its permutation
        # p-value and intervals: the old verdict from them (checked below).
        mx, my = x.mean(axis=1), y.mean(axis=1)
        p_old = max(inference.t_test(mx, my, paired=paired)["p_value"],
                    new["p_value_permutation"])
        ci_old = new["ci_bootstrap_t"] if paired else new["ci_t"]
        old = inference.verdict(ci_old, p_old, level=LEVEL, higher_is_better=True,
                                alpha=new["alpha"])
        if i - start < check:
            direct = inference.compare(mx, my, paired=paired, seed=seed, **kw)
            if direct["verdict"] != old or not np.isclose(direct["p_value"], p_old,
                                                          equal_nan=True):
                raise AssertionError(f"the rebuilt seeds-only verdict {old} (p {p_old}) is not "
                                     f"compare()'s {direct['verdict']} (p {direct['p_value']})")
        out["new"].append(_called(new["verdict"]))
        out["old"].append(_called(old))
        out["p_new"].append(new["p_value"])
    return out


# ------------------------------------------------------------------------------ running

FULL = {"coverage": 2000, "fpr": 1000, "fpr_chunk": 100, "test_sets": 20, "check": 5,
        "pair_seeds": PAIR_SEEDS, "example_seeds": EXAMPLE_SEEDS,
        "example_counts": EXAMPLE_COUNTS, "num_resamples": NUM_RESAMPLES,
        "num_permutations": NUM_PERMUTATIONS}
QUICK = {"coverage": 100, "fpr": 20, "fpr_chunk": 10, "test_sets": 4, "check": 2,
         "pair_seeds": PAIR_SEEDS, "example_seeds": EXAMPLE_SEEDS,
         "example_counts": EXAMPLE_COUNTS, "num_resamples": 500, "num_permutations": 500}


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _run_job(job: tuple[str, dict[str, Any]]) -> Any:
    kind, kw = job
    if kind == "pair_fpr":
        return pairwise_fpr_chunk(**kw)
    if kind == "example_fpr":
        return examples_fpr_chunk(**kw)
    rng = np.random.default_rng([kw.pop("root_seed"), *kw.pop("cell")])
    if kind == "pair_coverage":
        return pairwise_coverage(rng=rng, **kw)
    if kind == "example_coverage":
        return examples_coverage(rng=rng, **kw)
    if kind == "test_set_coverage":
        return test_set_coverage(rng=rng, **kw)
    raise ValueError(kind)


def rate(hits: Sequence[bool]) -> tuple[float, float]:
    """A share and its Monte Carlo standard error."""
    h = np.asarray(hits, dtype=bool)
    p = float(np.mean(h))
    return p, math.sqrt(p * (1.0 - p) / h.size)


def jobs_of(sizes: dict[str, Any], root_seed: int) -> list[tuple[tuple, tuple[str, dict]]]:
    """``(key, job)`` for every simulation, the longest (false positives) first."""
    common = {"num_resamples": sizes["num_resamples"]}
    fpr = {"root_seed": root_seed, "num_permutations": sizes["num_permutations"], **common}
    out = []
    cases, designs = list(PAIR_CASES), list(DESIGNS)
    for s in sorted(sizes["example_seeds"], reverse=True):
        for n in sizes["example_counts"]:
            for design in designs:
                cell = (designs.index(design), s, n)
                for a, b in _chunks(sizes["fpr"], sizes["fpr_chunk"]):
                    out.append((("example_fpr", design, s, n), ("example_fpr", {
                        "design": design, "num_seeds": s, "num_examples": n, "cell": cell,
                        "start": a, "stop": b, **fpr})))
    for s in sorted(sizes["pair_seeds"], reverse=True):
        for case in cases:
            for paired in (False, True):
                cell = (cases.index(case), s, int(paired))
                for a, b in _chunks(sizes["fpr"], sizes["fpr_chunk"]):
                    out.append((("pair_fpr", case, s, paired), ("pair_fpr", {
                        "case": case, "num_seeds": s, "paired": paired, "cell": cell,
                        "start": a, "stop": b, **fpr})))
    for case in cases:
        for s in sizes["pair_seeds"]:
            out.append((("pair_coverage", case, s), ("pair_coverage", {
                "case": case, "num_seeds": s, "num_studies": sizes["coverage"],
                "check": sizes["check"], "root_seed": root_seed,
                "cell": (5, 0, cases.index(case), s), **common})))
    for s in sizes["example_seeds"]:
        for n in sizes["example_counts"]:
            out.append((("example_coverage", s, n), ("example_coverage", {
                "num_seeds": s, "num_examples": n, "num_studies": sizes["coverage"],
                "check": sizes["check"], "root_seed": root_seed, "cell": (6, 0, s, n),
                **common})))
            out.append((("test_set_coverage", s, n), ("test_set_coverage", {
                "num_seeds": s, "num_examples": n, "num_studies": sizes["coverage"],
                "num_test_sets": sizes["test_sets"], "check": sizes["check"],
                "root_seed": root_seed, "cell": (7, 0, s, n), **common})))
    return out


def run(sizes: dict[str, Any], workers: int, root_seed: int = ROOT_SEED) -> dict[str, Any]:
    """Every simulation of Tables 5-7; returns all numbers (JSON-ready)."""
    cosine_truth(), distribution_accuracy()  # once, before the workers fork
    keyed = jobs_of(sizes, root_seed)
    jobs = [job for _, job in keyed]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_run_job, jobs, chunksize=1)
    else:
        results = [_run_job(job) for job in jobs]
    grouped: dict[tuple, list] = {}
    for (key, _), result in zip(keyed, results, strict=True):
        grouped.setdefault(key, []).append(result)
    out: dict[str, Any] = {"pair_coverage": {}, "pair_fpr": {}, "example_coverage": {},
                           "example_fpr": {}, "test_set_coverage": {},
                           "cosine_truth": cosine_truth(),
                           "distribution_accuracy": distribution_accuracy()}
    for key, parts in grouped.items():
        kind, *rest = key
        name = "/".join(str(r) for r in rest)
        if kind in ("pair_fpr", "example_fpr"):
            merged = {k: [v for p in parts for v in p[k]] for k in parts[0]}
            out[kind][name] = {"pairs": len(merged["new"]), "new": rate(merged["new"]),
                               "old": rate(merged["old"])}
        else:
            out[kind][name] = parts[0]
    out["outside"] = misses(out, sizes)
    return out


def misses(result: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    """The cells of the new intervals and comparisons outside the acceptance bounds."""
    out = []
    for case in PAIR_CASES:
        high = PAIR_DOMINATED_HIGH if case == "pair" else ACCEPT[1]
        for s in sizes["pair_seeds"]:
            c = result["pair_coverage"][f"{case}/{s}"]
            if not ACCEPT[0] <= c["new"] <= high:
                out.append(f"Table 5 coverage, {case}, S={s}: {c['new']:.3f} of {c['studies']}")
            for paired in (False, True):
                f = result["pair_fpr"][f"{case}/{s}/{paired}"]
                if f["new"][0] > 0.05 + 2 * math.sqrt(0.05 * 0.95 / f["pairs"]):
                    out.append(f"Table 5 FPR, {case}, S={s}, paired={paired}: "
                               f"{f['new'][0]:.3f} of {f['pairs']}")
    for s in sizes["example_seeds"]:
        for n in sizes["example_counts"]:
            for table, key, what in (("example_coverage", "distribution", "Table 6"),
                                     ("test_set_coverage", "test_set", "Table 7")):
                c = result[table][f"{s}/{n}"]
                if not ACCEPT[0] <= c[key] <= ACCEPT[1]:
                    out.append(f"{what} coverage ({key}), S={s}, N={n}: {c[key]:.3f} of "
                               f"{c['studies']}")
            for design in DESIGNS:
                f = result["example_fpr"][f"{design}/{s}/{n}"]
                if f["new"][0] > 0.05 + 2 * math.sqrt(0.05 * 0.95 / f["pairs"]):
                    out.append(f"Table 6 FPR, {design}, S={s}, N={n}: {f['new'][0]:.3f} of "
                               f"{f['pairs']}")
    return out


# ------------------------------------------------------------------------------- tables


def _f(value: float, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pm(pair: Sequence[float]) -> str:
    return f"{_f(pair[0])} ± {_f(pair[1])}"


def render(result: dict[str, Any], sizes: dict[str, Any], markdown_table: Any) -> str:
    """Tables 5-7 as markdown (``markdown_table`` from bench/tables.py)."""
    cov, fpr = sizes["coverage"], sizes["fpr"]
    se = math.sqrt(LEVEL * (1 - LEVEL) / cov)
    fse = math.sqrt(0.05 * 0.95 / fpr)
    truth, truth_se = result["cosine_truth"]
    rows = []
    for case in PAIR_CASES:
        for s in sizes["pair_seeds"]:
            c = result["pair_coverage"][f"{case}/{s}"]
            rows.append([PAIR_DESCRIPTIONS[case] if s == sizes["pair_seeds"][0] else "", s,
                         _f(c["new"]), _f(c["old"]), _f(c["jackknife"]), _f(c["unbiased"]),
                         _f(c["width_new_over_old"], 2), _f(c["width_new_over_jackknife"], 2)])
    t5a = markdown_table(["noise", "S", "describe_pairwise (default)", "old: describe(row means)",
                          "jackknife t", "unbiased U-stat t", "width / old",
                          "width / jackknife"], rows)
    rows = []
    for case in PAIR_CASES:
        for s in sizes["pair_seeds"]:
            u, p = (result["pair_fpr"][f"{case}/{s}/{paired}"] for paired in (False, True))
            rows.append([PAIR_DESCRIPTIONS[case] if s == sizes["pair_seeds"][0] else "", s,
                         _pm(u["new"]), _pm(u["old"]), _pm(p["new"]), _pm(p["old"])])
    t5b = markdown_table(["noise", "S", "unpaired: compare_pairwise", "unpaired: old",
                          "paired: compare_pairwise", "paired: old"], rows)
    rows = []
    for s in sizes["example_seeds"]:
        for n in sizes["example_counts"]:
            c = result["example_coverage"][f"{s}/{n}"]
            rows.append([s, n, _f(c["distribution"]), _f(c["seeds_only"]),
                         _f(c["width_ratio"], 2), _f(c["median_df"], 0)])
    t6a = markdown_table(["S", "N", "describe_examples (distribution)", "seeds only",
                          "width / seeds only", "median df"], rows)
    rows = []
    for design in DESIGNS:
        first = True
        for s in sizes["example_seeds"]:
            for n in sizes["example_counts"]:
                f = result["example_fpr"][f"{design}/{s}/{n}"]
                rows.append([design if first else "", s, n, _pm(f["new"]), _pm(f["old"])])
                first = False
    t6b = markdown_table(["design", "S", "N", "compare_examples", "old: compare(seed means)"],
                         rows)
    rows = []
    for s in sizes["example_seeds"]:
        for n in sizes["example_counts"]:
            c = result["test_set_coverage"][f"{s}/{n}"]
            rows.append([s, n, f"{c['test_sets']} x {c['studies'] // c['test_sets']}",
                         _f(c["test_set"]), _f(c["distribution"]), _f(c["width_ratio"], 2)])
    t7 = markdown_table(["S", "N", "test sets x studies", "estimand test_set",
                         "estimand distribution", "width distribution / test_set"], rows)
    designs = "; ".join(f"{d}: {DESIGN_DESCRIPTIONS[d]}" for d in DESIGNS)
    text = [
        "## Table 5: pairwise metrics (row means of a seed x seed matrix)\n\n"
        f"Coverage of the mean off-diagonal value at nominal 95%: share of {cov} simulated "
        f"studies per cell (Monte Carlo SE at 0.95: {se:.4f}). Similarities 0.5 + a_i + a_j "
        "+ e_ij, or the cosine of per-seed attribution vectors (a shared unit signal plus "
        "noise of a seed's own scale; true mean "
        f"{truth:.4f} ± {truth_se:.4f} by Monte Carlo). Old: describe() of the seeds' row means "
        "as if independent. Jackknife t / unbiased U-stat t: the mean ± t(S-1) times the "
        "square root of the leave-one-seed-out jackknife's / Hoeffding's unbiased variance "
        "alone. Width: median ratio of describe_pairwise's interval to the old one and to the "
        "jackknife t interval.\n\n" + t5a,
        f"False positives: share of {fpr} null pairs per cell with any verdict but "
        f"inconclusive at level {LEVEL} (± Monte Carlo SE; 0.05 + 2 SE = "
        f"{0.05 + 2 * fse:.3f}). Unpaired: two conditions drawn independently from one case. "
        "Paired: two methods of the same seeds (shared seed effects plus each method's own "
        "seed effects of half their sd and own pair noise; cosine: each method adds its own "
        "noise of norm 0.5 to the seed's attribution vector). Old: compare() of the row "
        "means.\n\n" + t5b,
        "## Table 6: metrics over test examples (per-seed means over N shared examples)\n\n"
        "Coverage of the accuracy over the data distribution "
        f"({result['distribution_accuracy']:.4f}, by quadrature) at nominal 95%, a fresh "
        "test set per simulated study: example difficulty p ~ Beta(4, 1.5), seed skill "
        "a ~ N(0, 0.3^2), correct with probability "
        f"expit(logit p + a). {cov} studies per cell (MC SE {se:.4f}). Seeds only: "
        "describe() of the seeds' means (the \"this test set\" interval). Width: median ratio "
        "of the variance-components interval to the seeds-only one; df: its Satterthwaite "
        "degrees of freedom.\n\n" + t6a,
        f"False positives of compare_examples (estimand distribution) and of compare() of the "
        f"seeds' means: share of {fpr} null pairs per cell with any verdict but inconclusive "
        f"(± MC SE; 0.05 + 2 SE = {0.05 + 2 * fse:.3f}). Designs: {designs}.\n\n" + t6b,
        "## Table 7: the \"this test set\" estimand\n\n"
        "Coverage of a fixed test set's accuracy (its mean over seeds, by quadrature over the "
        f"seeds' skill) at nominal 95%: {sizes['test_sets']} test sets per cell drawn once, "
        "fresh seeds per study. estimand test_set: describe_examples(estimand=\"test_set\"); "
        "estimand distribution: the Table 6 interval on the same studies.\n\n" + t7,
    ]
    return "\n\n".join(text)
