"""A hyperparameter grid combined with per-seed ``hyperparams=`` (``expand_rows``)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import negres
from negres.errors import ArgumentError
from negres.training.grid import expand_rows


def test_grid_and_per_seed_values_make_point_major_rows():
    rows = expand_rows(None, [4, 7, 9], {"w": [0.5, 1.5, 2.5]},
                       {"learning_rate": [0.1, 0.2], "b1": [0.8, 0.9]})
    points = [(0.1, 0.8), (0.1, 0.9), (0.2, 0.8), (0.2, 0.9)]  # product, first axis slowest
    assert rows.grid_shape == (2, 2)
    assert rows.grid == {"learning_rate": (0.1, 0.2), "b1": (0.8, 0.9)}  # the axes only
    assert set(rows.hyper) == {"learning_rate", "b1", "w"}
    # Row p * S + s is seed s at point p.
    np.testing.assert_array_equal(rows.seed_indices, [4, 7, 9] * 4)
    np.testing.assert_allclose(rows.hyper["learning_rate"], np.repeat([p[0] for p in points], 3))
    np.testing.assert_allclose(rows.hyper["b1"], np.repeat([p[1] for p in points], 3))
    np.testing.assert_allclose(rows.hyper["w"], np.tile([0.5, 1.5, 2.5], 4))
    for name in rows.hyper:
        assert rows.hyper[name].shape == (12,)
        assert rows.hyper[name].dtype == rows.hyper["learning_rate"].dtype


def test_without_a_grid_hyperparams_are_per_row_as_before():
    rows = expand_rows(3, None, {"w": [1.0, 2.0, 3.0]}, None)
    np.testing.assert_array_equal(rows.seed_indices, [0, 1, 2])
    np.testing.assert_allclose(rows.hyper["w"], [1.0, 2.0, 3.0])
    assert rows.grid == {} and rows.grid_shape == ()


def test_a_name_in_both_the_grid_and_hyperparams_is_refused():
    with pytest.raises(ArgumentError) as err:
        expand_rows(2, None, {"learning_rate": [0.1, 0.2]}, {"learning_rate": [0.1, 0.3]})
    assert err.value.field == "hyperparams['learning_rate']"
    message = str(err.value)
    assert "hyperparams['learning_rate']=[0.1, 0.2]" in message
    assert "already a grid axis" in message
    assert "\n" not in message


@pytest.mark.parametrize("values", [[1.0], [1.0, 2.0, 3.0], [[1.0, 2.0]]])
def test_with_a_grid_hyperparams_need_one_value_per_seed(values):
    with pytest.raises(ArgumentError) as err:
        expand_rows(2, None, {"w": values}, {"learning_rate": [0.1, 0.2]})
    assert err.value.field == "hyperparams['w']"
    assert "2 finite numbers, one per seed" in str(err.value)


def test_with_a_grid_hyperparams_are_checked_like_without():
    with pytest.raises(ArgumentError, match=r"hyperparams\['w'\].*finite numbers"):
        expand_rows(2, None, {"w": [1.0, float("nan")]}, {"learning_rate": [0.1]})
    with pytest.raises(ArgumentError, match=r"hyperparams\['b1'\].*numbers in \[0, 1\)"):
        expand_rows(2, None, {"b1": [0.9, 1.5]}, {"learning_rate": [0.1]})


# ---------------------------------------------------------------- end to end

FEATURES, STEPS, BATCH = 4, 20, 8


def _weighted_program():
    """Linear regression whose loss is scaled by a per-seed weight ``hyper["w"]``."""

    def init(key, batch, hyper):
        w = 0.1 * jax.random.normal(negres.stream_key(key, "init"), (FEATURES,))
        return {"w": w}, {}

    def loss(params, model_state, batch, rngs, hyper):
        x, y = batch
        value = hyper["w"] * jnp.mean((x @ params["w"] - y) ** 2)
        return value, (model_state, {})

    return negres.loss_program(init, loss, optax.sgd, hyperparams={"learning_rate": 0.1},
                               hyper=True)


def test_a_grid_with_per_seed_hyperparams_equals_each_seed_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=FEATURES)).astype(np.float32)
    program = _weighted_program()
    weights, rates = [0.5, 2.0], [0.05, 0.1]
    common = dict(steps=STEPS, batch_size=BATCH, seed=3)
    both = negres.train(program, (x, y), num_seeds=2, grid={"learning_rate": rates},
                        hyperparams={"w": weights}, **common)
    assert both.grid == {"learning_rate": tuple(rates)}
    assert both.hyperparams["w"].shape == (2, 2)
    np.testing.assert_allclose(both.hyperparams["w"], [weights, weights])
    np.testing.assert_allclose(both.hyperparams["learning_rate"], [[0.05, 0.05], [0.1, 0.1]])
    assert both.params["w"].shape == (2, 2, FEATURES)
    for p, rate in enumerate(rates):
        for s, weight in enumerate(weights):
            # Seed s alone, without a grid: its learning rate and weight as its own values.
            alone = negres.train(program, (x, y), seed_indices=[s],
                                 hyperparams={"learning_rate": [rate], "w": [weight]}, **common)
            np.testing.assert_allclose(np.asarray(both.params["w"])[p, s],
                                       np.asarray(alone.params["w"])[0], rtol=1e-5)
    # The weight matters: the seeds differ from seeds trained with w swapped.
    swapped = negres.train(program, (x, y), num_seeds=2, grid={"learning_rate": rates},
                           hyperparams={"w": weights[::-1]}, **common)
    assert not np.allclose(np.asarray(both.params["w"]), np.asarray(swapped.params["w"]))
