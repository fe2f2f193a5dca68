"""Group-sequential levels: exact spending, Monte Carlo and t-test checks, planning, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

from negres.statistics import inference, sequential
from negres.statistics.sequential import (
    DEFAULT_FIRST_SHARE,
    SPENDING_RULE,
    cumulative_alpha,
    nominal_alphas,
    seeds_for_next_look,
)


def _crossing_rates(look_sizes: tuple[int, ...], draws: int, seed: int) -> np.ndarray:
    """Monte Carlo P(first crossing at look k) for Brownian partial sums Z_k = S(n_k)/sqrt(n_k)."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(look_sizes, dtype=float)
    steps = rng.standard_normal((draws, len(sizes))) * np.sqrt(np.diff(sizes, prepend=0.0))
    z = np.cumsum(steps, axis=1) / np.sqrt(sizes)
    bounds = -special.ndtri(np.asarray(nominal_alphas(look_sizes)) / 2.0)
    crossed = np.abs(z) > bounds
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    return np.array([np.mean(first == k) for k in range(len(sizes))])


def _normal_requirement(delta: float, sd: float, level_alpha: float, power: float,
                        paired: bool) -> float:
    """The unrounded seed count of the normal-approximation power formula."""
    z = -special.ndtri(level_alpha / 2.0) + special.ndtri(power)
    return (1.0 if paired else 2.0) * (z * sd / delta) ** 2


# ----------------------------------------------------------------------------- spending


def test_cumulative_spending_is_geometric_and_bounded() -> None:
    assert cumulative_alpha(1) == pytest.approx(0.04, rel=1e-14)
    assert cumulative_alpha(2) == pytest.approx(0.048, rel=1e-14)
    assert cumulative_alpha(3) == pytest.approx(0.0496, rel=1e-14)
    values = [cumulative_alpha(k) for k in range(1, 60)]
    assert all(a < b for a, b in itertools.pairwise(values) if b < 0.05)
    assert max(values) <= 0.05 and cumulative_alpha(10_000) <= 0.05
    assert cumulative_alpha(3, alpha=0.1, first_share=0.5) == pytest.approx(0.0875, rel=1e-14)
    assert cumulative_alpha(5, first_share=1.0) == 0.05


@pytest.mark.parametrize(("alpha", "first_share"), [(0.05, 0.8), (0.01, 0.5), (0.1, 0.3)])
def test_one_look_gets_alpha_times_first_share(alpha: float, first_share: float) -> None:
    assert nominal_alphas([16], alpha=alpha, first_share=first_share) == [alpha * first_share]
    assert nominal_alphas((2,), alpha=alpha, first_share=first_share)[0] == alpha * first_share


def test_two_looks_lie_between_increment_and_cumulative() -> None:
    a1, a2 = nominal_alphas((16, 64))
    assert a1 == 0.05 * DEFAULT_FIRST_SHARE
    increment = cumulative_alpha(2) - cumulative_alpha(1)
    assert increment < a2 < cumulative_alpha(2)
    assert 0.0104 < a2 < 0.0107  # the documented level of the common 16 -> 64 extension


@pytest.mark.parametrize(
    "looks", [(16, 32, 64), (16, 64, 256), (16, 17, 18, 19), (8, 100, 101, 5000), (16, 10**6)]
)
def test_every_level_lies_between_its_increment_and_cumulative(looks: tuple[int, ...]) -> None:
    levels = nominal_alphas(looks)
    for k, level in enumerate(levels, start=1):
        increment = cumulative_alpha(k) - (cumulative_alpha(k - 1) if k > 1 else 0.0)
        # Lower bound: the level of a look independent of the past, increment / (1 - A(k-1)).
        independent = increment / (1.0 - (cumulative_alpha(k - 1) if k > 1 else 0.0))
        assert independent * (1 - 1e-9) <= level <= cumulative_alpha(k)


def test_monte_carlo_crossing_matches_spending_two_looks() -> None:
    draws = 200_000
    rates = _crossing_rates((16, 64), draws, seed=0)
    for k, rate in ((1, rates[0]), (2, rates.sum())):
        target = cumulative_alpha(k)
        se = math.sqrt(target * (1 - target) / draws)
        assert abs(rate - target) < 4 * se, (k, rate, target)


def test_monte_carlo_crossing_matches_spending_three_looks() -> None:
    draws = 200_000
    rates = _crossing_rates((16, 32, 64), draws, seed=1)
    for k in (1, 2, 3):
        target = cumulative_alpha(k)
        se = math.sqrt(target * (1 - target) / draws)
        assert abs(rates[:k].sum() - target) < 4 * se, (k, rates[:k].sum(), target)


@pytest.mark.parametrize("looks", [(16, 32, 64), (16, 64, 256), (16, 17, 18), (16, 32, 64, 128)])
def test_recursion_matches_multivariate_normal(looks: tuple[int, ...]) -> None:
    # An independent computation of P(crossing through the last look) with scipy's Genz CDF.
    k = len(looks)
    bounds = -special.ndtri(np.asarray(nominal_alphas(looks)) / 2.0)
    n = np.asarray(looks, dtype=float)
    corr = np.sqrt(np.minimum.outer(n, n) / np.maximum.outer(n, n))
    normal = scipy_stats.multivariate_normal(
        np.zeros(k), corr, abseps=1e-8, releps=1e-6, maxpts=500_000, seed=0
    )
    no_crossing = normal.cdf(bounds, lower_limit=-bounds)
    assert 1.0 - no_crossing == pytest.approx(cumulative_alpha(k), rel=2e-5)


@pytest.mark.parametrize("looks", [(16, 64), (16, 17), (100, 101), (16, 10**6)])
def test_quadrature_and_recursion_agree_for_two_looks(looks: tuple[int, int]) -> None:
    c1, c2 = sequential._boundaries(looks, 0.05, DEFAULT_FIRST_SHARE)
    r, s = sequential._step(*looks)
    exact = sequential._exit_two_looks(c1, r, s, c2)
    nodes, weights, density = sequential._continuation_density(looks, (c1,))
    grid = sequential._exit_grid(nodes, weights, density, r, s, c2)
    assert exact == pytest.approx(cumulative_alpha(2) - cumulative_alpha(1), rel=1e-9)
    assert grid == pytest.approx(exact, rel=1e-9)


def test_limits_of_the_correlation() -> None:
    a2_common = nominal_alphas((16, 64))[1]
    a2_far = nominal_alphas((16, 1_000_000))[1]
    independent = (cumulative_alpha(2) - cumulative_alpha(1)) / (1 - cumulative_alpha(1))
    assert a2_far == pytest.approx(independent, rel=1e-3)
    a2_near = nominal_alphas((16, 17))[1]
    assert a2_near > a2_common > a2_far
    # More correlation with the first look always leaves more for the second.
    levels = [nominal_alphas((16, n))[1] for n in (17, 20, 32, 64, 128, 1024)]
    assert all(a > b for a, b in itertools.pairwise(levels))


def test_single_look_design_gives_nothing_later() -> None:
    assert nominal_alphas((16, 64, 128), first_share=1.0) == [0.05, 0.0, 0.0]
    assert seeds_for_next_look(1.0, 1.0, (16,), first_share=1.0) is None


def test_levels_are_deterministic() -> None:
    looks = (16, 40, 64, 256)
    first = nominal_alphas(looks)
    sequential._nominal.cache_clear()
    sequential._boundaries.cache_clear()
    second = nominal_alphas(looks)
    assert [x.hex() for x in first] == [x.hex() for x in second]
    assert all(isinstance(x, float) for x in first)


def test_t_tests_on_null_studies_keep_the_false_positive_rate() -> None:
    # 2,000 null studies: look at 16 seeds per group, extend to 64, look again.
    studies, alpha = 2_000, 0.05
    rng = np.random.default_rng(2024)
    x = rng.standard_normal((studies, 64))
    y = rng.standard_normal((studies, 64))
    p1 = scipy_stats.ttest_ind(x[:, :16], y[:, :16], axis=1, equal_var=False).pvalue
    p2 = scipy_stats.ttest_ind(x, y, axis=1, equal_var=False).pvalue
    a1, a2 = nominal_alphas((16, 64), alpha=alpha)
    rate = np.mean((p1 < a1) | (p2 < a2))
    target = cumulative_alpha(2, alpha=alpha)
    assert rate <= target + 3 * math.sqrt(target * (1 - target) / studies)
    # Testing both looks at the full alpha is what the spending prevents.
    assert np.mean((p1 < alpha) | (p2 < alpha)) > alpha


def test_spending_rule_states_the_rule() -> None:
    for phrase in ("A(k) = alpha * (1 - (1 - first_share)^k)", "sqrt(n_i / n_j)", "0.048"):
        assert phrase in SPENDING_RULE


# ----------------------------------------------------------------------------- planning


@pytest.mark.parametrize(
    ("delta", "sd", "looks", "paired"),
    [
        (0.5, 1.0, (16,), False),
        (-0.5, 1.0, (16,), False),
        (0.2, 0.7, (16, 64), False),
        (1.0, 1.0, (16,), False),
        (0.3, 1.0, (16,), True),
        (0.05, 0.1, (16, 32, 64), True),
    ],
)
def test_seeds_for_next_look_is_the_smallest_with_enough_power(
    delta: float, sd: float, looks: tuple[int, ...], paired: bool
) -> None:
    n = seeds_for_next_look(delta, sd, looks, paired=paired)
    assert n is not None and n > looks[-1]
    level = nominal_alphas((*looks, n))[-1]
    assert _normal_requirement(delta, sd, level, 0.8, paired) <= n * (1 + 1e-12)
    assert scipy_stats.norm.cdf(
        math.sqrt(n / (1 if paired else 2)) * abs(delta) / sd + special.ndtri(level / 2)
    ) >= 0.8 - 1e-9
    if n - 1 > looks[-1]:
        level_before = nominal_alphas((*looks, n - 1))[-1]
        assert _normal_requirement(delta, sd, level_before, 0.8, paired) > n - 1
    # Spending costs seeds: more than a single test at the full alpha would need.
    assert n > inference.seeds_needed(delta, sd, level=0.95, paired=paired)


def test_seeds_for_next_look_paired_needs_about_half() -> None:
    unpaired = seeds_for_next_look(0.1, 1.0, (16,))
    paired = seeds_for_next_look(0.1, 1.0, (16,), paired=True)
    assert unpaired is not None and paired is not None
    assert 0.45 < paired / unpaired < 0.55


def test_seeds_for_next_look_grows_with_power_and_looks() -> None:
    low = seeds_for_next_look(0.3, 1.0, (16,), power=0.5)
    high = seeds_for_next_look(0.3, 1.0, (16,), power=0.9)
    later = seeds_for_next_look(0.3, 1.0, (16, 64))
    default = seeds_for_next_look(0.3, 1.0, (16,))
    assert low is not None and high is not None and later is not None and default is not None
    assert low < default < high
    assert later > default  # the third look has a smaller level than the second


@pytest.mark.parametrize(
    ("delta", "sd"),
    [(0.0, 1.0), (-0.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), (0.5, math.nan), (0.5, math.inf)],
)
def test_seeds_for_next_look_none_when_unresolvable(delta: float, sd: float) -> None:
    assert seeds_for_next_look(delta, sd, (16,)) is None


def test_seeds_for_next_look_respects_max_seeds() -> None:
    n = seeds_for_next_look(0.01, 1.0, (16,))
    assert n is not None and n > 100_000
    assert seeds_for_next_look(0.01, 1.0, (16,), max_seeds=n) == n
    assert seeds_for_next_look(0.01, 1.0, (16,), max_seeds=n - 1) is None
    assert seeds_for_next_look(0.001, 1.0, (16,)) is None
    # A tiny sd still needs one more seed than the last look.
    assert seeds_for_next_look(1.0, 1e-6, (16, 64)) == 65


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"look_sizes": []}, "look_sizes"),
        ({"look_sizes": [0]}, "look_sizes"),
        ({"look_sizes": [16, 16]}, "look_sizes"),
        ({"look_sizes": [64, 16]}, "look_sizes"),
        ({"look_sizes": [16, 32.5]}, "look_sizes"),
        ({"look_sizes": [True, 16]}, "look_sizes"),
        ({"look_sizes": 16}, "look_sizes"),
        ({"look_sizes": "16"}, "look_sizes"),
        ({"look_sizes": [16], "alpha": 0.0}, "alpha"),
        ({"look_sizes": [16], "alpha": 1.0}, "alpha"),
        ({"look_sizes": [16], "alpha": math.nan}, "alpha"),
        ({"look_sizes": [16], "first_share": 0.0}, "first_share"),
        ({"look_sizes": [16], "first_share": 1.5}, "first_share"),
        ({"look_sizes": [16], "first_share": math.inf}, "first_share"),
    ],
)
def test_nominal_alphas_bad_input_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}="):
        nominal_alphas(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"look": 0}, "look"),
        ({"look": 1.5}, "look"),
        ({"look": 1, "alpha": -0.1}, "alpha"),
        ({"look": 1, "first_share": -0.5}, "first_share"),
    ],
)
def test_cumulative_alpha_bad_input_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}="):
        cumulative_alpha(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"look_sizes": [16, 8]}, "look_sizes"),
        ({"alpha": 2.0}, "alpha"),
        ({"first_share": 0.0}, "first_share"),
        ({"power": 1.0}, "power"),
        ({"power": 0.0}, "power"),
        ({"max_seeds": 1}, "max_seeds"),
        ({"max_seeds": 10.5}, "max_seeds"),
        ({"sd": -1.0}, "sd"),
        ({"sd": "wide"}, "sd"),
        ({"delta": None}, "delta"),
    ],
)
def test_seeds_for_next_look_bad_input_names_the_argument(kwargs: dict, name: str) -> None:
    arguments = {"delta": 0.5, "sd": 1.0, "look_sizes": [16], **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}="):
        seeds_for_next_look(**arguments)
