"""Tests of negres.agreement against closed forms, SciPy/NumPy references and known properties."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from numpy.testing import assert_allclose, assert_array_equal

from negres.errors import ArgumentError, ConfigError
from negres.measures import agreement
from negres.models import MLP, Linear
from negres.seeds import take_seed

S, N, D = 3, 16, 1024


def _stacked(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _max_logit_gradient(model):
    """Gradient of each example's largest logit with respect to its input: (N, *input_shape)."""

    def attribution_fn(params, x):
        def score(xi):
            return jnp.max(model.apply({"params": params}, xi[None])[0])

        return jax.vmap(jax.grad(score))(x)

    return attribution_fn


# ------------------------------------------------------------------------ ranks


@pytest.mark.parametrize("ties", [False, True])
def test_average_ranks_match_scipy_rankdata(ties):
    rng = np.random.default_rng(1)
    values = rng.integers(0, 5, (4, 7, 30)) if ties else rng.standard_normal((4, 7, 30))
    expected = scipy.stats.rankdata(values, method="average", axis=-1)
    assert_allclose(np.asarray(agreement.average_ranks(values)), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("absolute", [False, True])
def test_spearman_matches_scipy(ties, absolute):
    rng = np.random.default_rng(2)
    shape = (3, 10, 40)  # (S, N, D)
    if ties:  # few distinct values, negative ones too, so |.| creates more ties
        stack = rng.integers(-3, 4, shape).astype(np.float32)
    else:
        stack = rng.standard_normal(shape).astype(np.float32)
    ranked = np.abs(stack) if absolute else stack
    reference = np.array(
        [
            [
                np.mean([scipy.stats.spearmanr(ranked[s, n], ranked[t, n])[0] for n in range(10)])
                for t in range(3)
            ]
            for s in range(3)
        ]
    )
    pairwise = agreement.pairwise_spearman(stack, absolute=absolute)
    assert_allclose(np.asarray(pairwise), reference, atol=1e-5)
    per_example = agreement.spearman_per_example(stack[0], stack[1], absolute=absolute)
    expected = [scipy.stats.spearmanr(ranked[0, n], ranked[1, n])[0] for n in range(10)]
    assert_allclose(np.asarray(per_example), expected, atol=1e-5)


def test_spearman_of_constant_attribution_is_nan_and_left_out_of_the_mean():
    stack = _stacked((2, 3, 20))
    stack[:, 0] = 1.0  # example 0 is constant in both seeds: no rank correlation
    per_example = np.asarray(agreement.spearman_per_example(stack[0], stack[1], absolute=False))
    assert np.isnan(per_example[0])
    pairwise = np.asarray(agreement.pairwise_spearman(stack, absolute=False))
    assert_allclose(pairwise[0, 1], per_example[1:].mean(), atol=1e-6)


# ---------------------------------------------------------------- agreement matrices


@pytest.fixture(scope="module")
def base_attributions() -> np.ndarray:
    return _stacked((N, 8, 8, 16), seed=3)  # (N, *input_shape), D = 1024 features


def test_agreement_of_copies_is_one_everywhere(base_attributions):
    stack = np.broadcast_to(base_attributions, (S, *base_attributions.shape))
    for nonzero_only in (False, True):
        matrices = agreement.cross_seed_agreement(stack, top_k=20, nonzero_only=nonzero_only)
        assert set(matrices) == set(agreement.AGREEMENT_MEASURES)
        for name, matrix in matrices.items():
            assert matrix.shape == (S, S), name
            assert_allclose(np.asarray(matrix), np.ones((S, S)), atol=1e-5, err_msg=name)


def test_diagonal_is_one_for_different_seeds():
    stack = _stacked((S, N, 50), seed=4)
    stack[stack < -1.0] = 0.0  # exact zeros, so the non-zero-only sign rule matters
    for nonzero_only in (False, True):
        matrices = agreement.cross_seed_agreement(stack, top_k=5, nonzero_only=nonzero_only)
        for name, matrix in matrices.items():
            assert_allclose(np.diag(np.asarray(matrix)), np.ones(S), atol=1e-5, err_msg=name)
            assert_allclose(np.asarray(matrix), np.asarray(matrix).T, atol=1e-6, err_msg=name)


def test_independently_shuffled_copies_do_not_agree(base_attributions):
    # Seed s gets the same maps with its features permuted by its own permutation; with
    # D = 1024 features and N = 16 examples one correlation has std about
    # 1 / sqrt(D * N) = 0.008, so 0.05 is more than six standard deviations.
    rng = np.random.default_rng(5)
    flat = base_attributions.reshape(N, D)
    stack = np.stack([flat[:, rng.permutation(D)] for _ in range(S)])
    matrices = agreement.cross_seed_agreement(stack, top_k=64)
    off = ~np.eye(S, dtype=bool)
    for name in ("spearman_abs", "spearman", "cosine"):
        assert_allclose(np.asarray(matrices[name])[off], 0.0, atol=0.05, err_msg=name)
    # Chance levels: k / D for the top-k overlap, 1/2 for the sign of a symmetric law.
    assert_allclose(np.asarray(matrices["top_k"])[off], 64 / D, atol=0.03)
    assert_allclose(np.asarray(matrices["sign"])[off], 0.5, atol=0.03)


def _top_k_reference(stack: np.ndarray, k: int) -> np.ndarray:
    flat = stack.reshape(stack.shape[0], stack.shape[1], -1)
    top = np.argsort(-np.abs(flat), axis=-1, kind="stable")[..., :k]
    num_seeds, num_examples = flat.shape[:2]
    out = np.zeros((num_seeds, num_seeds))
    for s in range(num_seeds):
        for t in range(num_seeds):
            out[s, t] = np.mean(
                [len(set(top[s, n]) & set(top[t, n])) / k for n in range(num_examples)]
            )
    return out


@pytest.mark.parametrize("k", [1, 3, 10, 24])
@pytest.mark.parametrize("ties", [False, True])
def test_top_k_agreement_matches_numpy(k, ties):
    rng = np.random.default_rng(6)
    shape = (4, 6, 4, 6)  # (S, N, *input_shape), D = 24
    stack = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)
    stack = stack.astype(np.float32)
    result = agreement.pairwise_top_k_agreement(stack, k)
    assert_allclose(np.asarray(result), _top_k_reference(stack, k), atol=1e-6)
    if k == 24:  # every feature is in the top D
        assert_allclose(np.asarray(result), 1.0, atol=1e-6)


@pytest.mark.parametrize("nonzero_only", [False, True])
def test_sign_and_cosine_match_numpy(nonzero_only):
    rng = np.random.default_rng(7)
    stack = rng.integers(-2, 3, (3, 5, 12)).astype(np.float32)  # many exact zeros
    sign = np.sign(stack)
    cosine_ref = np.zeros((3, 3))
    sign_ref = np.zeros((3, 3))
    for s in range(3):
        for t in range(3):
            a, b = stack[s], stack[t]
            cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
            cosine_ref[s, t] = cos.mean()
            equal = sign[s] == sign[t]
            if nonzero_only:
                both = (sign[s] != 0) & (sign[t] != 0)
                sign_ref[s, t] = np.mean((equal & both).sum(-1) / both.sum(-1))
            else:
                sign_ref[s, t] = equal.mean()
    result = agreement.pairwise_sign_agreement(stack, nonzero_only=nonzero_only)
    assert_allclose(np.asarray(result), sign_ref, atol=1e-6)
    assert_allclose(np.asarray(agreement.pairwise_cosine(stack)), cosine_ref, atol=1e-5)


def test_summarize_agreement_matches_numpy():
    matrix = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.9], [0.4, 0.9, 1.0]], np.float32)
    summary = agreement.summarize_agreement(matrix)
    pairs = np.array([0.2, 0.4, 0.9])
    assert_allclose(float(summary["mean"]), pairs.mean(), atol=1e-6)
    assert_allclose(float(summary["std"]), pairs.std(), atol=1e-6)
    assert_allclose(np.asarray(summary["per_seed"]), [0.3, 0.55, 0.65], atol=1e-6)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_top_k_that_is_not_a_positive_integer_is_a_config_error(k):
    with pytest.raises(ConfigError, match="top_k"):
        agreement.cross_seed_agreement(np.ones((2, 3, 24), np.float32), top_k=k)


@pytest.mark.parametrize("k", [0, 25])
def test_uncapped_top_k_outside_the_features_is_a_config_error(k):
    with pytest.raises(ConfigError, match="top_k"):
        agreement.pairwise_top_k_agreement(np.ones((2, 3, 24), np.float32), k)


@pytest.mark.parametrize(
    ("top_k", "num_features", "expected"),
    [(10, 64, 10), (10, 10, 5), (10, 5, 2), (3, 2, 1), (1, 1, 1), (25, 24, 12)],
)
def test_top_k_used_caps_at_half_the_features(top_k, num_features, expected):
    assert agreement.top_k_used(top_k, num_features) == expected


def test_random_attributions_on_ten_features_do_not_agree_by_construction():
    # Uncapped, the default top_k = 10 on D = 10 features would give 1 for any two seeds.
    # Capped at k = 5, independent random maps overlap by k / D = 0.5 in expectation.
    stack = _stacked((8, 64, 10), seed=40)
    matrices = agreement.cross_seed_agreement(stack)
    off = ~np.eye(8, dtype=bool)
    top_k = np.asarray(matrices["top_k"])[off]
    assert top_k.mean() < 0.6
    assert_allclose(top_k.mean(), 0.5, atol=0.05)
    assert_allclose(np.asarray(agreement.pairwise_top_k_agreement(stack, 10))[off], 1.0)


@pytest.mark.parametrize("top_k", [6, 10, 1000])
def test_top_k_above_half_the_features_is_capped(top_k):
    stack = _stacked((3, 16, 10), seed=41)  # D = 10: any k above 5 is 5
    capped = agreement.cross_seed_agreement(stack, top_k=top_k)["top_k"]
    at_half = agreement.cross_seed_agreement(stack, top_k=5)["top_k"]
    assert_array_equal(np.asarray(capped), np.asarray(at_half))
    assert_allclose(np.asarray(capped), _top_k_reference(stack, 5), atol=1e-6)


# -------------------------------------------------------------------- max-sensitivity

INPUT_DIM = 12


@pytest.fixture(scope="module")
def mlp():
    """A small MLP: inputs, trained-role and re-drawn params (S, ...), a gradient attribution."""
    model = MLP(num_outputs=4, hidden_sizes=(64, 64), activation="tanh")
    x = jnp.asarray(_stacked((16, INPUT_DIM), seed=12))
    init = jax.jit(jax.vmap(lambda k: model.init(k, x)["params"]))
    trained = init(jax.random.split(jax.random.PRNGKey(10), S))
    fresh = init(jax.random.split(jax.random.PRNGKey(11), S))
    return x, trained, fresh, _max_logit_gradient(model)


def test_max_sensitivity_is_zero_for_an_input_independent_attribution():
    model = Linear(num_outputs=3)
    x = jnp.asarray(_stacked((8, INPUT_DIM), seed=9))
    params = model.init(jax.random.PRNGKey(1), x)["params"]

    def class_zero_gradient(params, x):  # the kernel's first column, whatever x is
        return jax.vmap(jax.grad(lambda xi: model.apply({"params": params}, xi[None])[0, 0]))(x)

    result = agreement.max_sensitivity(
        class_zero_gradient, params, x, jax.random.PRNGKey(2), radius=0.5, num_samples=5
    )
    assert result.shape == (8,)
    assert_allclose(np.asarray(result), 0.0, atol=0.0)


def test_max_sensitivity_is_positive_for_a_nonlinear_model(mlp):
    x, trained, _, attribution_fn = mlp
    result = agreement.max_sensitivity(
        attribution_fn, take_seed(trained, 0), x, jax.random.PRNGKey(3), num_samples=4
    )
    assert result.shape == (16,)
    assert np.all(np.asarray(result) > 1e-4)


def test_max_sensitivity_matches_numpy_reference():
    def attribution_fn(params, x):  # a known nonlinear attribution: w * x**2
        return params * x**2

    params = jnp.asarray(_stacked((2, 3), seed=10))
    x = jnp.asarray(_stacked((4, 2, 3), seed=11))
    key = jax.random.PRNGKey(4)
    radius, num_samples = 0.2, 7
    fn = functools.partial(agreement.max_sensitivity, attribution_fn)
    result = fn(params, x, key, radius=radius, num_samples=num_samples)
    batched = fn(params, x, key, radius=radius, num_samples=num_samples, sample_batch_size=2)

    deltas = np.asarray(
        jax.random.uniform(key, (num_samples, *x.shape), minval=-radius, maxval=radius)
    )
    p, xs = np.asarray(params, np.float64), np.asarray(x, np.float64)
    base = p * xs**2
    moved = p * (xs[None] + deltas) ** 2
    change = np.linalg.norm((moved - base[None]).reshape(num_samples, 4, -1), axis=-1)
    expected = change.max(axis=0) / np.linalg.norm(base.reshape(4, -1), axis=-1)
    assert np.abs(deltas).max() <= radius
    assert_allclose(np.asarray(result), expected, rtol=1e-4)
    assert_allclose(np.asarray(batched), np.asarray(result), rtol=1e-6)


@pytest.mark.parametrize("shared_key", [False, True])
def test_max_sensitivity_over_seeds_equals_each_seed(mlp, shared_key):
    x, stacked, _, attribution_fn = mlp
    keys = jax.random.PRNGKey(5) if shared_key else jax.random.split(jax.random.PRNGKey(5), S)
    lifted = agreement.max_sensitivity_over_seeds(attribution_fn, stacked, x, keys, num_samples=4)
    assert lifted.shape == (S, 16)
    for s in range(S):
        key = keys if shared_key else keys[s]
        one = agreement.max_sensitivity(
            attribution_fn, take_seed(stacked, s), x, key, num_samples=4
        )
        assert_allclose(np.asarray(lifted[s]), np.asarray(one), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ randomisation check


def test_layer_order_is_creation_order_and_survives_jit():
    model = MLP(num_outputs=2, hidden_sizes=(2,) * 11)  # Dense_0 .. Dense_11
    x = jnp.ones((2, 3))
    expected = tuple(f"Dense_{i}" for i in range(12))
    eager = model.init(jax.random.PRNGKey(0), x)["params"]
    assert tuple(eager) == expected  # linen's dict keeps creation order ...
    jitted = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    assert tuple(jitted) != expected  # ... until JAX rebuilds it with sorted keys
    assert agreement.layer_order(model, x) == expected
    assert agreement.resolve_layer_names(eager) == expected
    with pytest.raises(ArgumentError, match="layer_names"):
        agreement.resolve_layer_names(jitted)
    assert agreement.resolve_layer_names(jitted, agreement.layer_order(model, x)) == expected
    assert agreement.randomization_layer_names(eager) == expected[::-1]
    with pytest.raises(ArgumentError, match="layer_names"):
        agreement.resolve_layer_names(eager, expected[:-1])


def test_cascade_params_randomises_the_top_layers_first():
    params = {
        f"Dense_{i}": {"kernel": jnp.full((2, 2), 0.0), "bias": jnp.zeros(2)} for i in range(3)
    }
    fresh = {f"Dense_{i}": {"kernel": jnp.full((2, 2), 1.0), "bias": jnp.ones(2)} for i in range(3)}
    cascade = agreement.cascade_params(params, fresh, ("Dense_0", "Dense_1", "Dense_2"))
    # Row k - 1 takes the top k layers from `fresh`.
    expected = {"Dense_0": [0, 0, 1], "Dense_1": [0, 1, 1], "Dense_2": [1, 1, 1]}
    for name, from_fresh in expected.items():
        assert cascade[name]["kernel"].shape == (3, 2, 2)
        assert_array_equal(np.asarray(cascade[name]["kernel"])[:, 0, 0], from_fresh)
        assert_array_equal(np.asarray(cascade[name]["bias"])[:, 0], from_fresh)


def test_cascading_randomization_lowers_correlation(mlp):
    x, trained, fresh, attribution_fn = mlp
    params, random_params = take_seed(trained, 0), take_seed(fresh, 0)
    result = np.asarray(agreement.cascading_randomization(attribution_fn, params, random_params, x))
    assert result.shape == (3,)  # Dense_2, Dense_1, Dense_0 re-drawn in turn
    # Everything re-drawn: two independent networks, whose gradients share nothing.
    assert abs(result[-1]) < 0.3
    assert np.all(result < 0.8)


def test_randomizing_with_the_same_params_keeps_correlation_one(mlp):
    x, trained, _, attribution_fn = mlp
    params = take_seed(trained, 0)
    assert_allclose(
        np.asarray(agreement.cascading_randomization(attribution_fn, params, params, x)),
        np.ones(3),
        atol=1e-5,
    )


@pytest.mark.parametrize("shared_random", [False, True])
def test_cascading_randomization_over_seeds_equals_each_seed(mlp, shared_random):
    x, trained, fresh, attribution_fn = mlp
    random_params = take_seed(fresh, 0) if shared_random else fresh
    lifted = agreement.cascading_randomization_over_seeds(attribution_fn, trained, random_params, x)
    assert lifted.shape == (S, 3)
    for s in range(S):
        one_random = random_params if shared_random else take_seed(fresh, s)
        one = agreement.cascading_randomization(
            attribution_fn, take_seed(trained, s), one_random, x
        )
        assert_allclose(np.asarray(lifted[s]), np.asarray(one), atol=1e-5)


# ----------------------------------------------------------------- shortcut diagnostics

SHORTCUTS = (1, 5)  # flat indices into a (2, 3) input


def test_shortcut_share_is_one_with_all_mass_on_the_shortcut_and_zero_without():
    on = np.zeros((4, 2, 3), np.float32)
    on[:, 0, 1], on[:, 1, 2] = -2.0, 3.0  # flat indices 1 and 5
    off = np.ones((4, 2, 3), np.float32)
    off[:, 0, 1], off[:, 1, 2] = 0.0, 0.0
    assert_allclose(float(agreement.shortcut_share(on, SHORTCUTS)), 1.0, atol=1e-7)
    assert_allclose(float(agreement.shortcut_share(off, SHORTCUTS)), 0.0, atol=1e-7)
    mixed = np.array([[1.0, -1.0, 0.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]], np.float32)
    # shares 3/4 and 1/4 -> mean 1/2
    assert_allclose(float(agreement.shortcut_share(mixed, SHORTCUTS)), 0.5, atol=1e-7)


def test_right_for_wrong_reasons_rate_on_a_hand_built_case():
    attributions = np.array(
        [
            [0.0, 5.0, 1.0, 0.0, 0.0, 0.0],  # top = 1, a shortcut, correct
            [0.0, 0.0, 9.0, 0.0, 0.0, 1.0],  # top = 2, not a shortcut, correct
            [0.0, 0.0, 0.0, 0.0, 0.0, -7.0],  # top = 5 (by |.|), a shortcut, correct
            [0.0, 8.0, 0.0, 0.0, 0.0, 0.0],  # top = 1, a shortcut, but wrong: not counted
        ],
        np.float32,
    )
    correct = np.array([True, True, True, False])
    rate = agreement.right_for_wrong_reasons_rate(attributions, SHORTCUTS, correct)
    assert_allclose(float(rate), 2 / 3, atol=1e-7)
    none_correct = agreement.right_for_wrong_reasons_rate(
        attributions, SHORTCUTS, ~np.ones(4, bool)
    )
    assert np.isnan(float(none_correct))


@pytest.mark.parametrize("shortcuts", [(), (6,), (-1,)])
def test_bad_shortcut_features_are_a_config_error(shortcuts):
    with pytest.raises(ConfigError, match="shortcut_features"):
        agreement.shortcut_share(np.ones((2, 6), np.float32), shortcuts)


def test_shortcut_diagnostics_over_seeds_equal_each_seed():
    rng = np.random.default_rng(13)
    attributions = rng.standard_normal((S, 10, 2, 3)).astype(np.float32)
    correct = rng.random((S, 10)) < 0.6
    shares = agreement.shortcut_share_over_seeds(attributions, SHORTCUTS)
    rates = agreement.right_for_wrong_reasons_rate_over_seeds(attributions, SHORTCUTS, correct)
    assert shares.shape == rates.shape == (S,)
    for s in range(S):
        share = agreement.shortcut_share(attributions[s], SHORTCUTS)
        rate = agreement.right_for_wrong_reasons_rate(attributions[s], SHORTCUTS, correct[s])
        assert_allclose(float(shares[s]), float(share), atol=1e-6)
        assert_allclose(float(rates[s]), float(rate), atol=1e-6)


# ------------------------------------------ the scale: no-signal baselines, repeat ceiling


def _off_diagonal(matrix) -> np.ndarray:
    matrix = np.asarray(matrix)
    return matrix[~np.eye(len(matrix), dtype=bool)]


def test_permuted_baseline_of_identical_attributions_is_near_zero_for_cosine(base_attributions):
    # Every seed has the same maps: they agree perfectly; each seed's own random
    # permutation of every example's features leaves agreement at chance, 0 for the
    # cosine of zero-mean random data (one correlation has std about 1 / sqrt(D * N)).
    stack = np.broadcast_to(base_attributions, (S, *base_attributions.shape))
    keys = jax.random.split(jax.random.PRNGKey(20), S)
    permuted = np.asarray(agreement.permuted_attributions(stack, keys))
    assert permuted.shape == stack.shape
    flat, flat_permuted = stack.reshape(S, N, D), permuted.reshape(S, N, D)
    # Same support: every example keeps exactly its values, only their places move.
    assert_array_equal(np.sort(flat_permuted, axis=-1), np.sort(flat, axis=-1))
    assert not np.array_equal(flat_permuted, flat)
    # Row s depends on seed s's maps and key alone (a seed alone gets the same baseline).
    assert_array_equal(np.asarray(agreement.permuted_attributions(stack[1:2], keys[1:2])),
                       permuted[1:2])
    assert_allclose(_off_diagonal(agreement.pairwise_cosine(stack)), 1.0, atol=1e-5)
    matrices = agreement.cross_seed_agreement(permuted, top_k=64)
    for name in ("cosine", "spearman_abs", "spearman"):
        assert_allclose(_off_diagonal(matrices[name]), 0.0, atol=0.05, err_msg=name)
    assert_allclose(_off_diagonal(matrices["top_k"]), 64 / D, atol=0.03)


def test_permuted_baseline_keeps_the_chance_agreement_of_positive_maps(base_attributions):
    # Positive maps share their sign and mean by construction: random maps with the same
    # values agree by chance on cosine (about mean^2 / mean square) and sign, and that is
    # the level their cross-seed agreement should be read against.
    positive = np.abs(base_attributions)
    stack = np.broadcast_to(positive, (S, *positive.shape))
    permuted = agreement.permuted_attributions(stack, jax.random.split(jax.random.PRNGKey(21), S))
    matrices = agreement.cross_seed_agreement(permuted)
    flat = positive.reshape(N, D)
    chance = np.mean(flat.mean(-1) ** 2 / (flat**2).mean(-1))  # 2 / pi for |normal|
    assert_allclose(_off_diagonal(matrices["cosine"]), chance, atol=0.02)
    assert_allclose(_off_diagonal(matrices["sign"]), 1.0)


@pytest.mark.parametrize("nonzero_only", [False, True])
def test_paired_agreement_is_the_pair_of_cross_seed_agreement(nonzero_only):
    rng = np.random.default_rng(22)
    first = rng.integers(-2, 3, (3, 5, 4, 6)).astype(np.float32)  # ties and exact zeros
    second = rng.integers(-2, 3, (3, 5, 4, 6)).astype(np.float32)
    paired = agreement.paired_agreement(first, second, top_k=7, nonzero_only=nonzero_only)
    assert set(paired) == set(agreement.AGREEMENT_MEASURES)
    for s in range(3):
        pair = agreement.cross_seed_agreement(np.stack([first[s], second[s]]), top_k=7,
                                              nonzero_only=nonzero_only)
        for name, values in paired.items():
            assert values.shape == (3,)
            assert_allclose(float(values[s]), float(pair[name][0, 1]), atol=1e-6,
                            err_msg=name)


def test_the_ceiling_of_smoothgrad_is_one_with_the_same_noise_and_below_with_new_noise(mlp):
    from negres.evaluators.attributions import stochastic
    from negres.measures import saliency

    x, trained, _, _ = mlp
    model = MLP(num_outputs=4, hidden_sizes=(64, 64), activation="tanh")

    def apply(p, xs):
        return model.apply({"params": p}, xs)

    # Deterministic methods repeat themselves exactly: no ceiling is computed for them.
    assert sorted(m for m in saliency.ATTRIBUTION_METHODS if stochastic(m)) == [
        "kernel_shap", "smoothgrad"]
    keys = jax.random.split(jax.random.PRNGKey(23), S)
    other = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 2)

    def smoothgrad(k):
        return saliency.attribute_over_seeds("smoothgrad", apply, trained, x,
                                             saliency.PREDICTED, k, samples=4)

    first = smoothgrad(keys)
    same = agreement.paired_agreement(first, smoothgrad(keys))
    fresh_noise = agreement.paired_agreement(first, smoothgrad(other))
    for name in agreement.AGREEMENT_MEASURES:
        assert_allclose(np.asarray(same[name]), 1.0, rtol=0, atol=1e-6, err_msg=name)
        assert np.all(np.asarray(fresh_noise[name]) < 1.0), name
    assert np.all(np.asarray(fresh_noise["spearman_abs"]) > 0.3)  # the same model still


def test_scaled_agreement_is_the_formula():
    matrix = np.array([[1.0, 0.5, 0.7], [0.5, 1.0, 0.2], [0.7, 0.2, 1.0]])
    ceiling = np.array([0.9, 0.8, 0.6])
    baseline = agreement.off_diagonal_mean(np.array([[1, 0.1, 0.3], [0.1, 1, 0.2],
                                                     [0.3, 0.2, 1]]))
    assert baseline == pytest.approx(0.2)
    scaled = agreement.scaled_agreement(matrix, baseline, ceiling)
    for i in range(3):
        for j in range(3):
            expected = 1.0 if i == j else (
                (matrix[i, j] - 0.2) / ((ceiling[i] + ceiling[j]) / 2 - 0.2))
            assert scaled[i, j] == pytest.approx(expected), (i, j)
    # Deterministic: the ceiling is 1. No room between baseline and ceiling: NaN.
    assert_allclose(agreement.scaled_agreement(matrix, 0.2)[0, 1], 0.3 / 0.8)
    assert np.isnan(agreement.scaled_agreement(matrix, 0.2, np.array([0.1, 0.2, 0.9]))[0, 1])
    # The baseline's mean leaves out seeds that are not kept, and undefined pairs.
    holes = np.array([[1, np.nan, 0.3], [np.nan, 1, 0.9], [0.3, 0.9, 1]])
    assert agreement.off_diagonal_mean(holes) == pytest.approx(0.6)
    assert agreement.off_diagonal_mean(holes, np.array([True, False, True])) == pytest.approx(0.3)


# The attributions evaluator on a small trained digits MLP: 4 seeds, one noisy method.
SCALE_SEEDS = 4


@pytest.fixture(scope="module")
def scaled_study(small_digits):
    from tests_configs import tiny_config

    from negres import evaluators, linen_apply
    from negres.models import build_model
    from negres.training.builtin import train_seeds
    from negres.training.optimizers import build_optimizer

    config = tiny_config()
    model = build_model(config.model, 10)
    result = train_seeds(model, build_optimizer(config.optimizer), small_digits.x_train,
                         small_digits.y_train, num_seeds=SCALE_SEEDS, steps=60, batch_size=32)
    example = small_digits.x_test[:1]
    settings = {"attributions": {"attribution_methods": ("gradient", "smoothgrad"),
                                 "attribution_examples": 16, "smoothgrad_samples": 4,
                                 "randomization_check": False, "save_attributions": 0}}
    out = evaluators.evaluate(
        linen_apply(model), result.params, small_digits, evaluators=("attributions",),
        settings=settings, seed_indices=result.seed_indices,
        init=lambda key: model.init(key, example, train=False)["params"])
    return out, evaluators.as_results(out)


def test_untrained_networks_agree_less_than_trained_seeds(scaled_study):
    evaluation = scaled_study[0]["attributions"]
    for method in ("gradient", "smoothgrad"):
        for measure in ("spearman_abs", "top_k", "cosine"):
            raw = _off_diagonal(evaluation.pairwise["agreement"][method][measure]).mean()
            baselines = evaluation.pairwise["agreement_baseline"][method][measure]
            assert set(baselines) == {"untrained", "permuted"}
            for name, matrix in baselines.items():
                assert matrix.shape == (SCALE_SEEDS, SCALE_SEEDS)
                assert _off_diagonal(matrix).mean() < raw - 0.1, (method, measure, name)


def test_the_scaled_metric_is_the_formula_on_every_pair(scaled_study):
    evaluation = scaled_study[0]["attributions"]
    scale = evaluation.shared["agreement_scale"]
    assert scale["baseline"] == "untrained"
    assert scale["ceiling"] == {"gradient": "1 (deterministic)", "smoothgrad": "repeat"}
    # A deterministic method gets no ceiling computed; a noisy one one per seed and measure.
    assert set(evaluation.per_seed["agreement_ceiling"]) == {"smoothgrad"}
    for method in ("gradient", "smoothgrad"):
        ceilings = evaluation.per_seed["agreement_ceiling"].get(method)
        for measure in agreement.AGREEMENT_MEASURES:
            raw = np.asarray(evaluation.pairwise["agreement"][method][measure], float)
            baseline = _off_diagonal(
                evaluation.pairwise["agreement_baseline"][method][measure]["untrained"]).mean()
            assert scale["baseline_mean"][method][measure] == pytest.approx(baseline, abs=1e-6)
            ceiling = np.ones(SCALE_SEEDS) if ceilings is None else ceilings[measure]
            assert ceiling.shape == (SCALE_SEEDS,) and np.all(ceiling <= 1 + 1e-6)
            pair_ceiling = (ceiling[:, None] + ceiling[None, :]) / 2
            expected = (raw - baseline) / (pair_ceiling - baseline)
            scaled = evaluation.pairwise["agreement_scaled"][method][measure]
            assert_allclose(_off_diagonal(scaled), _off_diagonal(expected), rtol=1e-5)
            if measure in ("spearman_abs", "top_k"):
                metric = evaluation.metrics[f"{method}_{measure}_agreement_scaled"]
                assert metric.pairwise == f"agreement_scaled/{method}/{measure}"
                assert metric.direction == "higher"
                assert_allclose(metric.values, _off_diagonal(expected).reshape(
                    SCALE_SEEDS, SCALE_SEEDS - 1).mean(axis=1), rtol=1e-5)


def test_a_seed_left_out_as_diverged_leaves_the_scales_rows_and_columns(scaled_study):
    results = scaled_study[1]
    assert results.seed_indices.tolist() == list(range(SCALE_SEEDS))
    keep = np.array([True, False, True, True])
    rows = results.kept(keep)
    saved = rows.evaluations["attributions"]
    for method in ("gradient", "smoothgrad"):
        for measure in agreement.AGREEMENT_MEASURES:
            for baseline in ("untrained", "permuted"):
                full = results.saved_by("attributions").pairwise[
                    "agreement_baseline"][method][measure][baseline]
                assert_array_equal(saved.pairwise["agreement_baseline"][method][measure][
                    baseline], np.asarray(full)[np.ix_(keep, keep)])
            scaled = saved.pairwise["agreement_scaled"][method][measure]
            assert scaled.shape == (3, 3)
        metric = rows.metrics[f"{method}_spearman_abs_agreement_scaled"]
        kept = saved.pairwise["agreement_scaled"][method]["spearman_abs"]
        assert_allclose(metric, _off_diagonal(kept).reshape(3, 2).mean(axis=1))
    ceiling = saved.per_seed["agreement_ceiling"]["smoothgrad"]["cosine"]
    assert_array_equal(ceiling, np.asarray(results.saved_by("attributions").per_seed[
        "agreement_ceiling"]["smoothgrad"]["cosine"])[keep])


@pytest.mark.parametrize("draws", ["shared", "per_seed"])
def test_shared_noise_leaves_seeds_differing_by_their_models_alone(small_digits, draws):
    """Four copies of one network: SmoothGrad's maps are identical when every seed draws the
    same noisy copies, and differ by Monte-Carlo noise alone when each draws its own."""
    from tests_configs import tiny_config

    from negres import evaluators, linen_apply
    from negres.models import build_model

    model = build_model(tiny_config().model, 10)
    one = model.init(jax.random.PRNGKey(0), small_digits.x_test[:1], train=False)["params"]
    params = jax.tree.map(lambda v: jnp.stack([v] * SCALE_SEEDS), one)
    settings = {"attributions": {"attribution_methods": ("smoothgrad",),
                                 "attribution_examples": 8, "smoothgrad_samples": 2,
                                 "noise_draws": draws, "randomization_check": False,
                                 "save_attributions": 0}}
    out = evaluators.evaluate(linen_apply(model), params, small_digits,
                              evaluators=("attributions",), settings=settings)
    matrix = out["attributions"].pairwise["agreement"]["smoothgrad"]["spearman_abs"]
    pairs = _off_diagonal(matrix)
    if draws == "shared":
        assert_allclose(pairs, 1.0, atol=1e-6)
    else:
        assert pairs.max() < 0.999
