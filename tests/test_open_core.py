"""The open training core: a researcher's own model, loss, data, state and step across seeds.

Every guarantee the built-in path has, on programs negres did not build: seed ``i`` alone
equals seed ``i`` in the batch and at every grid point, chunks and resumes change nothing,
a diverging seed is frozen without touching the others, and float64 mode works.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tree_allclose

import negres
from negres.errors import ArgumentError
from negres.seeds import take_seed

REPO = Path(__file__).resolve().parents[1]
# A single seed and a row of many differ by float reassociation only.
ATOL = 2e-5
STEPS, EVAL_EVERY, BATCH = 20, 10, 32


class BatchNormNet(nn.Module):
    """A user's model: BatchNorm and dropout, told it trains through ``train``."""

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape(x.shape[0], -1)
        # No bias before BatchNorm: its true gradient is zero, and Adam would turn the
        # rounding noise of that zero into full-size steps that differ between layouts.
        x = nn.Dense(32, use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
        return nn.Dense(10)(x)


def smoothed_loss(logits, batch, hyper):
    """A user's loss whose label smoothing may ride a grid."""
    smoothing = hyper.get("label_smoothing", 0.0)
    targets = optax.smooth_labels(jax.nn.one_hot(batch["y"], 10), smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, {"accuracy": (logits.argmax(-1) == batch["y"]).mean()}


@pytest.fixture(scope="module")
def digits(small_digits):
    data = {"x": small_digits.x_train, "y": small_digits.y_train}
    eval_data = {"x": small_digits.x_test, "y": small_digits.y_test}
    return data, eval_data


@pytest.fixture(scope="module")
def batchnorm_program():
    return negres.linen_program(BatchNormNet(), smoothed_loss, optax.adam,
                                hyperparams={"learning_rate": 1e-2}, hyper=True)


@pytest.fixture(scope="module")
def batchnorm_run(batchnorm_program, digits):
    data, eval_data = digits

    def run(**kwargs):
        args = dict(steps=STEPS, batch_size=BATCH, eval_every=EVAL_EVERY, seed=3,
                    eval_data=eval_data) | kwargs
        return negres.train(batchnorm_program, data, **args)

    return run, run(num_seeds=5)


def test_model_state_is_carried_per_seed(batchnorm_run, batchnorm_program, digits):
    _, result = batchnorm_run
    stats = result.model_state["batch_stats"]
    mean = np.asarray(jax.tree_util.tree_leaves(stats)[0])
    assert mean.shape == (5, 32)
    assert np.all(np.abs(mean).sum(axis=1) > 0)  # moved from the zeros it starts at
    assert not np.allclose(mean[0], mean[1])  # each seed has its own statistics
    assert set(result.curves) == {"train_loss", "train_accuracy", "eval_loss", "eval_accuracy"}
    assert result.curves["eval_accuracy"].shape == (5, STEPS // EVAL_EVERY)
    assert np.all(result.final("eval_accuracy") > 0.5)  # 10 classes: chance is 0.1


def test_seed_alone_equals_its_row(batchnorm_run):
    run, result = batchnorm_run
    alone = run(seed_indices=[3])
    tree_allclose(take_seed(result.state, 3), take_seed(alone.state, 0), atol=ATOL, rtol=1e-4)
    for name, curve in result.curves.items():
        np.testing.assert_allclose(curve[3], alone.curves[name][0], atol=ATOL, rtol=1e-4)


def _at(tree, *index):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], tree)


def test_grid_of_an_optimizer_and_a_loss_hyperparameter(batchnorm_run):
    run, result = batchnorm_run
    grid = {"learning_rate": [1e-3, 1e-2], "label_smoothing": [0.0, 0.3]}
    swept = run(num_seeds=2, grid=grid)
    assert swept.curves["train_loss"].shape == (2, 2, 2, STEPS // EVAL_EVERY)
    assert swept.diverged_at.shape == (2, 2, 2)
    assert swept.grid == {name: tuple(values) for name, values in grid.items()}
    np.testing.assert_array_equal(swept.hyperparams["label_smoothing"][:, 1],
                                  np.full((2, 2), 0.3, np.float32))
    # learning rate 1e-2 without smoothing is the plain run's setting: equal per seed.
    tree_allclose(_at(swept.params, 1, 0, 1), take_seed(result.params, 1), atol=ATOL, rtol=1e-4)
    # Each point equals that point trained alone.
    alone = run(seed_indices=[1], grid={"learning_rate": [1e-3], "label_smoothing": [0.3]})
    tree_allclose(_at(swept.state, 0, 1, 1), _at(alone.state, 0, 0, 0), atol=ATOL, rtol=1e-4)
    # Smoothing changes the loss the seeds train on, not only the numbers reported.
    assert not np.allclose(swept.final("train_loss")[1, 0], swept.final("train_loss")[1, 1])
    # The ranking of seeds is comparable across grid points with negres.statistics.
    better = negres.statistics.compare(swept.final("eval_accuracy")[1, 0],
                                       swept.final("eval_accuracy")[0, 0], paired=True,
                                       num_resamples=200)
    assert better["verdict"] in {"improved", "worse", "inconclusive"}


def test_chunked_run_equals_the_plain_run(batchnorm_run):
    run, result = batchnorm_run
    chunked = run(num_seeds=5, scale=negres.Scale(seeds_per_chunk=2))
    assert (chunked.plan["num_chunks"], chunked.plan["padded_seeds"]) == (3, 1)
    tree_allclose(chunked.state, result.state, atol=ATOL)


def test_resumed_run_equals_the_uninterrupted_run(batchnorm_run, tmp_path):
    run, result = batchnorm_run
    with negres.TrainingCheckpoints(tmp_path) as full:
        complete = run(num_seeds=5, checkpointing=negres.Checkpointing(full, every=EVAL_EVERY))
    tree_allclose(complete.state, result.state, atol=0)
    shutil.rmtree(tmp_path / str(STEPS))  # what a run killed after step 10 leaves
    with negres.TrainingCheckpoints(tmp_path) as partial:
        resumed = run(num_seeds=5,
                      checkpointing=negres.Checkpointing(partial, every=EVAL_EVERY))
    assert resumed.plan["resumed_from_step"] == EVAL_EVERY
    tree_allclose(resumed.state, result.state, atol=0)  # model state and optimizer too
    for name, curve in result.curves.items():
        np.testing.assert_array_equal(resumed.curves[name], curve)
    # Checkpoints of another grid point are refused rather than silently continued.
    with (negres.TrainingCheckpoints(tmp_path) as other,
          pytest.raises(negres.ResumeError, match="learning_rate")):
        run(num_seeds=5, checkpointing=negres.Checkpointing(other),
            hyperparams={"learning_rate": [0.5] * 5})


class TokenClassifier(nn.Module):
    """A model with no train argument, on integer tokens."""

    @nn.compact
    def __call__(self, tokens):
        return nn.Dense(2)(nn.Embed(16, 8)(tokens).mean(axis=1))


def test_dict_batches_of_integer_tokens():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 16, size=(256, 6)).astype(np.int32)
    data = {"tokens": tokens, "label": (tokens == 3).any(axis=1).astype(np.int32)}

    def loss(logits, batch):
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    program = negres.linen_program(TokenClassifier(), loss, optax.adam(3e-2), inputs="tokens",
                                   streams=())
    result = negres.train(program, data, num_seeds=3, steps=60, batch_size=32, eval_every=30,
                          eval_data=data)
    assert result.params["Embed_0"]["embedding"].shape == (3, 16, 8)
    assert np.all(result.curves["eval_loss"][:, -1] < result.curves["eval_loss"][:, 0])


def _least_squares_program():
    """A user's whole step: plain gradient descent whose step size comes from the grid."""

    def init(key, batch, hyper):
        return {"w": 0.1 * jax.random.normal(negres.stream_key(key, "init"), (5,))}

    def step(state, batch, rngs, hyper):
        x, y = batch
        loss, grad = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state["w"])
        return {"w": state["w"] - hyper["step_size"] * grad}, {"loss": loss}

    return negres.SeedProgram(init=init, step=step)


def test_a_diverging_seed_of_a_custom_step_is_frozen(regression_task):
    task = regression_task
    data = (task.x_train, task.y_train)
    program = _least_squares_program()
    common = dict(batch_size=32, seed=1)
    mixed = negres.train(program, data, seed_indices=[0, 1, 2], steps=60, eval_every=5,
                         hyperparams={"step_size": [0.05, 3.0, 0.05]}, **common)
    assert mixed.diverged_at[0] == -1 and mixed.diverged_at[2] == -1
    step = int(mixed.diverged_at[1])
    assert 5 < step < 60
    losses = mixed.curves["train_loss"][1]
    assert np.all(np.isfinite(losses[: step // 5])) and np.all(np.isnan(losses[-(-step // 5):]))
    # Frozen at its last finite state: a run of exactly that many steps.
    until = negres.train(program, data, seed_indices=[1], steps=step, eval_every=step,
                         hyperparams={"step_size": [3.0]}, **common)
    np.testing.assert_allclose(mixed.state["w"][1], until.state["w"][0], rtol=1e-5)
    others = negres.train(program, data, seed_indices=[0, 2], steps=60, eval_every=5,
                          hyperparams={"step_size": [0.05, 0.05]}, **common)
    np.testing.assert_allclose(np.asarray(mixed.state["w"])[[0, 2]], others.state["w"], atol=1e-6)


@pytest.mark.parametrize(("arguments", "field"), [
    ({"grid": {"label_smothing": [0.1]}}, "grid"),  # a name nothing reads
    ({"grid": {"learning_rate": [1e-3, float("nan")]}}, "grid['learning_rate']"),
    ({"num_seeds": 0}, "num_seeds"),
    ({"batch_size": 10_000}, "batch_size"),
    ({"data": {"x": np.zeros((10, 3)), "y": np.zeros(9)}}, "data"),
    ({"seed_indices": [-1, 2]}, "seed_indices"),
])
def test_bad_arguments_are_refused_in_one_line(batchnorm_program, digits, arguments, field):
    data, _ = digits
    args = dict(data=data, steps=10, batch_size=8, num_seeds=2) | arguments
    with pytest.raises(ArgumentError) as err:
        negres.train(batchnorm_program, args.pop("data"), **args)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_a_transformation_with_factory_hyperparameters_is_refused():
    with pytest.raises(ArgumentError, match=r"hyperparams=.*the factory"):
        negres.linen_program(BatchNormNet(), smoothed_loss, optax.adam(1e-3),
                             hyperparams={"learning_rate": 1e-3}, hyper=True)


def test_a_hand_injected_optimizer_and_a_chain_with_a_schedule_both_train(digits):
    data, _ = digits
    schedule = optax.cosine_decay_schedule(1e-2, STEPS)
    for optimizer, grid in (
        (optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), {"learning_rate": [0.1, 0.2]}),
        (optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule)), None),
    ):
        program = negres.linen_program(BatchNormNet(), smoothed_loss, optimizer, hyper=True)
        result = negres.train(program, data, num_seeds=2, steps=STEPS, batch_size=BATCH,
                              grid=grid)
        assert np.all(np.isfinite(result.curves["train_loss"]))


FLOAT64_RUN = """
import jax
jax.config.update("jax_enable_x64", True)
import shutil, sys, tempfile
import numpy as np, optax
import negres
sys.path.insert(0, {tests!r})
from test_open_core import BatchNormNet, _least_squares_program, smoothed_loss
rng = np.random.default_rng(0)
data = {{"x": rng.normal(size=(64, 8, 8, 1)), "y": rng.integers(0, 10, 64)}}
program = negres.linen_program(BatchNormNet(), smoothed_loss, optax.adam,
                               hyperparams={{"learning_rate": 1e-2}}, hyper=True)
args = dict(num_seeds=2, steps=10, batch_size=16, eval_every=5,
            grid={{"label_smoothing": [0.0, 0.1]}})
plain = negres.train(program, data, **args)
directory = tempfile.mkdtemp()
with negres.TrainingCheckpoints(directory) as c:
    negres.train(program, data, checkpointing=negres.Checkpointing(c, every=5), **args)
shutil.rmtree(directory + "/10")
with negres.TrainingCheckpoints(directory) as c:
    resumed = negres.train(program, data, checkpointing=negres.Checkpointing(c, every=5),
                           **args)
dtypes = {{str(leaf.dtype) for leaf in jax.tree_util.tree_leaves(plain.params)}}
same = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(plain.state),
                                               jax.tree_util.tree_leaves(resumed.state)))
x = rng.normal(size=(64, 5))
own = negres.train(_least_squares_program(), (x, x @ np.arange(5.0)), num_seeds=2, steps=10,
                   batch_size=16, hyperparams={{"step_size": [0.1, 0.1]}})
print(sorted(dtypes), plain.curves["train_loss"].dtype, resumed.plan["resumed_from_step"], same,
      own.state["w"].dtype, own.hyperparams["step_size"].dtype)
"""


def test_float64_mode_trains_and_resumes():
    code = FLOAT64_RUN.format(tests=str(REPO / "tests"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # flax makes float32 parameters unless told otherwise, also under x64; float64 data
    # and a user's own float64 state train, checkpoint and resume.
    assert proc.stdout.split("\n")[-2] == "['float32'] float32 5 True float64 float64"
