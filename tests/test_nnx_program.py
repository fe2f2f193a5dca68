"""Flax NNX models on the open training contract: seeds, grids, resume and evaluators.

Every training call below compiles for its number of rows (seeds times grid points) and
its hyperparameters, so the calls share shapes: 6 rows (a 2 x 3 grid, or 6 seeds at one
learning rate given per row) and 1 row (a seed alone), each compiled once.
"""

import importlib.util
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.datasets import load_digits

from negres.seeds import over_seeds, take_seed
from negres.training.checkpoint import Checkpointing, TrainingCheckpoints
from negres.training.contract import LossState
from negres.training.driver import train
from negres.training.nnx import nnx_apply, nnx_program

STEPS, EVAL_EVERY, BATCH = 40, 10, 32
LEARNING_RATES = (1e-2, 3e-3)
NUM_SEEDS = 6  # the seeds of the main run: as many rows as the 2 x 3 grid, one compile
GRID_SEEDS = 3
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nnx_model.py"


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        # No bias before BatchNorm: its gradient is zero up to rounding, which Adam scales
        # up to steps of the learning rate, so a seed alone and beside others would differ.
        self.hidden = nnx.Linear(64, 32, use_bias=False, rngs=rngs)
        # A fast momentum, so 40 steps move the running statistics well away from (0, 1).
        self.norm = nnx.BatchNorm(32, momentum=0.8, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.norm(self.hidden(x)))))


def cross_entropy(logits, batch):
    _, y = batch
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, {"accuracy": (logits.argmax(-1) == y).mean()}


@pytest.fixture(scope="module")
def digits():
    """Real digits, flattened: 400 training and 200 evaluation examples."""
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    return (x[:400], y[:400]), (x[400:600], y[400:600])


@pytest.fixture(scope="module")
def program():
    # One program for every call: its compiled code is cached per row count.
    return nnx_program(MLP, cross_entropy, optax.adam,
                       hyperparams={"learning_rate": LEARNING_RATES[0]})


def _train(program, digits, **kwargs):
    data, eval_data = digits
    return train(program, data, steps=STEPS, batch_size=BATCH, eval_data=eval_data,
                 eval_every=EVAL_EVERY, **kwargs)


def _at_rate(rate, seeds):
    """Rows of ``seeds`` at one learning rate, given per row (so no grid axis)."""
    seeds = list(seeds)
    return {"seed_indices": seeds, "hyperparams": {"learning_rate": [rate] * len(seeds)}}


@pytest.fixture(scope="module")
def run(program, digits):
    return _train(program, digits, **_at_rate(LEARNING_RATES[0], range(NUM_SEEDS)))


@pytest.fixture(scope="module")
def grid_run(program, digits):
    return _train(program, digits, seed_indices=range(GRID_SEEDS),
                  grid={"learning_rate": list(LEARNING_RATES)})


def _assert_trees_close(a, b, atol):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


def _assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_seeds_learn_the_digits(run):
    assert run.curves["train_loss"].shape == (NUM_SEEDS, STEPS // EVAL_EVERY)
    assert np.all(run.diverged_at == -1)
    loss = run.curves["train_loss"]
    assert np.all(loss[:, -1] < 0.6 * loss[:, 0])
    assert np.all(run.final("eval_accuracy") > 0.6)  # chance is 0.1


def test_state_is_plain_arrays_with_keys_as_uint32_data(run):
    assert isinstance(run.state, LossState)
    for leaf in jax.tree_util.tree_leaves(run.state):
        assert leaf.shape[0] == NUM_SEEDS
        assert np.issubdtype(leaf.dtype, np.number)  # no typed key<fry> leaves
    assert run.params["hidden"]["kernel"].shape == (NUM_SEEDS, 64, 32)
    assert set(run.model_state) == {"norm", "dropout"}
    stream = run.model_state["dropout"]["rngs"]
    assert stream["key"].shape == (NUM_SEEDS, 2) and stream["key"].dtype == np.uint32
    assert stream["count"].dtype == np.uint32


def test_batchnorm_statistics_are_trained_per_seed(run):
    mean = np.asarray(run.model_state["norm"]["mean"])
    var = np.asarray(run.model_state["norm"]["var"])
    assert mean.shape == var.shape == (NUM_SEEDS, 32)
    # Every seed's statistics moved from their initial zeros and ones.
    assert np.all(np.abs(mean).max(axis=1) > 0.05)
    assert np.all(np.abs(var - 1).max(axis=1) > 0.05)
    for s in range(1, NUM_SEEDS):
        assert np.abs(mean[s] - mean[0]).max() > 1e-3  # every seed its own


def test_a_seed_trained_alone_equals_the_same_seed_beside_others(program, digits, run):
    seed = 2
    alone = _train(program, digits, **_at_rate(LEARNING_RATES[0], [seed]))
    _assert_trees_close(alone.state, jax.tree_util.tree_map(lambda a: a[seed:seed + 1],
                                                            run.state), atol=5e-6)
    for name, curve in alone.curves.items():
        np.testing.assert_allclose(curve, run.curves[name][seed:seed + 1], rtol=0, atol=5e-6)


def test_every_grid_point_equals_its_learning_rate_trained_alone(program, digits, run,
                                                                 grid_run):
    points = len(LEARNING_RATES)
    assert grid_run.curves["eval_accuracy"].shape == (points, GRID_SEEDS, STEPS // EVAL_EVERY)
    assert grid_run.params["out"]["kernel"].shape == (points, GRID_SEEDS, 32, 10)
    assert grid_run.grid["learning_rate"] == pytest.approx(LEARNING_RATES)  # float32 values
    # The first rate's seeds are the main run's first seeds, trained without a grid.
    for name, curve in grid_run.curves.items():
        np.testing.assert_allclose(curve[0], run.curves[name][:GRID_SEEDS], rtol=0, atol=1e-6)
    _assert_trees_close(jax.tree_util.tree_map(lambda a: a[0], grid_run.params),
                        jax.tree_util.tree_map(lambda a: a[:GRID_SEEDS], run.params), atol=1e-6)
    # The second rate, a seed at a time.
    for seed in range(GRID_SEEDS):
        alone = _train(program, digits, **_at_rate(LEARNING_RATES[1], [seed]))
        _assert_trees_close(alone.state, jax.tree_util.tree_map(
            lambda a, s=seed: a[1, s:s + 1], grid_run.state), atol=1e-6)
        for name, curve in alone.curves.items():
            np.testing.assert_allclose(curve, grid_run.curves[name][1, seed:seed + 1], rtol=0,
                                       atol=1e-6)
    # The rates really differ.
    assert np.abs(grid_run.curves["train_loss"][0] - grid_run.curves["train_loss"][1]).max() \
        > 1e-3


def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(program, digits, run,
                                                                tmp_path):
    rows = _at_rate(LEARNING_RATES[0], range(NUM_SEEDS))
    whole = tmp_path / "whole"
    with TrainingCheckpoints(whole) as checkpoints:
        uninterrupted = _train(program, digits,
                               checkpointing=Checkpointing(checkpoints, every=20), **rows)
        assert checkpoints.all_steps() == [20, 40]
    # What a run killed between steps 20 and 40 leaves behind.
    killed = tmp_path / "killed"
    shutil.copytree(whole, killed)
    shutil.rmtree(killed / "40")
    with TrainingCheckpoints(killed) as checkpoints:
        assert checkpoints.latest_step() == 20
        resumed = _train(program, digits,
                         checkpointing=Checkpointing(checkpoints, every=20), **rows)
    assert resumed.plan["resumed_from_step"] == 20
    assert uninterrupted.plan["resumed_from_step"] is None
    _assert_trees_equal(resumed.state, uninterrupted.state)
    _assert_trees_equal(resumed.curves, uninterrupted.curves)
    # Checkpointing changes nothing either.
    _assert_trees_equal(uninterrupted.state, run.state)
    _assert_trees_equal(uninterrupted.curves, run.curves)


def test_nnx_apply_over_seeds_equals_each_seed_evaluated_by_flax(digits, run):
    _, (x, y) = digits
    apply = nnx_apply(MLP)
    variables = {"params": run.params, "model_state": run.model_state}
    lifted = np.asarray(jax.jit(over_seeds(apply))(variables, x))
    assert lifted.shape == (NUM_SEEDS, x.shape[0], 10)
    np.testing.assert_array_equal(np.asarray(jax.jit(over_seeds(apply))(run.state, x)),
                                  lifted)
    # The training curve's last evaluation saw the same outputs.
    np.testing.assert_allclose((lifted.argmax(-1) == y).mean(axis=1),
                               run.final("eval_accuracy"), rtol=0, atol=1e-6)

    # Each seed through flax's own API: a fresh module, updated with the seed's arrays.
    @jax.jit
    def one_seed(params, statistics, x):
        model = MLP(nnx.Rngs(0))
        weights, batch_stats = nnx.state(model, nnx.Param, nnx.BatchStat)
        nnx.replace_by_pure_dict(weights, params)
        nnx.replace_by_pure_dict(batch_stats, statistics)
        nnx.update(model, weights, batch_stats)
        model.eval()
        return model(x)

    for s in range(NUM_SEEDS):
        seed_state = take_seed(run.model_state, s)
        expected = one_seed(take_seed(run.params, s), {"norm": seed_state["norm"]}, x)
        np.testing.assert_allclose(lifted[s], np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_nnx_apply_takes_params_alone_only_without_other_state(digits):
    _, (x, _) = digits

    class Plain(nnx.Module):  # random streams, but nothing else besides params
        def __init__(self, rngs: nnx.Rngs):
            self.linear = nnx.Linear(64, 10, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.dropout(self.linear(x))

    @jax.jit
    def reference(x):
        model = Plain(nnx.Rngs(params=1, dropout=2))
        model.eval()
        return nnx.to_pure_dict(nnx.state(model, nnx.Param)), model(x)

    params, expected = reference(x)
    np.testing.assert_allclose(np.asarray(jax.jit(nnx_apply(Plain))(params, x)),
                               np.asarray(expected), rtol=1e-6, atol=1e-6)

    abstract = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: MLP(nnx.Rngs(0))), nnx.Param))
    with pytest.raises(ValueError, match="model_state"):
        nnx_apply(MLP)(abstract, x)


def test_the_example_trains_its_seeds_and_reports_them(capsys):
    spec = importlib.util.spec_from_file_location("nnx_model_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main(["--seeds", "2", "--steps", "20"])
    printed = capsys.readouterr().out
    assert "2 seeds x 20 steps" in printed
    assert "seed 0: test accuracy" in printed and "seed 1: test accuracy" in printed
    assert "mean test accuracy" in printed and "over 2 seeds" in printed
    accuracy = out["accuracy"]
    assert accuracy.shape == (2,) and np.all(accuracy > 0.3)  # chance is 0.1
    assert out["summary"]["mean"] == pytest.approx(accuracy.mean())
    assert np.all(out["result"].diverged_at == -1)
    # nnx_apply's predictions are the ones the last evaluation scored.
    _, (_, y_test) = example.digits()
    assert out["predictions"].shape == (2, y_test.size)
    np.testing.assert_allclose((out["predictions"] == y_test).mean(axis=1), accuracy,
                               rtol=0, atol=1e-6)


def test_arguments_that_are_not_allowed_are_named():
    from negres.errors import ArgumentError

    with pytest.raises(ArgumentError, match="make_model"):
        nnx_program(lambda rngs: "not a module", cross_entropy, optax.sgd(0.1))
    with pytest.raises(ArgumentError, match="streams"):
        nnx_program(MLP, cross_entropy, optax.sgd(0.1), streams="dropout")
    with pytest.raises(ArgumentError, match=r"streams.*No RngStream named 'dropout'"):
        nnx_program(MLP, cross_entropy, optax.sgd(0.1), streams=())  # its Dropout needs one
