"""Group-sequential levels for studies that are extended after an inconclusive look.

A researcher who sees ``"inconclusive"`` at 16 seeds and adds seeds 16..63 to look again is
running a second test on data that contains the first: testing both looks at the full
``alpha`` would make the chance of a false finding larger than ``alpha``. This module keeps
it at ``alpha`` with *alpha spending*: look ``k`` (1-based) may spend, cumulatively,
``A(k) = alpha * (1 - (1 - first_share)**k)`` of the false-positive probability, so with
the defaults (``alpha = 0.05``, ``first_share = 0.8``) ``A(1) = 0.04``, ``A(2) = 0.048``,
``A(3) = 0.0496``, ... which never reaches ``alpha`` whatever the number of unplanned
extensions. Each look gets a nominal two-sided level ``alpha_k`` for its p-value, chosen so
that the probability under the null of crossing at or before look ``k`` is exactly
``A(k)``, for the z-statistics of a mean difference at the cumulative seed counts
``n_1 < n_2 < ...`` (jointly normal, ``corr(Z_i, Z_j) = sqrt(n_i / n_j)``, independent
increments). Because the looks are correlated, a later look gets more than the increment
``A(k) - A(k-1)``: for the common case 16 -> 64 seeds the levels are 0.04 at 16 seeds and
about 0.0105 at 64 seeds (16 -> 32: about 0.0145; independent looks would give
0.0083). A third look at 256 seeds would get about 0.0021.

:func:`nominal_alphas` computes the levels (exactly for ``k = 1``, by a deterministic 1-D
integral for ``k = 2`` and by deterministic Gauss-Legendre recursion of the continuation
density for ``k >= 3``), :func:`cumulative_alpha` gives ``A(k)``, and
:func:`seeds_for_next_look` plans the seed count of the next look. Everything is
deterministic: the same inputs give bit-identical outputs.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence

import numpy as np
from scipy import integrate, optimize, special

from negres.statistics.inference import seeds_at_level

DEFAULT_ALPHA = 0.05
DEFAULT_FIRST_SHARE = 0.8
DEFAULT_POWER = 0.8

SPENDING_RULE = (
    "Group-sequential alpha spending across looks at cumulative seed counts n_1 < n_2 < ...: "
    "look k (1-based) may spend cumulatively A(k) = alpha * (1 - (1 - first_share)^k) of the "
    "false-positive probability (alpha = 0.05, first_share = 0.8: A(1) = 0.04, A(2) = 0.048, "
    "A(3) = 0.0496, ..., never more than alpha, so any number of unplanned extensions stays "
    "honest). Look k calls a difference only if its decision p-value is below a nominal "
    "two-sided level alpha_k, chosen so that, for z-statistics of a mean difference with "
    "corr(Z_i, Z_j) = sqrt(n_i / n_j), the null probability of crossing at or before look k is "
    "exactly A(k): alpha_1 = A(1), and for k > 1 the boundary c_k solves "
    "P(no crossing through look k-1) - P(no crossing through look k) = A(k) - A(k-1), "
    "alpha_k = 2 * (1 - Phi(c_k)). With first_share = 1 the design has a single look and "
    "every later look has nominal level 0 (nothing can be claimed)."
)

# Gauss-Legendre recursion (k >= 3): panels of at most _MAX_PANEL_WIDTH on the z scale and
# never wider than the standard deviation of the increment kernels into and out of a look,
# _GL_ORDER nodes each. The cap of _MAX_PANELS panels per look is only reached for
# increments below about 1 / 16_000_000 of the seed count, where accuracy would degrade.
_GL_ORDER = 8
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(_GL_ORDER)
_MAX_PANEL_WIDTH = 0.25
_MIN_PANELS = 8
_MAX_PANELS = 1 << 14
_ROW_BLOCK = 512
_BAND = 10.0  # kernel standard deviations kept when propagating (pdf(10) ~ 8e-23)
_Z_MAX = 12.0  # an unbounded continuation region is cut here (mass outside < 1e-32)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_MIN_TESTED = 2  # seeds per group a look needs to test anything


# ------------------------------------------------------------------------------ checks


def _check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(alpha, bool) or not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"alpha={alpha!r} is not allowed: a finite probability strictly in (0, 1)")
    return value


def _check_first_share(first_share: float) -> float:
    try:
        value = float(first_share)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(first_share, bool) or not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(
            f"first_share={first_share!r} is not allowed: the share of alpha spent at the first "
            "look, a finite number in (0, 1] (1 means a single-look design)"
        )
    return value


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed: an integer >= {minimum}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name}={value!r} is not allowed: an integer >= {minimum}") from None
    if number < minimum:
        raise ValueError(f"{name}={value!r} is not allowed: an integer >= {minimum}")
    return number


def _check_look_sizes(look_sizes: Sequence[int]) -> tuple[int, ...]:
    if isinstance(look_sizes, str | bytes) or not isinstance(look_sizes, Sequence | np.ndarray):
        raise ValueError(
            f"look_sizes={look_sizes!r} is not allowed: a non-empty sequence of cumulative "
            "seed counts (integers >= 1, strictly increasing)"
        )
    sizes = []
    for i, n in enumerate(look_sizes):
        if isinstance(n, bool):
            number = None
        else:
            try:
                number = operator.index(n)
            except TypeError:
                number = None
        if number is None or number < 1:
            raise ValueError(
                f"look_sizes={list(look_sizes)!r} is not allowed: look_sizes[{i}]={n!r} must be "
                "an integer >= 1 (a cumulative seed count per group)"
            )
        sizes.append(number)
    if not sizes:
        raise ValueError(
            "look_sizes=[] is not allowed: at least one look (a cumulative seed count >= 1)"
        )
    for i in range(1, len(sizes)):
        if sizes[i] <= sizes[i - 1]:
            raise ValueError(
                f"look_sizes={sizes!r} is not allowed: cumulative seed counts must be strictly "
                f"increasing, but look_sizes[{i}]={sizes[i]} <= look_sizes[{i - 1}]={sizes[i - 1]}"
            )
    return tuple(sizes)


def _tested(looks: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """``(the looks of the design, how many untested looks precede them)``: a look of one
    seed per group cannot test anything (one seed has no spread), so it spends nothing and
    is no look of the design; only a first look can be one seed (the counts increase)."""
    untested = sum(1 for n in looks if n < _MIN_TESTED)
    return looks[untested:], untested


# ------------------------------------------------------------------------------ spending


def _cumulative(look: int, alpha: float, first_share: float) -> float:
    # 1 - (1 - f)^k via expm1/log1p: no cancellation for small f; exact at k = 1 and f = 1.
    if look == 1:
        return alpha * first_share
    if first_share == 1.0:
        return alpha
    return alpha * -math.expm1(look * math.log1p(-first_share))


def cumulative_alpha(
    look: int, *, alpha: float = DEFAULT_ALPHA, first_share: float = DEFAULT_FIRST_SHARE
) -> float:
    """The false-positive probability that looks 1..``look`` may spend together, ``A(look)``.

    ``A(k) = alpha * (1 - (1 - first_share)**k)``: with the defaults 0.04, 0.048, 0.0496, ...
    It increases with ``k`` and never exceeds ``alpha``.

    Args:
      look: the 1-based index of the look.
      alpha: the overall two-sided false-positive probability, in (0, 1).
      first_share: the share of ``alpha`` spent at the first look, in (0, 1]; each later
        look spends that share of what is left.
    """
    look = _check_int("look", look, 1)
    return _cumulative(look, _check_alpha(alpha), _check_first_share(first_share))


def _increments(looks: int, alpha: float, first_share: float) -> list[float]:
    """``A(k) - A(k-1)`` for k = 1..looks, computed without cancellation."""
    if first_share == 1.0:
        return [alpha] + [0.0] * (looks - 1)
    log_rest = math.log1p(-first_share)
    return [alpha * first_share * math.exp((k - 1) * log_rest) for k in range(1, looks + 1)]


# ------------------------------------------------------------------------ exit probability


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    return _INV_SQRT_2PI * np.exp(-0.5 * z * z)


def _step(n_before: int, n_after: int) -> tuple[float, float]:
    """``(r, s)``: ``Z_after = r Z_before + s W`` with ``W`` standard normal, independent."""
    r = math.sqrt(n_before / n_after)
    s = math.sqrt((n_after - n_before) / n_after)
    return r, s


def _exit_two_looks(c1: float, r: float, s: float, c: float) -> float:
    """``P(|Z_1| <= c1, |Z_2| > c)`` by adaptive quadrature of the conditional normal."""

    def integrand(z: float) -> float:
        # By symmetry of [-c1, c1] the two tails contribute equally.
        return 2.0 * _INV_SQRT_2PI * math.exp(-0.5 * z * z) * float(special.ndtr((r * z - c) / s))

    kink = c / r
    points = [kink, -kink] if kink < c1 else None
    value, _ = integrate.quad(
        integrand, -c1, c1, points=points, epsabs=0.0, epsrel=1e-11, limit=200
    )
    return value


def _grid(c: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on ``[-c, c]`` with panels at most ``width`` wide."""
    half = min(c, _Z_MAX)
    panels = min(_MAX_PANELS, max(_MIN_PANELS, math.ceil(2.0 * half / width)))
    edges = np.linspace(-half, half, panels + 1)
    centre = 0.5 * (edges[:-1] + edges[1:])
    radius = 0.5 * (edges[1:] - edges[:-1])
    nodes = (centre[:, None] + radius[:, None] * _GL_NODES[None, :]).ravel()
    weights = (radius[:, None] * _GL_WEIGHTS[None, :]).ravel()
    return nodes, weights


def _propagate(
    nodes: np.ndarray, mass: np.ndarray, new_nodes: np.ndarray, r: float, s: float
) -> np.ndarray:
    """``sum_i mass_i * pdf((z - r nodes_i) / s) / s`` at every ``z`` of ``new_nodes``.

    Both node arrays are sorted; rows are taken in blocks and, per block, only the columns
    within ``_BAND`` kernel standard deviations, so memory stays small and the cost grows
    linearly with the number of nodes when the kernel is narrow.
    """
    centres = r * nodes
    out = np.empty_like(new_nodes)
    for start in range(0, new_nodes.size, _ROW_BLOCK):
        rows = new_nodes[start : start + _ROW_BLOCK]
        low, high = np.searchsorted(centres, [rows[0] - _BAND * s, rows[-1] + _BAND * s])
        kernel = _normal_pdf((rows[:, None] - centres[None, low:high]) / s)
        out[start : start + _ROW_BLOCK] = (kernel * mass[None, low:high]).sum(axis=1) / s
    return out


def _continuation_density(
    looks: tuple[int, ...], bounds: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes, weights and the sub-density of ``Z_m`` on paths that never crossed, at look m.

    ``looks`` has m + 1 entries (the last one is the look to be solved next, which sets
    how fine the grid of look m must be); ``bounds`` has the m boundaries ``c_1..c_m``.
    """
    m = len(bounds)
    nodes = weights = density = np.empty(0)
    s_in = math.inf
    for j in range(m):
        _, s_out = _step(looks[j], looks[j + 1])
        width = min(_MAX_PANEL_WIDTH, s_in, s_out)
        new_nodes, new_weights = _grid(bounds[j], width)
        if j == 0:
            new_density = _normal_pdf(new_nodes)
        else:
            r_in, _ = _step(looks[j - 1], looks[j])
            new_density = _propagate(nodes, weights * density, new_nodes, r_in, s_in)
        nodes, weights, density = new_nodes, new_weights, new_density
        s_in = s_out
    return nodes, weights, density


def _exit_grid(
    nodes: np.ndarray, weights: np.ndarray, density: np.ndarray, r: float, s: float, c: float
) -> float:
    """``P(no crossing before, |Z_next| > c)`` from a continuation density on a grid."""
    tails = special.ndtr((r * nodes - c) / s) + special.ndtr((-r * nodes - c) / s)
    return float((weights * density * tails).sum())


@functools.lru_cache(maxsize=4096)
def _boundaries(looks: tuple[int, ...], alpha: float, first_share: float) -> tuple[float, ...]:
    """Boundaries ``c_1..c_k`` on the z scale (``inf`` for a look that may spend nothing)."""
    k = len(looks)
    increments = _increments(k, alpha, first_share)
    if k == 1:
        return (float(-special.ndtri(increments[0] / 2.0)),)
    previous = _boundaries(looks[:-1], alpha, first_share)
    increment = increments[-1]
    if increment <= 0.0 or math.isinf(previous[-1]):
        return (*previous, math.inf)
    r, s = _step(looks[-2], looks[-1])
    if k == 2:
        c1 = previous[0]

        def exit_probability(c: float) -> float:
            return _exit_two_looks(c1, r, s, c)
    else:
        nodes, weights, density = _continuation_density(looks, previous)

        def exit_probability(c: float) -> float:
            return _exit_grid(nodes, weights, density, r, s, c)

    log_target = math.log(increment)

    def gap(c: float) -> float:
        value = exit_probability(c)
        return (math.log(value) if value > 0.0 else -math.inf) - log_target

    # The nominal level lies between the increment (looks uncorrelated with the past would
    # need more, so less) and the cumulative A(k): bracket a little wider than that.
    low = float(-special.ndtri(min(0.5, 2.0 * math.fsum(increments)) / 2.0))
    high = float(-special.ndtri(increment / 4.0))
    if not gap(high) < 0.0:
        return (*previous, math.inf)  # the increment underflows: nothing can be spent
    low = 0.0 if not gap(low) > 0.0 else low
    c = optimize.brentq(gap, low, high, xtol=1e-14, rtol=4.0 * np.finfo(float).eps, maxiter=200)
    return (*previous, float(c))


@functools.lru_cache(maxsize=4096)
def _nominal(looks: tuple[int, ...], alpha: float, first_share: float) -> tuple[float, ...]:
    for j in range(1, len(looks)):  # fill the cache prefix by prefix: no deep recursion
        _boundaries(looks[:j], alpha, first_share)
    bounds = _boundaries(looks, alpha, first_share)
    levels = [_cumulative(1, alpha, first_share)]
    levels += [0.0 if math.isinf(c) else float(2.0 * special.ndtr(-c)) for c in bounds[1:]]
    return tuple(levels)


def nominal_alphas(
    look_sizes: Sequence[int],
    *,
    alpha: float = DEFAULT_ALPHA,
    first_share: float = DEFAULT_FIRST_SHARE,
) -> list[float]:
    """One nominal two-sided level per look; a p-value below it at that look is a finding.

    The levels are chosen so that, under the null, the probability of crossing at or before
    look ``k`` is exactly :func:`cumulative_alpha` ``(k)`` (see :data:`SPENDING_RULE`). The
    first level is ``alpha * first_share``; later ones depend on every seed count so far:
    ``(16,)`` -> ``[0.04]``, ``(16, 64)`` -> ``[0.04, ~0.0105]``. With ``first_share = 1``
    (a single-look design) every later level is ``0.0``: nothing can be claimed after an
    extension.

    Args:
      look_sizes: cumulative seed counts per group (or seed pairs, for paired comparisons)
        at each look, integers >= 1, strictly increasing, e.g. ``(16, 64)``. A first look
        of one seed tests nothing (one seed has no spread): its level is ``0.0``, it spends
        nothing, and the design's first look is the next one (``(1, 16)`` ->
        ``[0.0, 0.04]``).
      alpha: the overall two-sided false-positive probability, in (0, 1).
      first_share: the share of ``alpha`` spent at the first look, in (0, 1].

    Returns:
      A list of ``len(look_sizes)`` floats, each in [0, alpha].
    """
    looks, untested = _tested(_check_look_sizes(look_sizes))
    levels = _nominal(looks, _check_alpha(alpha), _check_first_share(first_share)) if looks else ()
    return [0.0] * untested + list(levels)


# ------------------------------------------------------------------------------ planning


def seeds_for_next_look(
    delta: float,
    sd: float,
    look_sizes: Sequence[int],
    *,
    alpha: float = DEFAULT_ALPHA,
    first_share: float = DEFAULT_FIRST_SHARE,
    power: float = DEFAULT_POWER,
    paired: bool = False,
    max_seeds: int = 1_000_000,
) -> int | None:
    """The smallest cumulative seed count for a next look that would detect ``delta``.

    Returns the smallest ``N > look_sizes[-1]`` such that the next look, at its own nominal
    level ``a = nominal_alphas([*look_sizes, N])[-1]`` (which depends on ``N`` through the
    correlation with earlier looks), has normal-approximation power at least ``power``:
    ``N >= k ((z_{1-a/2} + z_power) sd / delta)^2`` rounded up (``k = 2`` per group
    unpaired, ``sd`` the common std; ``k = 1`` for pairs, ``sd`` the std of the
    differences), the formula of :func:`negres.statistics.inference.seeds_needed`. Because
    spending lowers the level, this is more than ``seeds_needed`` at the full ``alpha``.
    Planned from an observed ``delta`` and ``sd`` it is itself an estimate.

    Args:
      delta: the difference of means to detect (its sign does not matter).
      sd: the standard deviation (of one seed's metric; of the paired differences if paired).
      look_sizes: the cumulative seed counts of the looks already made.
      alpha: the overall two-sided false-positive probability, in (0, 1).
      first_share: the share of ``alpha`` spent at the first look, in (0, 1].
      power: the power wanted, in (0, 1).
      paired: whether seeds are paired (the same seed runs both conditions).
      max_seeds: give up (return ``None``) above this many seeds.

    Returns:
      The seed count ``N`` (per group, or pairs), or ``None`` when ``delta`` is 0 or not
      finite, ``sd`` is not finite, the next look can spend nothing (``first_share = 1``),
      or the answer exceeds ``max_seeds``.
    """
    made = _check_look_sizes(look_sizes)
    looks, _ = _tested(made)  # a first look of one seed tested nothing: the design's next
    alpha = _check_alpha(alpha)
    first_share = _check_first_share(first_share)
    try:
        power_value = float(power)
    except (TypeError, ValueError):
        power_value = math.nan
    if isinstance(power, bool) or not 0.0 < power_value < 1.0:
        raise ValueError(f"power={power!r} is not allowed: a probability strictly in (0, 1)")
    max_seeds = _check_int("max_seeds", max_seeds, 2)
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        raise ValueError(f"delta={delta!r} is not allowed: a number") from None
    try:
        sd = float(sd)
    except (TypeError, ValueError):
        raise ValueError(f"sd={sd!r} is not allowed: a number >= 0") from None
    if not math.isnan(sd) and sd < 0.0:
        raise ValueError(f"sd={sd!r} is not allowed: a standard deviation, >= 0")
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0.0:
        return None
    z_power = float(special.ndtri(power_value))
    next_look = len(looks) + 1
    first = max(made[-1] + 1, _MIN_TESTED)
    if first > max_seeds:
        return None

    def level_at(n: int) -> float:
        return _nominal((*looks, n), alpha, first_share)[-1]

    def required(n: int) -> int | None:
        level = level_at(n)
        return None if level <= 0.0 else seeds_at_level(delta, sd, level, z_power, paired)

    # The level of the next look is at most A(next) (so no N below this can do) and falls
    # as N grows; the requirement therefore grows with N but stays bounded. Iterating
    # N <- max(first, required(N)) from below climbs to the smallest N that suffices.
    lower = seeds_at_level(delta, sd, _cumulative(next_look, alpha, first_share), z_power, paired)
    n = max(first, lower)
    for _ in range(100):
        if n > max_seeds:
            return None
        need = required(n)
        if need is None:
            return None
        if need <= n:
            return n
        n = need
    return None  # pragma: no cover - the requirement is bounded, so this is not reached
