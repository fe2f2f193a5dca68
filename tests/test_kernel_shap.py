"""Tests of negres.measures.kernel_shap against exact Shapley values and known properties."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from negres.measures import kernel_shap as ks
from negres.measures import saliency
from negres.models import MLP, Linear
from negres.seeds import over_seeds, take_seed

INPUT_SHAPE = (2, 3)  # 6 flattened features, image-like
D = math.prod(INPUT_SHAPE)
K = 3
N = 5


def _apply(model):
    return lambda p, x: model.apply({"params": p}, x)


def _key(i: int) -> jax.Array:
    return jax.random.PRNGKey(100 + i)


def _all_coalitions(d: int) -> int:
    """Coalitions strictly between the empty and the full one: enumerating them is exact."""
    return 2**d - 2


def _singletons_enumerated(d: int) -> int:
    """The smallest even budget at which shap's rule enumerates sizes 1 and d-1 (2d
    coalitions): budget x that level's share of the kernel mass >= its count."""
    level_mass = [sum((d - 1) / (s * (d - s)) for s in {lv, d - lv}) for lv in range(1, d // 2 + 1)]
    share = level_mass[0] / sum(level_mass)
    samples = math.ceil(2 * d / share)
    return samples + samples % 2


@pytest.fixture(scope="module")
def linear():
    model = Linear(num_outputs=K)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *INPUT_SHAPE))
    w = np.asarray(params["Dense_0"]["kernel"])  # (D, K)
    return _apply(model), params, x, w


def _mlp(d: int, seed: int):
    """A d -> 16 -> 3 tanh MLP, its inputs and a 4-row background."""
    model = MLP(num_outputs=K, hidden_sizes=(16,), activation="tanh")
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, d)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (6, d))
    bg = jax.random.normal(jax.random.PRNGKey(seed + 2), (4, d))
    return _apply(model), params, x, bg


@pytest.fixture(scope="module")
def mlp5():
    return _mlp(5, 2)


@pytest.fixture(scope="module")
def mlp8():
    return _mlp(8, 7)


def _errors(apply_fn, params, x, exact, samples: int, keys: jax.Array, **ref) -> np.ndarray:
    """Kernel SHAP for every key ``(len(keys), N, d)`` minus the exact values."""
    est = jax.vmap(lambda k: ks.kernel_shap(apply_fn, params, x, 0, k, samples=samples, **ref))
    return np.asarray(est(keys)) - np.asarray(exact)


# --------------------------------------------------------------------------- efficiency


@pytest.mark.parametrize("samples", [2, 16, 30])
@pytest.mark.parametrize("reference", ["zeros", "scalar", "background"])
def test_efficiency_holds_for_any_sample_count(mlp5, samples, reference):
    apply_fn, params, x, bg = mlp5
    ref = {"zeros": {}, "scalar": {"baseline": 0.3}, "background": {"background": bg}}[reference]
    phi = ks.kernel_shap(apply_fn, params, x, "predicted", _key(0), samples=samples, **ref)
    assert phi.shape == x.shape
    out_x = np.asarray(apply_fn(params, x))
    t = out_x.argmax(axis=1)
    rows = {"zeros": jnp.zeros((1, 5)), "scalar": jnp.full((1, 5), 0.3), "background": bg}
    f_ref = np.asarray(apply_fn(params, rows[reference])).mean(axis=0)[t]
    assert_allclose(np.asarray(phi).sum(axis=1), out_x[np.arange(len(t)), t] - f_ref,
                    rtol=1e-5, atol=1e-6)
    gap = saliency.completeness_gap(apply_fn, params, x, "predicted", phi, **ref)
    assert_allclose(gap, 0.0, atol=1e-5)


# --------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize("samples_of", [
    _singletons_enumerated, lambda d: _singletons_enumerated(d) + 10, _all_coalitions])
@pytest.mark.parametrize("reference, target", [
    ("zeros", 1), ("scalar", "labels"), ("example", 1), ("background", "labels")])
def test_linear_model_gives_exact_shapley(linear, samples_of, reference, target):
    """Additive model: the regression has zero residual once the design spans (always, as
    soon as the singleton level is enumerated), so Kernel SHAP is w_j (x_j - r_j)."""
    apply_fn, params, x, w = linear
    samples = samples_of(D)
    refs = jax.random.normal(jax.random.PRNGKey(3), (4, *INPUT_SHAPE))
    option, r = {
        "zeros": ({}, np.zeros(INPUT_SHAPE)),
        "scalar": ({"baseline": 0.5}, np.full(INPUT_SHAPE, 0.5)),
        "example": ({"baseline": refs[0]}, np.asarray(refs[0])),
        "background": ({"background": refs}, np.asarray(refs).mean(axis=0)),
    }[reference]
    t = np.arange(N) % K if target == "labels" else np.full(N, target)
    tgt = jnp.asarray(t) if target == "labels" else target
    phi = ks.kernel_shap(apply_fn, params, x, tgt, _key(1), samples=samples, **option)
    expected = w[:, t].T.reshape(N, *INPUT_SHAPE) * (np.asarray(x) - r)
    assert_allclose(phi, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("samples", [_all_coalitions(5), 64])
@pytest.mark.parametrize("with_background", [False, True])
def test_enumerating_every_coalition_is_exact_shapley(mlp5, samples, with_background):
    apply_fn, params, x, bg = mlp5
    ref = {"background": bg} if with_background else {"baseline": bg[0]}
    exact = saliency.exact_shapley(apply_fn, params, x, 2, **ref)
    for i in range(2):  # nothing is drawn, so the key does not matter
        phi = ks.kernel_shap(apply_fn, params, x, 2, _key(i), samples=samples, **ref)
        assert_allclose(phi, exact, rtol=1e-4, atol=1e-5)


def test_one_feature_gets_the_whole_difference():
    model = MLP(num_outputs=2, hidden_sizes=(4,), activation="tanh")
    params = model.init(jax.random.PRNGKey(4), jnp.zeros((1, 1)))["params"]
    apply_fn = _apply(model)
    x = jax.random.normal(jax.random.PRNGKey(5), (3, 1))
    phi = ks.kernel_shap(apply_fn, params, x, 1, _key(0), samples=2, baseline=0.2)
    want = apply_fn(params, x)[:, 1] - apply_fn(params, jnp.full((1, 1), 0.2))[0, 1]
    assert_allclose(phi[:, 0], want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- sampling


def test_error_shrinks_as_samples_grow(mlp8):
    """d=8: 16 samples are all drawn, 128 enumerate the singleton level and draw 112."""
    apply_fn, params, x, _ = mlp8
    exact = saliency.exact_shapley(apply_fn, params, x, 0)
    keys = jax.random.split(_key(2), 8)
    few, many = 16, 128
    err_few = np.abs(_errors(apply_fn, params, x, exact, few, keys)).mean()
    err_many = np.abs(_errors(apply_fn, params, x, exact, many, keys)).mean()
    assert err_few > 0  # nonlinear and sampled: not exact by accident
    # Monte Carlo error falls like 1/sqrt(samples); allow twice that.
    assert err_many < 2 * math.sqrt(few / many) * err_few, (err_few, err_many)
    # and at 2^d - 2 the estimate is exact
    err_all = np.abs(_errors(apply_fn, params, x, exact, _all_coalitions(8), keys[:1])).max()
    assert err_all < err_many / 100


@pytest.mark.parametrize("samples", [32, 64])
def test_estimates_are_nearly_unbiased(mlp8, samples):
    """Averaging K keys' estimates cuts the error like 1/sqrt(K) if it is mostly variance.
    (At 16 samples, 8 pairs often leave the 7 free coefficients undetermined and the
    minimum-norm solution is biased; see the module docstring.)"""
    apply_fn, params, x, _ = mlp8
    exact = saliency.exact_shapley(apply_fn, params, x, 0)
    num_keys = 32
    errors = _errors(apply_fn, params, x, exact, samples, jax.random.split(_key(3), num_keys))
    single = np.abs(errors).mean()
    averaged = np.abs(errors.mean(axis=0)).mean()
    assert averaged < 2 / math.sqrt(num_keys) * single, (single, averaged)


def test_background_is_the_reference(mlp8):
    apply_fn, params, x, bg = mlp8
    with_bg = saliency.exact_shapley(apply_fn, params, x, 0, background=bg)
    with_zeros = saliency.exact_shapley(apply_fn, params, x, 0)
    keys = jax.random.split(_key(4), 4)
    errors = _errors(apply_fn, params, x, with_bg, 64, keys, background=bg)
    to_bg = np.abs(errors).mean()
    to_zeros = np.abs(errors + np.asarray(with_bg) - np.asarray(with_zeros)).mean()
    # nearer the background's exact values than the zero baseline's
    assert to_bg < to_zeros, (to_bg, to_zeros)


def test_same_key_same_result_different_keys_differ(mlp5):
    apply_fn, params, x, bg = mlp5
    run = functools.partial(ks.kernel_shap, apply_fn, params, x, 0, samples=16, background=bg)
    first, again, other = run(_key(5)), run(_key(5)), run(_key(6))
    np.testing.assert_array_equal(first, again)
    assert np.abs(np.asarray(first - other)).max() > 1e-4
    # a typed key works like a raw one
    np.testing.assert_array_equal(run(jax.random.key(7)), run(jax.random.key(7)))


def test_chunked_model_calls_give_the_same_values(mlp5, monkeypatch):
    apply_fn, params, x, bg = mlp5
    run = functools.partial(ks.kernel_shap, apply_fn, params, x, 1, _key(8), samples=16,
                            background=bg)
    whole = run()
    # 7 rows a call: 1 example x 1 coalition x 4 rows, so blocks and groups are padded
    monkeypatch.setattr(saliency, "_ELEMENTS_PER_CALL", 5 * 7)
    assert_allclose(run(), whole, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- transforms


def test_jit_matches_eager(mlp5):
    apply_fn, params, x, bg = mlp5

    def fn(p, xb, k, b):
        return ks.kernel_shap(apply_fn, p, xb, "predicted", k, samples=16, baseline=b)

    eager = fn(params, x, _key(9), bg[0])
    assert_allclose(jax.jit(fn)(params, x, _key(9), bg[0]), eager, rtol=1e-5, atol=1e-6)


def test_over_seeds_equals_single_seed(mlp5, monkeypatch):
    apply_fn, _, x, bg = mlp5
    model = MLP(num_outputs=K, hidden_sizes=(16,), activation="tanh")
    num_seeds = 3
    init_keys = jax.random.split(jax.random.PRNGKey(14), num_seeds)
    stacked = jax.vmap(lambda k: model.init(k, jnp.zeros((1, 5)))["params"])(init_keys)
    keys = jax.random.split(jax.random.PRNGKey(15), num_seeds)

    def one_seed(p, k):
        return ks.kernel_shap(apply_fn, p, x, "predicted", k, samples=16, background=bg)

    got = jax.jit(over_seeds(one_seed, (0, 1)))(stacked, keys)
    assert got.shape == (num_seeds, *x.shape)
    single = jax.jit(one_seed)  # compiled once, reused for every seed
    want = np.stack([single(take_seed(stacked, s), keys[s]) for s in range(num_seeds)])
    assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want[0] - want[1]).max() > 1e-3  # the seeds differ: not vacuous
    # Through the registry: attribute passes each seed's key positionally.
    monkeypatch.setitem(saliency.ATTRIBUTION_METHODS, "kernel_shap", ks.kernel_shap)
    lifted = saliency.attribute_over_seeds("kernel_shap", apply_fn, stacked, x, "predicted",
                                           keys, seeds_per_step=1, samples=16, background=bg)
    assert_allclose(lifted, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("options, names", [
    ({"samples": 0}, ["samples=0", "even integer >= 2"]),
    ({"samples": 7}, ["samples=7", "even"]),
    ({"samples": 8.0}, ["samples=8.0"]),
    ({"samples": True}, ["samples=True"]),
    ({"baseline": jnp.array([0.0, jnp.nan, 0.0, 0.0, 0.0])}, ["baseline", "NaN or inf"]),
    ({"baseline": np.inf}, ["baseline", "NaN or inf"]),
    ({"background": np.full((2, 5), -np.inf)}, ["background", "NaN or inf"]),
    ({"background": np.zeros((2, 4))}, ["background must have shape"]),
    ({"baseline": 0.0, "background": np.zeros((2, 5))}, ["either baseline or background"]),
    ({"baseline": np.zeros(3)}, ["baseline of shape"]),
])
def test_bad_arguments_raise_naming_them(mlp5, options, names):
    apply_fn, params, x, _ = mlp5
    with pytest.raises(ValueError) as raised:
        ks.kernel_shap(apply_fn, params, x, 0, _key(0), **options)
    for name in names:
        assert name in str(raised.value)


@pytest.mark.parametrize("key", [3, np.zeros(2, np.float32), jax.random.split(_key(0), 2)])
def test_bad_key_raises(mlp5, key):
    apply_fn, params, x, _ = mlp5
    with pytest.raises(ValueError, match="key"):
        ks.kernel_shap(apply_fn, params, x, 0, key)


def test_too_many_features_raise_before_any_model_call():
    def apply_fn(p, xb):
        raise AssertionError("the model must not be called")

    d = ks.MAX_KERNEL_SHAP_FEATURES + 1
    with pytest.raises(ValueError, match=f"d={d}"):
        ks.kernel_shap(apply_fn, {}, jnp.zeros((1, d)), 0, _key(0))
