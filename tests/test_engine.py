"""The seed engine's central promise: many seeds in one call, each equal to itself trained alone."""

import jax
import numpy as np
import optax
import pytest
from conftest import tree_allclose
from ml_collections import ConfigDict

from negres.errors import ArgumentError
from negres.models import build_model
from negres.seeds import num_seeds_of, take_seed
from negres.training.builtin import builtin_program, train_seeds
from negres.training.checks import check_training_arguments
from negres.training.driver import points_per_segment

MODEL_CONFIGS = {
    "linear": {"name": "linear"},
    "mlp_dropout": {"name": "mlp", "hidden_sizes": (32, 16), "dropout_rate": 0.2},
    # Native convolutions (not conv_impl="auto"'s matmuls on a CPU): the layout probe of
    # convolutional models is tested here.
    "cnn": {"name": "cnn", "channels": (4,), "dense_size": 16, "conv_impl": "lax"},
}
STEPS, EVAL_EVERY, BATCH = 30, 10, 32


_PROGRAMS = {}


def _train(task, model_name, **kwargs):
    """Train on ``task``, reusing one program (and so its compiled code) per model."""
    if model_name not in _PROGRAMS:
        model = build_model(ConfigDict(MODEL_CONFIGS[model_name]), task.num_outputs)
        _PROGRAMS[model_name] = (model, builtin_program(model, optax.adam(1e-2),
                                                        kind=task.kind))
    model, program = _PROGRAMS[model_name]
    args = dict(
        num_seeds=4, steps=STEPS, batch_size=BATCH, seed=7,
        eval_every=EVAL_EVERY, x_eval=task.x_test, y_eval=task.y_test,
    ) | kwargs
    return train_seeds(model, None, task.x_train, task.y_train, program=program, **args)


@pytest.fixture(scope="module", params=list(MODEL_CONFIGS))
def four_seed_run(request, small_digits):
    return request.param, _train(small_digits, request.param)


def test_stacked_shapes_have_seed_axis_first(four_seed_run):
    _, result = four_seed_run
    assert num_seeds_of(result.params) == 4
    assert num_seeds_of(result.opt_state) == 4
    np.testing.assert_array_equal(result.seed_indices, np.arange(4))
    np.testing.assert_array_equal(result.curve_steps, [10, 20, 30])
    assert set(result.curves) == {"train_loss", "train_accuracy", "eval_loss", "eval_accuracy"}
    for curve in result.curves.values():
        assert curve.shape == (4, STEPS // EVAL_EVERY)
        assert np.all(np.isfinite(curve))


def test_layout_auto_times_both_layouts_only_for_convolutional_models(four_seed_run):
    model_name, result = four_seed_run
    plan = result.plan
    assert plan["num_devices"] == 1 and plan["num_chunks"] == 1 and plan["padded_seeds"] == 0
    if model_name == "cnn":
        # Both candidates were timed on this device; map is kept only if clearly faster.
        timings = dict(part.rsplit(" ", 2)[:2] for part in
                       plan["reason"].split(": ")[2].split(", so")[0].split(", "))
        assert set(timings) == {"vmap", "map of 1"}
        clearly_faster = float(timings["map of 1"]) * 1.25 < float(timings["vmap"])
        assert plan["layout"] == ("map" if clearly_faster else "vmap")
    else:
        assert plan["layout"] == "vmap" and "no convolution" in plan["reason"]


def test_seed_trained_alone_equals_its_row_in_a_many_seed_run(four_seed_run, small_digits):
    model_name, result = four_seed_run
    alone = _train(small_digits, model_name, seed_indices=[2])
    # vmap batches the matmuls differently from a single-seed run, so equality is to float
    # tolerance, not bitwise.
    tree_allclose(take_seed(result.params, 2), take_seed(alone.params, 0), atol=2e-5, rtol=1e-4)
    for name in result.curves:
        np.testing.assert_allclose(
            result.curves[name][2], alone.curves[name][0], atol=2e-5, rtol=1e-4
        )


def test_same_config_gives_identical_numbers(four_seed_run, small_digits):
    model_name, result = four_seed_run
    again = _train(small_digits, model_name)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(result.params), leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in result.curves:
        np.testing.assert_array_equal(result.curves[name], again.curves[name])


def test_different_seeds_give_different_parameters(four_seed_run, small_digits):
    model_name, result = four_seed_run
    for leaf in jax.tree_util.tree_leaves(result.params):
        leaf = np.asarray(leaf)
        if leaf.ndim > 1 and leaf[0].size > 1:  # kernels; linen initialises biases to zero
            for i in range(4):
                for j in range(i + 1, 4):
                    assert not np.allclose(leaf[i], leaf[j])
    other_root = _train(small_digits, model_name, seed=8, num_seeds=1)
    kernel = lambda p: np.asarray(jax.tree_util.tree_leaves(p)[-1])  # noqa: E731
    assert not np.allclose(kernel(other_root.params)[0], kernel(result.params)[0])


def test_training_learns_digits(small_digits):
    result = _train(small_digits, "mlp_dropout", steps=200, num_seeds=3)
    # A 10-class problem: chance is 0.1; a trained MLP on 400 digits clears 0.8.
    assert np.all(result.curves["eval_accuracy"][:, -1] > 0.8)
    assert np.all(result.curves["train_loss"][:, -1] < result.curves["train_loss"][:, 0])


def test_linear_regression_recovers_true_coefficients(regression_task):
    model = build_model(ConfigDict({"name": "linear"}), 1)
    result = train_seeds(
        model, optax.adam(5e-2), regression_task.x_train, regression_task.y_train,
        num_seeds=3, steps=400, batch_size=64, kind="regression", eval_every=200,
        x_eval=regression_task.x_test, y_eval=regression_task.y_test,
    )
    kernel = np.asarray(result.params["Dense_0"]["kernel"])[..., 0]  # (S, 5)
    truth = regression_task.coefficients
    np.testing.assert_allclose(kernel, np.broadcast_to(truth, kernel.shape), atol=0.05)
    noise_var = 0.1 ** 2  # the task's noise_std (its declared default)
    # Test MSE approaches the irreducible noise variance.
    assert np.all(result.curves["eval_mse"][:, -1] < noise_var + 0.01)


def test_progress_reports_every_segment(small_digits):
    calls = []
    _train(small_digits, "linear", steps=200, num_seeds=2,
           progress=lambda update: calls.append((update.step, update.steps,
                                                 update.num_seeds)))
    # 20 curve points, reported in segments of 2 points (20 steps).
    assert [c[0] for c in calls] == list(range(20, 201, 20))
    assert all(total == 200 and s == 2 for _, total, s in calls)


@pytest.mark.parametrize("num_points", [1, 7, 10, 12, 100, 250])
def test_points_per_segment_divides_and_reports_often(num_points):
    per = points_per_segment(num_points)
    assert num_points % per == 0
    assert per <= max(1, -(-num_points // 10))


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("num_seeds", dict(num_seeds=0)),
        ("steps", dict(steps=0)),
        ("batch_size", dict(batch_size=401)),
        ("batch_size", dict(batch_size=0)),
        ("eval_every", dict(eval_every=7)),
    ],
)
def test_bad_training_arguments_name_the_field(field, kwargs):
    args = dict(num_seeds=2, steps=10, batch_size=8, eval_every=5, num_train=400) | kwargs
    with pytest.raises(ArgumentError) as err:
        check_training_arguments(**args)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}=")


def test_label_noise_flips_the_requested_share_per_seed():
    from negres.seeds import seed_keys, stream_key
    from negres.training.builtin import noisy_labels

    labels = jax.numpy.asarray(np.arange(20_000) % 10, dtype=jax.numpy.int32)
    indices = jax.numpy.arange(20_000)
    keys = [stream_key(k, "label_noise") for k in seed_keys(0, [0, 1])]
    noisy = [np.asarray(noisy_labels(k, indices, labels, 0.3, 10)) for k in keys]
    for n in noisy:
        wrong = n != np.asarray(labels)
        # Binomial(20000, 0.3): 4 standard deviations is 0.013.
        assert abs(wrong.mean() - 0.3) < 0.013
        assert n.min() >= 0 and n.max() <= 9
        # Wrong labels are spread over the other nine classes.
        offsets = (n[wrong] - np.asarray(labels)[wrong]) % 10
        assert set(np.unique(offsets)) == set(range(1, 10))
    # Seeds differ in which labels are noisy; the same seed and example always agree.
    assert (noisy[0] != noisy[1]).mean() > 0.3
    again = np.asarray(noisy_labels(keys[0], indices[::-1], labels[::-1], 0.3, 10))[::-1]
    np.testing.assert_array_equal(again, noisy[0])


def test_label_noise_hurts_training_fit_but_not_the_clean_labels(small_digits):
    model = build_model(ConfigDict(MODEL_CONFIGS["linear"]), 10)
    common = dict(num_seeds=2, steps=300, batch_size=64, eval_every=300,
                  x_eval=small_digits.x_train, y_eval=small_digits.y_train)
    clean = train_seeds(model, optax.adam(1e-2), small_digits.x_train, small_digits.y_train,
                        **common)
    noisy = train_seeds(model, optax.adam(1e-2), small_digits.x_train, small_digits.y_train,
                        label_noise=0.4, num_classes=10, **common)
    # Batch accuracy is measured against the noisy labels the seed trains on: about 60% at best.
    assert np.all(noisy.curves["train_accuracy"][:, -1] < 0.75)
    assert np.all(clean.curves["train_accuracy"][:, -1] > 0.9)
    with pytest.raises(ArgumentError, match="label_noise"):
        train_seeds(model, optax.adam(1e-2), small_digits.x_train, small_digits.y_train,
                    label_noise=1.5, num_classes=10, **common)


def test_learning_rates_ride_the_seed_axis(small_digits):
    """Rows with different learning rates in one call equal separate runs at each rate."""
    from negres.training.optimizers import build_optimizer

    model = build_model(ConfigDict(MODEL_CONFIGS["linear"]), 10)
    optimizer = build_optimizer(ConfigDict({"name": "adam", "learning_rate": 0.01}))
    common = dict(steps=30, batch_size=32, eval_every=30)
    mixed = train_seeds(model, optimizer, small_digits.x_train, small_digits.y_train,
                        seed_indices=[0, 1, 0, 1],
                        hyperparams={"learning_rate": [0.01, 0.01, 0.001, 0.001]}, **common)
    for rate, rows in ((0.01, [0, 1]), (0.001, [2, 3])):
        alone = train_seeds(
            model, build_optimizer(ConfigDict({"name": "adam", "learning_rate": rate})),
            small_digits.x_train, small_digits.y_train, num_seeds=2, **common)
        for row, seed in zip(rows, (0, 1), strict=True):
            tree_allclose(take_seed(mixed.params, row), take_seed(alone.params, seed),
                          atol=2e-5, rtol=1e-4)
    with pytest.raises(ArgumentError, match=r"hyperparams\['learning_rate'\]"):
        train_seeds(model, optimizer, small_digits.x_train, small_digits.y_train, num_seeds=2,
                    hyperparams={"learning_rate": [0.1]}, **common)
