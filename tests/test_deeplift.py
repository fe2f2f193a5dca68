"""Tests of negres.measures.deeplift against closed forms, saliency methods and its refusals."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from numpy.testing import assert_allclose

from negres.measures import saliency
from negres.measures.deeplift import deeplift
from negres.models import CNN, MLP, AttentionClassifier, Linear
from negres.seeds import over_seeds, take_seed
from negres.training.linen import linen_apply

INPUT_SHAPE = (2, 3)
K = 3
N = 5
R = 4
# float32 sums of a few dozen terms: tolerances relative to the largest value compared.
RTOL = 1e-5
ATOL = 1e-6


def _apply(model):
    return lambda p, x: model.apply({"params": p}, x)


def _net(activation: str, hidden: tuple[int, ...], seed: int, k: int = K):
    """An MLP on INPUT_SHAPE with random (not zero) biases, so units sit anywhere."""
    model = MLP(num_outputs=k, hidden_sizes=hidden, activation=activation)
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), len(params)))
    params = {name: {**layer, "bias": 0.5 * jax.random.normal(next(keys), layer["bias"].shape)}
              for name, layer in params.items()}
    return _apply(model), params


def _inputs(seed: int, rows: int = N) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (rows, *INPUT_SHAPE))


def _layers(params) -> list[tuple[np.ndarray, np.ndarray]]:
    names = sorted(params, key=lambda name: int(name.split("_")[1]))
    return [(np.asarray(params[n]["kernel"], np.float64), np.asarray(params[n]["bias"],
                                                                   np.float64)) for n in names]


def _pre_activations(params, x) -> list[np.ndarray]:
    """Hidden pre-activations of a ReLU MLP, computed in numpy."""
    h, pre = np.asarray(x, np.float64).reshape(len(x), -1), []
    for w, b in _layers(params)[:-1]:
        pre.append(h @ w + b)
        h = np.maximum(pre[-1], 0.0)
    return pre


def _target_out(apply_fn, params, x, target) -> np.ndarray:
    out = np.asarray(apply_fn(params, x))
    return out[np.arange(len(out)), target]


def _close(actual, expected):
    expected = np.asarray(expected)
    assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * max(1.0, np.abs(expected).max()))


# --------------------------------------------------------------------------- completeness


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("reference", ["zeros", "example", "background"])
def test_completeness_is_exact(activation, reference):
    apply_fn, params = _net(activation, (8, 6), seed=0)
    x, refs = _inputs(2), _inputs(3, R)
    target = jnp.arange(N) % K
    if reference == "background":
        attr = deeplift(apply_fn, params, x, target, background=refs)
        f_ref = np.asarray(apply_fn(params, refs)).mean(axis=0)[np.asarray(target)]
    else:
        baseline = None if reference == "zeros" else refs[0]
        attr = deeplift(apply_fn, params, x, target, baseline=baseline)
        ref = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)
        f_ref = _target_out(apply_fn, params, ref, np.asarray(target))
    assert attr.shape == x.shape
    expected = _target_out(apply_fn, params, x, np.asarray(target)) - f_ref
    _close(np.asarray(attr).reshape(N, -1).sum(axis=1), expected)
    # The same bookkeeping as saliency's completeness check.
    gap = saliency.completeness_gap(
        apply_fn, params, x, target, attr, background=refs if reference == "background"
        else None, baseline=None if reference != "example" else refs[0])
    assert_allclose(gap, 0.0, atol=ATOL * max(1.0, np.abs(expected).max()) * 10)


# --------------------------------------------------------------------------- closed forms


def test_one_hidden_layer_relu_closed_form():
    """attr_i = (x_i - r_i) sum_j W1_ij m_j W2_jt with the secant m_j of unit j's ReLU."""
    apply_fn, params = _net("relu", (7,), seed=4)
    x, r = _inputs(5), _inputs(6, 1)[0]
    target = 1
    attr = deeplift(apply_fn, params, x, target, baseline=r)

    (w1, b1), (w2, _) = _layers(params)
    dx = np.asarray(x - r, np.float64).reshape(N, -1)
    z_x = np.asarray(x, np.float64).reshape(N, -1) @ w1 + b1
    z_r = np.asarray(r, np.float64).reshape(1, -1) @ w1 + b1
    secant = (np.maximum(z_x, 0) - np.maximum(z_r, 0)) / (z_x - z_r)
    # Units that switch on or off between r and x: the secant is then neither 0 nor 1, which
    # is where DeepLIFT differs from a gradient.
    assert ((secant > 0) & (secant < 1)).any()
    expected = dx * ((secant * w2[:, target]) @ w1.T)
    _close(np.asarray(attr).reshape(N, -1), expected)


def test_unit_unchanged_between_x_and_reference_takes_the_derivative():
    """A unit whose input is the same at x and r (0/0) gets the activation's derivative,
    DeepLIFT's limit, so the features that cancel in it keep their opposite shares."""
    apply_fn, params = _net("tanh", (2,), seed=7)
    r = jnp.zeros(INPUT_SHAPE)
    x = jnp.zeros((1, *INPUT_SHAPE)).at[0, 0, 0].set(1.0).at[0, 0, 1].set(1.0)
    # Unit 0 weighs the two changed features +1 and -1: its input does not move.
    w1 = np.asarray(params["Dense_0"]["kernel"]).copy()
    w1[:2, 0] = [1.0, -1.0]
    params = {**params, "Dense_0": {**params["Dense_0"], "kernel": jnp.asarray(w1)}}
    attr = np.asarray(deeplift(apply_fn, params, x, 0, baseline=r)).reshape(-1)

    (w1, b1), (w2, _) = _layers(params)
    dx = np.asarray(x - r, np.float64).reshape(-1)
    z_x, z_r = dx @ w1 + b1, b1
    assert z_x[0] == z_r[0] and z_x[1] != z_r[1]
    slope = np.where(z_x == z_r, 1 - np.tanh(z_x) ** 2,
                     (np.tanh(z_x) - np.tanh(z_r)) / np.where(z_x == z_r, 1.0, z_x - z_r))
    expected = dx * ((slope * w2[:, 0]) @ w1.T)
    assert np.isfinite(attr).all()
    assert abs(expected[0] - expected[1]) > 0  # the unit's cancelling shares are visible
    _close(attr, expected)


@pytest.mark.parametrize("baseline", [None, "example"])
def test_linear_model_gives_weight_times_difference(baseline):
    model = Linear(num_outputs=K)
    params = model.init(jax.random.PRNGKey(8), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    apply_fn, x = _apply(model), _inputs(9)
    r = None if baseline is None else _inputs(10, 1)[0]
    attr = deeplift(apply_fn, params, x, 2, baseline=r)
    w = np.asarray(params["Dense_0"]["kernel"])[:, 2].reshape(INPUT_SHAPE)
    _close(attr, (np.asarray(x) - (0.0 if r is None else np.asarray(r))) * w)
    if baseline is None:  # zero baseline: gradient x input
        _close(attr, saliency.gradient_x_input(apply_fn, params, x, 2))


def test_relu_net_without_sign_changes_equals_gradient_times_difference():
    """No ReLU switches between r and x: the network is affine on the segment, every
    secant is the slope at x, and DeepLIFT is the gradient times (x - r)."""
    apply_fn, params = _net("relu", (8, 6), seed=11)
    x = _inputs(12)
    r = x[0] + 1e-2 * _inputs(13, 1)[0]  # one reference close to the first example
    x = jnp.broadcast_to(x[0], x.shape) + 1e-2 * _inputs(14)
    for pre_x, pre_r in zip(_pre_activations(params, x), _pre_activations(params, r[None]),
                            strict=True):
        assert (np.sign(pre_x) == np.sign(pre_r)).all(), "precondition: no unit switches"
    attr = deeplift(apply_fn, params, x, "predicted", baseline=r)
    grad = saliency.vanilla_gradient(apply_fn, params, x, "predicted")
    _close(attr, np.asarray(grad) * np.asarray(x - r))


# --------------------------------------------------------------------------- references, targets


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_background_is_the_mean_of_single_baselines(activation):
    apply_fn, params = _net(activation, (8,), seed=15)
    x, refs = _inputs(16), _inputs(17, R)
    shap_like = deeplift(apply_fn, params, x, "predicted", background=refs)
    each = [deeplift(apply_fn, params, x, "predicted", baseline=refs[i]) for i in range(R)]
    _close(shap_like, np.mean(np.stack(each), axis=0))
    # ... and not any one of them.
    assert not np.allclose(shap_like, each[0], rtol=RTOL)


def test_target_array_picks_each_example_class_and_regression_ignores_it():
    apply_fn, params = _net("gelu", (8,), seed=18)
    x, target = _inputs(19), jnp.array([0, 2, 1, 1, 0])
    per_example = deeplift(apply_fn, params, x, target)
    by_class = [deeplift(apply_fn, params, x, c) for c in range(K)]
    _close(per_example, np.stack([by_class[int(t)][n] for n, t in enumerate(target)]))

    regression, reg_params = _net("gelu", (8,), seed=20, k=1)
    labels = np.linspace(-1.0, 1.0, N)  # regression labels passed as a target: ignored
    _close(deeplift(regression, reg_params, x, labels), deeplift(regression, reg_params, x, 0))


def test_dropout_at_evaluation_and_linen_apply_are_accepted():
    plain = MLP(num_outputs=K, hidden_sizes=(8,))
    dropped = MLP(num_outputs=K, hidden_sizes=(8,), dropout_rate=0.5)
    params = plain.init(jax.random.PRNGKey(21), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    x = _inputs(22)
    _close(deeplift(linen_apply(dropped), params, x, 1),
           deeplift(_apply(plain), params, x, 1))


def test_jit_and_vmap_over_seeds_equal_per_seed_calls():
    model = MLP(num_outputs=K, hidden_sizes=(8, 6), activation="tanh")
    apply_fn, x, refs = _apply(model), _inputs(23), _inputs(24, R)
    keys = jax.random.split(jax.random.PRNGKey(25), 3)
    params = jax.vmap(lambda k: model.init(k, jnp.zeros((1, *INPUT_SHAPE)))["params"])(keys)

    def one_seed(p):
        return deeplift(apply_fn, p, x, "predicted", background=refs)

    lifted = jax.jit(over_seeds(one_seed))(params)
    assert lifted.shape == (3, N, *INPUT_SHAPE)
    for s in range(3):
        _close(lifted[s], one_seed(take_seed(params, s)))
    assert not np.allclose(lifted[0], lifted[1])  # the seeds really differ


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("conv_impl", ["lax", "matmul"])
def test_refuses_a_cnn(conv_impl):
    model = CNN(num_outputs=K, channels=(2,), dense_size=4, conv_impl=conv_impl)
    params = model.init(jax.random.PRNGKey(26), jnp.zeros((1, 6, 1)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(27), (N, 6, 1))
    found = "nn.Conv at Conv_0" if conv_impl == "lax" else "MatmulConv at Conv_0"
    with pytest.raises(ValueError, match=f"chain of nn.Dense layers.*; found .*{found}"):
        deeplift(_apply(model), params, x, 0)


def test_refuses_an_attention_model():
    model = AttentionClassifier(num_outputs=K, patch_size=2, embed_dim=4, num_heads=2,
                                mlp_dim=4)
    params = model.init(jax.random.PRNGKey(28), jnp.zeros((1, 4, 1)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(29), (N, 4, 1))
    with pytest.raises(ValueError, match=r"LayerNorm.*MultiHeadDotProductAttention"):
        deeplift(_apply(model), params, x, 0)


def test_refuses_an_nnx_model_and_a_plain_function():
    x = _inputs(30)
    graphdef, state = nnx.split(nnx.Linear(6, K, rngs=nnx.Rngs(0)))

    def nnx_fn(p, xb):
        return nnx.merge(graphdef, p)(xb.reshape(len(xb), -1))

    def plain_fn(w, xb):
        return xb.reshape(len(xb), -1) @ w

    for apply_fn, params in [(nnx_fn, state), (plain_fn, jnp.ones((6, K)))]:
        with pytest.raises(ValueError, match=r"no nn\.Dense layer ran"):
            deeplift(apply_fn, params, x, 0)


def test_refuses_an_apply_fn_jitted_on_its_own():
    """A jitted apply_fn replays its trace without running the modules, so nothing can be
    intercepted: refused whether or not it was compiled before."""
    model = MLP(num_outputs=K, hidden_sizes=(4,))
    params = model.init(jax.random.PRNGKey(33), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    x = _inputs(34)
    fresh, warm = jax.jit(_apply(model)), jax.jit(_apply(model))
    warm(params, x)
    for apply_fn in (fresh, warm):
        with pytest.raises(ValueError, match=r"jitted"):
            deeplift(apply_fn, params, x, 0)


class _SumBetween(nn.Module):
    """Dense, then a sum over units (not elementwise), then Dense."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4)(x.reshape(len(x), -1))
        return nn.Dense(K)(jnp.tanh(h).sum(axis=-1, keepdims=True))


class _Pooled(nn.Module):
    """The model's output is not elementwise in its last Dense's output."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(K)(x).mean(axis=1)


@pytest.mark.parametrize("module, message", [
    (_SumBetween(), r"nn.Dense Dense_1 takes an input of shape \(5, 1\).*returns \(5, 4\)"),
    (_Pooled(),
     r"model returns shape \(5, 3\), but its last nn.Dense \(Dense_0\) returns \(5, 2, 3\)"),
])
def test_refuses_maps_that_are_not_elementwise(module, message):
    params = module.init(jax.random.PRNGKey(31), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    with pytest.raises(ValueError, match=message):
        deeplift(_apply(module), params, _inputs(32), 0)
