"""The cascading randomisation check on a model's whole variables (BatchNorm statistics)."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from ml_collections import ConfigDict
from numpy.testing import assert_array_equal

import negres
from negres.errors import ArgumentError, ConfigError
from negres.measures import agreement
from negres.seeds import take_seed
from negres.tasks import load_task

FEATURES, S = 3, 2
LAYERS = ("Dense_0", "BatchNorm_0", "Dense_1")


class BatchNormNet(nn.Module):
    outputs: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(4)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(self.outputs)(nn.relu(x))


@pytest.fixture(scope="module")
def net():
    model = BatchNormNet()
    x = jax.random.normal(jax.random.PRNGKey(0), (5, FEATURES))

    def variables(key):
        # Running statistics moved off their initial values, as training moves them.
        init = model.init(key, x)
        _, updates = model.apply(init, 3.0 * x + 1.0, train=True, mutable=["batch_stats"])
        return {"params": init["params"], **updates}

    trained = variables(jax.random.PRNGKey(1))
    fresh = variables(jax.random.PRNGKey(2))
    apply = negres.linen_apply(model)

    def attribution_fn(v, xs):  # gradient of the first output
        return jax.grad(lambda z: apply(v, z)[:, 0].sum())(xs)

    return model, x, trained, fresh, attribution_fn


def _leaves_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for one, other in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert_array_equal(np.asarray(one), np.asarray(other))


def test_the_layers_of_variables_are_the_entries_of_params(net):
    model, x, trained, _, _ = net
    assert set(trained) == {"params", "batch_stats"}
    assert agreement.layer_order(model, x) == LAYERS
    # Straight from init the dict order is the creation order; never the collections.
    assert agreement.resolve_layer_names(trained) == LAYERS
    assert agreement.resolve_layer_names(trained, LAYERS) == LAYERS
    assert agreement.randomization_layer_names(trained, LAYERS) == LAYERS[::-1]


def test_cascade_randomises_params_top_first_and_keeps_batch_stats(net):
    _, _, trained, fresh, _ = net
    cascade = agreement.cascade_params(trained, fresh, LAYERS)
    assert set(cascade) == {"params", "batch_stats"}
    _leaves_equal(cascade["batch_stats"], trained["batch_stats"])  # bit-identical, no axis
    # Row k - 1 has the top k layers of params from `fresh`.
    for position, name in enumerate(LAYERS):
        for row in range(len(LAYERS)):
            source = fresh if position >= len(LAYERS) - 1 - row else trained
            _leaves_equal(jax.tree_util.tree_map(lambda a, r=row: a[r], cascade["params"][name]),
                          source["params"][name])


def test_cascading_randomization_over_variables(net):
    _, x, trained, fresh, attribution_fn = net
    result = np.asarray(agreement.cascading_randomization(
        attribution_fn, trained, fresh, x, layer_names=LAYERS))
    assert result.shape == (3,)  # Dense_1, BatchNorm_0, Dense_0 re-drawn in turn
    assert np.all(np.isfinite(result))
    same = agreement.cascading_randomization(attribution_fn, trained, trained, x,
                                             layer_names=LAYERS)
    np.testing.assert_allclose(np.asarray(same), np.ones(3), atol=1e-5)
    # Each step equals explaining the variables with those layers of params re-drawn and
    # the trained batch statistics.
    for k in range(1, 4):
        drawn = {**trained, "params": {name: (fresh if i >= 3 - k else trained)["params"][name]
                                       for i, name in enumerate(LAYERS)}}
        expected = np.nanmean(np.asarray(agreement.spearman_per_example(
            attribution_fn(trained, x), attribution_fn(drawn, x))))
        np.testing.assert_allclose(result[k - 1], expected, atol=1e-5)


def test_over_seeds_equals_each_seed_and_keeps_the_layer_names(net):
    _, x, _, _, attribution_fn = net
    model = BatchNormNet()
    keys = jax.random.split(jax.random.PRNGKey(3), 2 * S)
    stacked = jax.vmap(lambda k: model.init(k, x))(keys[:S])  # dicts rebuilt, keys sorted
    fresh = jax.vmap(lambda k: model.init(k, x))(keys[S:])
    lifted = agreement.cascading_randomization_over_seeds(
        attribution_fn, stacked, fresh, x, layer_names=LAYERS)
    assert lifted.shape == (S, 3)
    for s in range(S):
        one = agreement.cascading_randomization(
            attribution_fn, take_seed(stacked, s), take_seed(fresh, s), x,
            layer_names=LAYERS)
        np.testing.assert_allclose(np.asarray(lifted[s]), np.asarray(one), atol=1e-5)


@pytest.mark.parametrize("names", [("params", "batch_stats"), ("Dense_0", "Dense_1"), "Dense_0"])
def test_a_bad_layer_name_names_the_library_argument(net, names):
    _, x, trained, fresh, attribution_fn = net
    with pytest.raises(ArgumentError) as err:
        agreement.cascading_randomization(attribution_fn, trained, fresh, x, layer_names=names)
    assert not isinstance(err.value, ConfigError)
    message = str(err.value)
    assert err.value.field == "layer_names"
    assert message.startswith("layer_names=") and "config." not in message
    assert repr(names if isinstance(names, str) else tuple(names)) in message
    assert "a permutation of the parameter layers ('Dense_0', 'BatchNorm_0', 'Dense_1')" \
        in message
    with pytest.raises(ArgumentError, match=r"^layer_names="):
        agreement.randomization_layer_names(trained, names)


def test_evaluate_checks_the_layers_of_variables_and_names_its_argument():
    task = load_task(ConfigDict({"name": "synthetic_regression", "num_train": 16,
                                 "num_test": 6}))
    model = BatchNormNet(outputs=1)
    example = task.x_test[:1]
    # One seed: the randomisation check runs without the cross-seed agreement.
    variables = jax.vmap(lambda k: model.init(k, example))(jax.random.PRNGKey(0)[None])

    def run(layers):
        return negres.evaluate(
            negres.linen_apply(model), variables, task, evaluators=("attributions",),
            settings={"attributions": {"attribution_methods": ("gradient",),
                                       "attribution_examples": 6}},
            init=lambda k: model.init(k, example), layers=layers)["attributions"]

    out = run(agreement.layer_order(model, example))
    assert out.shared["randomization_layers"]["gradient"] == list(LAYERS[::-1])
    assert out.per_seed["randomization"]["gradient"].shape == (1, 3)
    with pytest.raises(ArgumentError) as err:
        run(("params", "batch_stats"))
    assert err.value.field == "layers"
    assert str(err.value).startswith("layers=('params', 'batch_stats') is not allowed: "
                                     "a permutation of the parameter layers")
