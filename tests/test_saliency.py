"""Tests of negres.saliency against closed forms, brute-force references and known properties."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from negres.measures import saliency
from negres.models import MLP, Linear
from negres.seeds import take_seed

INPUT_SHAPE = (2, 3)  # 6 flattened features: images-like shape, small enough for Shapley
D = 6
K = 3
N = 5


def _apply(model):
    return lambda p, x: model.apply({"params": p}, x)


@pytest.fixture(scope="module")
def linear():
    model = Linear(num_outputs=K)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *INPUT_SHAPE))
    w = np.asarray(params["Dense_0"]["kernel"])  # (D, K)
    return _apply(model), params, x, w


@pytest.fixture(scope="module")
def mlp4():
    """A 4 -> 16 -> 3 tanh MLP and inputs."""
    model = MLP(num_outputs=3, hidden_sizes=(16,), activation="tanh")
    params = model.init(jax.random.PRNGKey(2), jnp.zeros((1, 4)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(3), (6, 4))
    return _apply(model), params, x


def _w_rows(w: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``w[:, t_n]`` per example, reshaped to ``(N, *INPUT_SHAPE)``."""
    return w[:, t].T.reshape(len(t), *INPUT_SHAPE)


# --------------------------------------------------------------------------- linear model


@pytest.mark.parametrize("target", [0, 2])
def test_linear_gradient_and_gradient_x_input(linear, target):
    apply_fn, params, x, w = linear
    expected = _w_rows(w, np.full(N, target))
    grad = saliency.vanilla_gradient(apply_fn, params, x, target)
    assert grad.shape == (N, *INPUT_SHAPE)
    assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    gxi = saliency.gradient_x_input(apply_fn, params, x, target)
    assert_allclose(gxi, expected * np.asarray(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("rule", ["midpoint", "trapezoid"])
@pytest.mark.parametrize("baseline", [None, 0.5, "example"])
def test_linear_integrated_gradients_closed_form(linear, steps, rule, baseline):
    apply_fn, params, x, w = linear
    if isinstance(baseline, str):  # one example-shaped baseline, shared by all examples
        baseline = jax.random.uniform(jax.random.PRNGKey(4), INPUT_SHAPE)
    b = np.zeros(INPUT_SHAPE) if baseline is None else np.asarray(baseline)
    ig = saliency.integrated_gradients(
        apply_fn, params, x, 1, baseline=baseline, steps=steps, rule=rule)
    assert_allclose(ig, _w_rows(w, np.full(N, 1)) * (np.asarray(x) - b), rtol=1e-5, atol=1e-5)
    gap = saliency.completeness_gap(apply_fn, params, x, 1, ig, baseline=baseline)
    assert_allclose(gap, 0.0, atol=1e-5)


@pytest.mark.parametrize("noise", [{"noise_level": 0.2}, {"sigma": 1.5}])
def test_linear_smoothgrad_is_weight(linear, noise):
    apply_fn, params, x, w = linear
    sg = saliency.smoothgrad(apply_fn, params, x, 2, jax.random.PRNGKey(5), samples=4, **noise)
    assert_allclose(sg, _w_rows(w, np.full(N, 2)), rtol=1e-5, atol=1e-6)


def test_linear_shapley_baseline_and_background(linear):
    apply_fn, params, x, w = linear
    expected_w = _w_rows(w, np.full(N, 0))
    phi = saliency.exact_shapley(apply_fn, params, x, 0)
    assert_allclose(phi, expected_w * np.asarray(x), rtol=1e-4, atol=1e-5)
    baseline = jnp.linspace(-1.0, 1.0, D).reshape(INPUT_SHAPE)
    phi_b = saliency.exact_shapley(apply_fn, params, x, 0, baseline=baseline)
    assert_allclose(phi_b, expected_w * (np.asarray(x) - np.asarray(baseline)),
                    rtol=1e-4, atol=1e-5)
    background = jax.random.normal(jax.random.PRNGKey(6), (7, *INPUT_SHAPE))
    phi_bg = saliency.exact_shapley(apply_fn, params, x, 0, background=background)
    expected = expected_w * (np.asarray(x) - np.asarray(background).mean(axis=0))
    assert_allclose(phi_bg, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- IG completeness


def test_integrated_gradients_completeness_gap(mlp4):
    apply_fn, params, x = mlp4
    gaps = {}
    for steps in (2, 64, 128):
        ig = saliency.integrated_gradients(apply_fn, params, x, "predicted", steps=steps)
        gaps[steps] = np.abs(saliency.completeness_gap(apply_fn, params, x, "predicted", ig))
    f_x = np.asarray(apply_fn(params, x)).max(axis=1)
    scale = np.abs(f_x).max()
    # Midpoint rule error falls as 1/steps^2: tiny at 64 steps relative to the outputs.
    assert gaps[64].max() < 1e-3 * max(scale, 1.0)
    assert gaps[128].max() < 1e-3 * max(scale, 1.0)
    # The report is meaningful: two steps leave a visibly larger gap.
    assert gaps[2].max() > 10 * gaps[128].max()
    assert gaps[2].max() > 1e-4


# --------------------------------------------------------------------------- Shapley


def _brute_force_values(f, x: np.ndarray, background: np.ndarray) -> dict:
    """``v(S) = mean_r f(x_S, b_r,notS)`` for every subset, by plain enumeration."""
    d = x.shape[0]
    values = {}
    for size in range(d + 1):
        for subset in itertools.combinations(range(d), size):
            rows = background.copy()
            rows[:, list(subset)] = x[list(subset)]
            values[frozenset(subset)] = float(np.mean([f(r) for r in rows]))
    return values


def _brute_force_shapley(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Shapley values by the subset formula with factorial weights."""
    d = x.shape[0]
    v = _brute_force_values(f, x, background)
    phi = np.zeros(d)
    for i in range(d):
        others = [k for k in range(d) if k != i]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                phi[i] += weight * (v[s | {i}] - v[s])
    return phi


def _brute_force_interaction(f, x, background, i, j) -> float:
    d = x.shape[0]
    v = _brute_force_values(f, x, background)
    others = [k for k in range(d) if k not in (i, j)]
    total = 0.0
    for size in range(d - 1):
        weight = math.factorial(size) * math.factorial(d - size - 2) / math.factorial(d - 1)
        for subset in itertools.combinations(others, size):
            s = frozenset(subset)
            total += weight * (v[s | {i, j}] - v[s | {i}] - v[s | {j}] + v[s])
    return total


@pytest.mark.parametrize("reference", ["baseline", "background"])
def test_shapley_efficiency_and_brute_force(mlp4, reference):
    apply_fn, params, x = mlp4
    if reference == "baseline":
        options = {"baseline": jnp.array([0.1, -0.2, 0.3, 0.0])}
        bg = np.asarray(options["baseline"])[None]
    else:
        options = {"background": jax.random.normal(jax.random.PRNGKey(7), (3, 4))}
        bg = np.asarray(options["background"])
    target = np.array([0, 1, 2, 0, 1, 2])
    phi = saliency.exact_shapley(apply_fn, params, x, target, **options)
    assert phi.shape == x.shape
    gap = saliency.completeness_gap(apply_fn, params, x, target, phi, **options)
    assert_allclose(gap, 0.0, atol=1e-5)  # efficiency
    for n in range(2):  # the brute force is slow in Python; two examples suffice
        def f(row, t=target[n]):
            return float(apply_fn(params, jnp.asarray(row)[None])[0, t])

        reference_phi = _brute_force_shapley(f, np.asarray(x[n]), bg)
        assert_allclose(phi[n], reference_phi, rtol=1e-4, atol=1e-5)


def test_shapley_grouped_calls_match_one_call(mlp4, monkeypatch):
    apply_fn, params, x = mlp4  # 6 examples, 2^4 coalitions, 3 background rows
    background = jax.random.normal(jax.random.PRNGKey(17), (3, 4))
    one_call = saliency.exact_shapley(apply_fn, params, x, 1, background=background)
    # 4 examples per call: two calls, the second padded with two dummy examples
    monkeypatch.setattr(saliency, "_SHAPLEY_ROWS_PER_CALL", 4 * 16 * 3)
    grouped = saliency.exact_shapley(apply_fn, params, x, 1, background=background)
    assert_allclose(grouped, one_call, rtol=1e-6, atol=1e-7)


def test_shapley_rejects_too_many_features():
    model = Linear(num_outputs=2)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 13)))["params"]
    with pytest.raises(ValueError, match="d=13"):
        saliency.exact_shapley(_apply(model), params, jnp.ones((2, 13)), 0)


# --------------------------------------------------------------------------- interactions


def _product_fn(a: float):
    """``f = a x0 x1 + sin(x2) + x3^2`` (one output), and its additive part alone."""
    def interacting(p, x):
        del p
        return (a * x[:, 0] * x[:, 1] + jnp.sin(x[:, 2]) + x[:, 3] ** 2)[:, None]

    def additive(p, x):
        del p
        return (jnp.sin(x[:, 0]) + x[:, 1] ** 3 + jnp.sin(x[:, 2]) + x[:, 3] ** 2)[:, None]

    return interacting, additive


def test_mixed_partial_closed_forms():
    a = 2.5
    interacting, additive = _product_fn(a)
    x = jax.random.normal(jax.random.PRNGKey(8), (7, 4))
    assert_allclose(saliency.mixed_partial(interacting, None, x, 0, 0, 1), a, rtol=1e-6)
    assert_allclose(saliency.mixed_partial(interacting, None, x, 0, 1, 0), a, rtol=1e-6)
    assert_allclose(saliency.mixed_partial(interacting, None, x, 0, 2, 3), 0.0, atol=1e-6)
    # the diagonal: d^2 x3^2 / dx3^2 = 2
    assert_allclose(saliency.mixed_partial(interacting, None, x, 0, 3, 3), 2.0, rtol=1e-6)
    for i, j in itertools.combinations(range(4), 2):
        assert_allclose(saliency.mixed_partial(additive, None, x, 0, i, j), 0.0, atol=1e-6)


def test_mixed_partial_matches_hessian(mlp4):
    apply_fn, params, x = mlp4
    target = 1
    got = saliency.mixed_partial(apply_fn, params, x, target, 0, 2)

    def f_one(row):
        return apply_fn(params, row[None])[0, target]

    hessians = jax.jit(jax.vmap(jax.hessian(f_one)))(x)
    assert_allclose(got, hessians[:, 0, 2], rtol=1e-5, atol=1e-6)


def test_shapley_interaction_closed_forms_and_brute_force(mlp4):
    a = 2.5
    interacting, additive = _product_fn(a)
    x = jax.random.normal(jax.random.PRNGKey(9), (5, 4))
    x_np = np.asarray(x)
    # baseline 0: the x0 x1 term is entirely the pair's interaction ...
    inter = saliency.shapley_interaction(interacting, None, x, 0, 0, 1)
    assert_allclose(inter, a * x_np[:, 0] * x_np[:, 1], rtol=1e-5, atol=1e-6)
    # ... which the additive Shapley values split half and half
    phi = saliency.exact_shapley(interacting, None, x, 0)
    assert_allclose(phi[:, 0], 0.5 * a * x_np[:, 0] * x_np[:, 1], rtol=1e-5, atol=1e-6)
    assert_allclose(saliency.shapley_interaction(interacting, None, x, 0, 2, 3), 0.0, atol=1e-5)
    for i, j in itertools.combinations(range(4), 2):
        assert_allclose(saliency.shapley_interaction(additive, None, x, 0, i, j), 0.0, atol=1e-5)
    apply_fn, params, xm = mlp4
    background = jax.random.normal(jax.random.PRNGKey(10), (2, 4))
    got = saliency.shapley_interaction(apply_fn, params, xm, 2, 1, 3, background=background)

    def f(row):
        return float(apply_fn(params, jnp.asarray(row)[None])[0, 2])

    want = _brute_force_interaction(f, np.asarray(xm[0]), np.asarray(background), 1, 3)
    assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- targets


def test_targets_select_the_right_output(linear):
    apply_fn, params, x, w = linear
    predicted = np.asarray(jnp.argmax(apply_fn(params, x), axis=1))
    per_example = np.array([2, 0, 1, 1, 0])
    for target, classes in [("predicted", predicted), (1, np.full(N, 1)),
                            (per_example, per_example), (jnp.asarray(per_example), per_example)]:
        grad = saliency.vanilla_gradient(apply_fn, params, x, target)
        assert_allclose(grad, _w_rows(w, classes), rtol=1e-5, atol=1e-6)
        assert_allclose(saliency.target_indices(apply_fn(params, x), target), classes)


def test_traced_target_array_under_jit(linear):
    apply_fn, params, x, w = linear
    per_example = jnp.array([2, 0, 1, 1, 0])
    grad = jax.jit(functools.partial(saliency.vanilla_gradient, apply_fn))(params, x, per_example)
    assert_allclose(grad, _w_rows(w, np.asarray(per_example)), rtol=1e-5, atol=1e-6)


def test_regression_target_is_output_zero():
    model = Linear(num_outputs=1)
    params = model.init(jax.random.PRNGKey(11), jnp.zeros((1, 3)))["params"]
    x = jnp.ones((4, 3))
    w = np.asarray(params["Dense_0"]["kernel"])[:, 0]
    for target in ("predicted", 0, jnp.array([0.3, 1.2, -2.0, 5.0])):  # float labels allowed
        grad = saliency.vanilla_gradient(_apply(model), params, x, target)
        assert_allclose(grad, np.broadcast_to(w, (4, 3)), rtol=1e-6)


@pytest.mark.parametrize("target, message", [
    ("largest", "predicted"), (3, r"\[0, 3\)"), (-1, r"\[0, 3\)"),
    (np.array([0, 1]), "shape"), (np.array([0.0, 1, 2, 0, 1]), "integer"),
    (np.array([0, 1, 2, 3, 0]), "outside"),
])
def test_bad_targets_raise(linear, target, message):
    apply_fn, params, x, _ = linear
    with pytest.raises(ValueError, match=message):
        saliency.vanilla_gradient(apply_fn, params, x, target)


# --------------------------------------------------------------------------- registry


def test_registry_names():
    assert set(saliency.ATTRIBUTION_METHODS) == {
        "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "shapley",
        "kernel_shap", "deeplift"}


@pytest.mark.parametrize("method, options", [
    ("gradient", {}), ("gradient_x_input", {}),
    ("integrated_gradients", {"steps": 8, "baseline": 0.1}),
    ("smoothgrad", {"samples": 3, "noise_level": 0.1}), ("shapley", {"baseline": 0.2}),
])
def test_attribute_matches_direct_call_and_jit(mlp4, method, options):
    apply_fn, params, x = mlp4
    key = jax.random.PRNGKey(12)
    direct = saliency.ATTRIBUTION_METHODS[method]
    if method == "smoothgrad":
        want = direct(apply_fn, params, x, "predicted", key, **options)
    else:
        want = direct(apply_fn, params, x, "predicted", **options)
    got = saliency.attribute(method, apply_fn, params, x, "predicted", key, **options)
    assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    jitted = jax.jit(functools.partial(saliency.attribute, method, apply_fn, target="predicted",
                                       **options))
    assert_allclose(jitted(params, x, key=key), want, rtol=1e-5, atol=1e-6)


def test_attribute_rejects_unknown_method_option_and_missing_key(mlp4):
    apply_fn, params, x = mlp4
    with pytest.raises(ValueError, match="'stepz'"):
        saliency.attribute("integrated_gradients", apply_fn, params, x, 0, stepz=3)
    with pytest.raises(ValueError, match="'steps'"):
        saliency.attribute("gradient", apply_fn, params, x, 0, steps=3)
    with pytest.raises(ValueError, match="'lime'"):
        saliency.attribute("lime", apply_fn, params, x, 0)
    with pytest.raises(ValueError, match="key"):
        saliency.attribute("smoothgrad", apply_fn, params, x, 0)
    with pytest.raises(ValueError, match="rule"):
        saliency.attribute("integrated_gradients", apply_fn, params, x, 0, rule="simpson")
    with pytest.raises(ValueError, match="steps"):
        saliency.attribute("integrated_gradients", apply_fn, params, x, 0, steps=0)


def test_smoothgrad_sigma_zero_is_gradient_and_noise_matters(mlp4):
    apply_fn, params, x = mlp4
    key = jax.random.PRNGKey(13)
    grad = saliency.vanilla_gradient(apply_fn, params, x, 0)
    assert_allclose(saliency.smoothgrad(apply_fn, params, x, 0, key, sigma=0.0, samples=2),
                    grad, rtol=1e-5)
    noisy = saliency.smoothgrad(apply_fn, params, x, 0, key, sigma=1.0, samples=4)
    assert np.abs(np.asarray(noisy) - np.asarray(grad)).max() > 1e-3
    # noise_level is relative to each example's own range: scaling the range by c and
    # noise_level by 1/c gives the same absolute noise, hence the same draws.
    span = np.asarray(x.max(axis=1) - x.min(axis=1))
    x_same_span = x / span[:, None]  # every example now spans exactly 1
    rel = saliency.smoothgrad(apply_fn, params, x_same_span, 0, key, noise_level=0.3, samples=4)
    ab = saliency.smoothgrad(apply_fn, params, x_same_span, 0, key, sigma=0.3, samples=4)
    assert_allclose(rel, ab, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- seed axis


@pytest.mark.parametrize("method, options", [
    ("gradient", {}), ("integrated_gradients", {"steps": 4}),
    ("smoothgrad", {"samples": 2}), ("shapley", {}),
])
def test_over_seeds_equals_single_seed(method, options):
    model = MLP(num_outputs=3, hidden_sizes=(8,), activation="tanh")
    num_seeds = 3
    init_keys = jax.random.split(jax.random.PRNGKey(14), num_seeds)
    stacked = jax.vmap(lambda k: model.init(k, jnp.zeros((1, 4)))["params"])(init_keys)
    keys = jax.random.split(jax.random.PRNGKey(15), num_seeds)
    x = jax.random.normal(jax.random.PRNGKey(16), (5, 4))
    apply_fn = _apply(model)
    lifted = jax.jit(functools.partial(
        saliency.attribute_over_seeds, method, apply_fn, target="predicted", **options))
    seed_keys = keys if method == "smoothgrad" else None
    got = lifted(stacked, x, keys=seed_keys)
    assert got.shape == (num_seeds, 5, 4)
    # one compiled single-seed function, reused for every seed
    single = jax.jit(functools.partial(
        saliency.attribute, method, apply_fn, target="predicted", **options))
    for s in range(num_seeds):
        want = single(take_seed(stacked, s), x, key=keys[s])
        assert_allclose(got[s], want, rtol=1e-5, atol=1e-6)
    # the seeds differ, so the check above is not vacuous
    assert np.abs(np.asarray(got[0] - got[1])).max() > 1e-3


def test_every_seed_schedule_gives_each_seed_its_own_attributions():
    model = MLP(num_outputs=3, hidden_sizes=(8,), activation="tanh")
    num_seeds = 4
    init_keys = jax.random.split(jax.random.PRNGKey(24), num_seeds)
    stacked = jax.vmap(lambda k: model.init(k, jnp.zeros((1, 4)))["params"])(init_keys)
    x = jax.random.normal(jax.random.PRNGKey(26), (5, 4))
    apply_fn = _apply(model)
    single = jax.jit(functools.partial(saliency.attribute, "integrated_gradients", apply_fn,
                                       target="predicted", steps=4))
    want = np.stack([single(take_seed(stacked, s), x) for s in range(num_seeds)])
    # Side by side; one at a time; two at a time, as if split over two devices (the
    # schedule, not the device count, is what a device count changes); the default.
    for per_step, devices in ((None, None), (1, None), (2, 2), ("auto", None)):
        got = saliency.attribute_over_seeds("integrated_gradients", apply_fn, stacked, x,
                                            "predicted", seeds_per_step=per_step,
                                            num_devices=devices, steps=4)
        assert got.shape == (num_seeds, 5, 4)
        assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(per_step))
    assert saliency.seed_devices(stacked) == (1, jax.default_backend())
    assert saliency.seeds_per_step_for("auto", "cpu") == 1
    assert saliency.seeds_per_step_for("auto", "gpu") is None
    for bad in (3, 0, True, "sequential"):
        with pytest.raises(ValueError, match="seeds_per_step"):
            saliency.attribute_over_seeds("gradient", apply_fn, stacked, x, 0,
                                          seeds_per_step=bad)
