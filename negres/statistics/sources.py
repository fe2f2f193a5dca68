"""How much of the spread across seeds each source of randomness accounts for.

A study that varies its sources of randomness in a design (:func:`negres.seeds.crossed_design`:
e.g. 4 initialisations x 4 data orders, one seed each) measures one number per seed. Its
spread splits into a part due to each source and a remainder, by a random-effects analysis
of variance of the balanced design (Searle, Casella & McCulloch, *Variance Components*,
1992, ch. 4): with ``I`` levels of source A, ``J`` of source B and ``n`` seeds per cell,

    E[MS_A] = s2_e + n s2_AB + n J s2_A,   E[MS_B] = s2_e + n s2_AB + n I s2_B,
    E[MS_AB] = s2_e + n s2_AB,             E[MS_e] = s2_e   (n > 1 only),

so each component is a difference of mean squares over its multiplier, set to 0 where it
comes out negative. With one seed per cell the interaction and everything the design does
not vary (dropout, the other streams) are one component, the *remainder*. A source's
*share* is its component over their sum, the variance of a fresh seed's value.

Intervals are generalized confidence intervals (Weerahandi, 1993; for variance components
Burdick & Graybill, *Confidence Intervals on Variance Components*, 1992): each expected
mean square is replaced by its generalized pivot ``df * MS / chi2_df``, the components and
shares are computed from the pivots as from the estimates, and the interval is the central
``level`` of many draws. Assumed: normal effects and errors, a balanced design. Their
coverage, measured by :func:`simulate_coverage` on data with known components, is in
docs/sources.md; where the design has few levels (4), a share's interval is wide, which is
the honest answer: three degrees of freedom say little about a variance.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from negres.errors import ArgumentError
from negres.results import ConditionResults
from negres.seeds import SourceDesign, crossed_design
from negres.statistics.sampling import crossed_mean_squares

METHOD = ("random-effects ANOVA of the balanced design (method of moments, negative "
          "components set to 0); generalized-pivot intervals")
# Draws of the generalized pivots behind each interval.
DEFAULT_DRAWS = 10_000
REMAINDER = "remainder"
RESIDUAL = "residual"


def _balanced_factors(values: np.ndarray, factors: Mapping[str, Any]
                      ) -> tuple[dict[str, np.ndarray], int]:
    """The varied factors as level codes ``0..L-1`` per seed, and the seeds per cell;
    refuses a design that is not a balanced crossing of one or two factors."""
    coded = {}
    for name, levels in factors.items():
        array = np.asarray(levels)
        if array.shape != values.shape:
            raise ArgumentError(f"factors[{name!r}]", levels,
                                f"{values.size} levels, one per value")
        _, codes = np.unique(array, return_inverse=True)
        if codes.max() > 0:  # a factor with one level is held, not varied
            coded[str(name)] = codes.reshape(-1)
    if not 1 <= len(coded) <= 2:
        raise ArgumentError("factors", {n: np.asarray(v).tolist() for n, v in factors.items()},
                            "one or two factors with at least 2 levels each (the sources a "
                            "design varies; held ones may be given too)")
    sizes = [int(c.max()) + 1 for c in coded.values()]
    cells = np.zeros(sizes, np.int64)
    np.add.at(cells, tuple(coded.values()), 1)
    if cells.min() < 1 or cells.min() != cells.max():
        raise ArgumentError("factors", {n: c.tolist() for n, c in coded.items()},
                            "a balanced crossing: every combination of levels with the same "
                            "number of seeds (e.g. negres.seeds.crossed_design)")
    return coded, int(cells.min())


def _mean_squares(values: np.ndarray, coded: Mapping[str, np.ndarray], replicates: int,
                  ) -> list[tuple[str, float, int]]:
    """``(term, mean square, degrees of freedom)`` of every term of the model, residual last
    (absent without replicates)."""
    names = list(coded)
    sizes = [int(c.max()) + 1 for c in coded.values()]
    cells = np.zeros(sizes)
    np.add.at(cells, tuple(coded.values()), values)
    cells /= replicates
    grand = values.mean()
    terms = []
    if len(names) == 1:
        (size,) = sizes
        ss = replicates * np.sum((cells - grand) ** 2)
        terms.append((names[0], ss / (size - 1), size - 1))
        inside = values - cells[coded[names[0]]]
    else:
        a, b = sizes
        # The cell means' crossed table; each cell mean averages `replicates` seeds.
        table = crossed_mean_squares(cells)
        terms.append((names[0], replicates * table["ms_seeds"], a - 1))
        terms.append((names[1], replicates * table["ms_examples"], b - 1))
        terms.append(("interaction", replicates * table["ms_residual"], (a - 1) * (b - 1)))
        inside = values - cells[coded[names[0]], coded[names[1]]]
    df_residual = values.size - int(np.prod(sizes))
    if df_residual > 0:
        terms.append((RESIDUAL, float(np.sum(inside ** 2) / df_residual), df_residual))
    return [(t, float(ms), int(df)) for t, ms, df in terms]


def _components(ms: Mapping[str, np.ndarray], names: list[str], sizes: list[int],
                replicates: int) -> dict[str, np.ndarray]:
    """Variance components from (pivots of) expected mean squares, negative ones set to 0;
    every array broadcasts."""
    has_residual = RESIDUAL in ms

    def positive(x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    if len(names) == 1:
        if not has_residual:  # one seed per level: the spread is the factor's alone
            return {names[0]: ms[names[0]]}
        return {names[0]: positive((ms[names[0]] - ms[RESIDUAL]) / replicates),
                RESIDUAL: ms[RESIDUAL]}
    a, b = sizes
    within = ms["interaction"]
    out = {names[0]: positive((ms[names[0]] - within) / (replicates * b)),
           names[1]: positive((ms[names[1]] - within) / (replicates * a))}
    if has_residual:
        out[f"{names[0]} x {names[1]}"] = positive((within - ms[RESIDUAL]) / replicates)
        out[RESIDUAL] = ms[RESIDUAL]
    else:
        out[REMAINDER] = within
    return out


def _shares(components: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    total = sum(components.values())
    with np.errstate(invalid="ignore", divide="ignore"):
        return {n: np.where(total > 0, c / np.where(total > 0, total, 1.0), np.nan)
                for n, c in components.items()}


def _pivot_draws(mean_squares: Mapping[str, np.ndarray], dfs: Mapping[str, int],
                 num_draws: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Generalized pivots ``df * MS / chi2_df`` of each expected mean square, ``(B, D)``
    for ``B`` studies' mean squares ``(B,)``, each study its own draws."""
    return {term: np.asarray(ms)[:, None] * dfs[term]
            / rng.chisquare(dfs[term], (np.size(ms), num_draws))
            for term, ms in mean_squares.items()}


def _intervals(draws: Mapping[str, np.ndarray], level: float) -> dict[str, np.ndarray]:
    """term -> ``(B, 2)`` central ``level`` interval of each row's draws."""
    tail = 100 * (1 - level) / 2
    return {n: np.nanpercentile(d, [tail, 100 - tail], axis=-1).T for n, d in draws.items()}


def _checked(values: Any, level: float, num_draws: int) -> np.ndarray:
    array = np.asarray(values, np.float64)
    if array.ndim != 1 or array.size < 3 or not np.all(np.isfinite(array)):
        raise ArgumentError("values", values, "a 1-D array of at least 3 finite numbers, "
                            "one per seed (leave diverged seeds' levels out in whole)")
    if not 0.5 <= level < 1:
        raise ArgumentError("level", level, "a number in [0.5, 1)")
    if not isinstance(num_draws, (int, np.integer)) or num_draws < 100:
        raise ArgumentError("num_draws", num_draws, "an integer >= 100")
    return array


def variance_by_source(values: Any, factors: Mapping[str, Any] | SourceDesign, *,
                       level: float = 0.95, num_draws: int = DEFAULT_DRAWS,
                       seed: int = 0) -> dict[str, Any]:
    """How much of the variance of ``values`` across seeds each source accounts for.

    Args:
      values: ``(S,)`` one metric's value per seed (e.g. ``result.final("eval_accuracy")``).
      factors: source -> ``(S,)`` its level per seed, or the :class:`SourceDesign` the seeds
        were trained with (its ``factors``). One or two sources varied, crossed and
        balanced (every combination of levels equally often); sources with one level are
        held and ignored. With one seed per combination, the interaction and every source
        the design does not vary form the ``"remainder"``; with more, the interaction
        (``"A x B"``) and the ``"residual"`` are apart.
      level: the intervals' confidence level.
      num_draws: draws of the generalized pivots per interval.
      seed: seeds the draws, so that the intervals are reproducible.

    Returns:
      A dict: ``components``: term -> ``{"variance", "variance_ci", "share", "share_ci"}``
      (a share is of the summed components, the variance of a fresh seed); ``anova``:
      term -> ``{"mean_square", "df"}``; ``levels``: source -> its number of levels;
      ``replicates`` (seeds per combination); ``n``; ``total_variance``; ``level``;
      ``method``; ``num_draws``.
    """
    array = _checked(values, level, num_draws)
    if isinstance(factors, SourceDesign):
        factors = factors.factors
    if not isinstance(factors, Mapping):
        raise ArgumentError("factors", type(factors).__name__,
                            "a dict: source -> (S,) levels, or a negres.seeds.SourceDesign")
    coded, replicates = _balanced_factors(array, factors)
    names = list(coded)
    sizes = [int(c.max()) + 1 for c in coded.values()]
    terms = _mean_squares(array, coded, replicates)
    ms = {t: np.asarray([m]) for t, m, _ in terms}
    dfs = {t: df for t, _, df in terms}
    estimates = _components(ms, names, sizes, replicates)
    shares = _shares(estimates)
    draws = _pivot_draws(ms, dfs, num_draws, np.random.default_rng(seed))
    drawn = _components(draws, names, sizes, replicates)
    variance_ci = _intervals(drawn, level)
    share_ci = _intervals(_shares(drawn), level)
    return {
        "components": {n: {"variance": float(estimates[n][0]),
                           "variance_ci": [float(v) for v in variance_ci[n][0]],
                           "share": float(shares[n][0]),
                           "share_ci": [float(v) for v in share_ci[n][0]]}
                       for n in estimates},
        "anova": {t: {"mean_square": m, "df": df} for t, m, df in terms},
        "levels": dict(zip(names, sizes, strict=True)),
        "replicates": replicates,
        "n": int(array.size),
        "total_variance": float(sum(e[0] for e in estimates.values())),
        "level": level,
        "method": METHOD,
        "num_draws": int(num_draws),
    } | ({"note": f"one seed per level of {names[0]!r}: its component holds every source "
                  "the design does not hold too"} if len(names) == 1 and replicates == 1
         else {})


def simulate_coverage(levels: Mapping[str, int], components: Mapping[str, float], *,
                      replicates: int = 1, num_studies: int = 1000, level: float = 0.95,
                      num_draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How often :func:`variance_by_source`'s intervals cover the true components and
    shares, over ``num_studies`` simulated studies with normal effects.

    Args:
      levels: source -> number of levels (one or two sources), e.g. ``{"init": 4, "data": 4}``.
      components: term -> true variance, for every term the design has (each source, and
        ``"remainder"``; or ``"A x B"`` and ``"residual"`` with replicates).
      replicates: seeds per combination of levels.
      num_studies: simulated studies.

    Returns:
      ``{"share": term -> coverage, "variance": term -> coverage, "share_width": term ->
      mean interval width, "num_studies", "standard_error"}`` (the standard error of a
      coverage of ``level``).
    """
    names = list(levels)
    sizes = [int(levels[n]) for n in names]
    if not 1 <= len(names) <= 2 or min(sizes) < 2:
        raise ArgumentError("levels", dict(levels), "one or two sources with >= 2 levels each")
    rng = np.random.default_rng(seed)
    cells = list(itertools.product(*(range(s) for s in sizes)))
    codes = np.repeat(np.asarray(cells), replicates, axis=0)
    coded = {n: codes[:, i] for i, n in enumerate(names)}
    # Simulate every study at once: values (num_studies, S).
    effects = {n: rng.normal(0, np.sqrt(components[n]), (num_studies, s))[:, coded[n]]
               for n, s in zip(names, sizes, strict=True)}
    values = sum(effects.values())
    if len(names) == 2 and replicates > 1:
        term = f"{names[0]} x {names[1]}"
        pair = rng.normal(0, np.sqrt(components[term]), (num_studies, *sizes))
        values = values + pair[:, coded[names[0]], coded[names[1]]]
    noise = RESIDUAL if replicates > 1 else REMAINDER
    if noise in components:
        values = values + rng.normal(0, np.sqrt(components[noise]), values.shape)
    terms = [_mean_squares(v, coded, replicates) for v in values]
    ms = {t: np.asarray([row[i][1] for row in terms]) for i, (t, _, _) in enumerate(terms[0])}
    dfs = {t: df for t, _, df in terms[0]}
    truth = {n: float(components.get(n, 0.0)) for n in _components(
        {t: np.zeros(1) for t in ms}, names, sizes, replicates)}
    true_share = _shares({n: np.asarray(v) for n, v in truth.items()})
    covered_share = {n: 0.0 for n in truth}
    covered_variance = {n: 0.0 for n in truth}
    width = {n: 0.0 for n in truth}
    for start in range(0, num_studies, 200):  # chunks of studies keep memory small
        part = {t: m[start:start + 200] for t, m in ms.items()}
        draws = _pivot_draws(part, dfs, num_draws, rng)
        drawn = _components(draws, names, sizes, replicates)
        share_ci = _intervals(_shares(drawn), level)
        variance_ci = _intervals(drawn, level)
        for n in truth:
            lo, hi = share_ci[n].T
            covered_share[n] += np.sum((lo <= true_share[n]) & (true_share[n] <= hi))
            width[n] += np.sum(hi - lo)
            lo, hi = variance_ci[n].T
            covered_variance[n] += np.sum((lo <= truth[n]) & (truth[n] <= hi))
    return {
        "share": {n: covered_share[n] / num_studies for n in truth},
        "variance": {n: covered_variance[n] / num_studies for n in truth},
        "share_width": {n: width[n] / num_studies for n in truth},
        "num_studies": num_studies,
        "standard_error": float(np.sqrt(level * (1 - level) / num_studies)),
    }





def analyze_sources(conditions: Mapping[str, ConditionResults],
                    design: Mapping[str, Any], *, level: float = 0.95, seed: int = 0,
                    num_draws: int = DEFAULT_DRAWS) -> dict[str, Any] | None:
    """A study's variance decomposition: every condition's named metrics by the sources its
    design (``config.randomness``: ``vary``, ``levels``, ``metrics``) varies.

    Args:
      conditions: name -> a condition's results (its ``metrics``, ``metric_info`` and
        ``seed_indices`` are read).
      design: the ``randomness`` section.

    Returns:
      ``None`` when the design varies nothing; else ``{"vary", "levels", "metrics",
      "level", "method", "estimand", "conditions": condition -> metric ->`` the
      :func:`variance_by_source` dict, or ``{"skipped": why}``.
    """
    vary, levels = list(design.get("vary") or ()), list(design.get("levels") or ())
    if not vary:
        return None
    layout = crossed_design(dict(zip(vary, levels, strict=True)))
    analysed: dict[str, dict[str, Any]] = {}
    for name, condition in conditions.items():
        factors = layout.take(np.asarray(condition.seed_indices, np.int64)).factors
        per_metric: dict[str, Any] = {}
        for metric in design.get("metrics") or ():
            values = condition.metrics.get(metric)
            if values is None:
                per_metric[metric] = {"skipped": "not measured in this condition"}
                continue
            info = condition.info(metric)
            if info.sampling == "pairwise" or info.pairwise is not None:
                per_metric[metric] = {"skipped": "a metric of pairs of seeds: its per-seed "
                                      "values are not independent"}
                continue
            values = np.asarray(values, np.float64)
            bad = int(np.sum(~np.isfinite(values)))
            if bad:
                per_metric[metric] = {"skipped": f"{bad} seed(s) without a finite value "
                                      "(diverged): the design needs every seed"}
                continue
            per_metric[metric] = variance_by_source(values, factors, level=level,
                                                    num_draws=num_draws, seed=seed)
        analysed[name] = per_metric
    return {"vary": vary, "levels": levels, "metrics": list(design.get("metrics") or ()),
            "level": level, "method": METHOD,
            "estimand": "the spread across seeds of each metric on this study's test set",
            "conditions": analysed}
__all__ = ["METHOD", "analyze_sources", "simulate_coverage", "variance_by_source"]
