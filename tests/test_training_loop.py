"""The researcher's training loop on the library path: epochs, early stopping per seed,
continuing and stopping runs, warm starts, resume refused for another run, the seed's
index inside the step, live progress, checkpoints read back, and the traps of argument
checking (lists of batches, traced indices, optimizer instances with a grid)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import negres
from negres.errors import ArgumentError, ResumeError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(120, 5)).astype(np.float32)
Y = ((X[:, 0] > 0).astype(np.int32) + (X[:, 1] > 0.5)).astype(np.int32)
STEPS, BATCH, EVERY = 40, 16, 10


def _init(key, batch):
    x, _ = batch
    return {"w": jax.random.normal(key, (x.shape[1], 3)) * 0.1, "b": jnp.zeros(3)}, {}


def _logits(params, x):
    return x @ params["w"] + params["b"]


def _loss(params, model_state, batch, rngs):
    x, y = batch
    logits = _logits(params, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (model_state, {"accuracy": (logits.argmax(-1) == y).mean()})


def _evaluate(params, model_state, batch):
    x, y = batch
    return {"accuracy": (_logits(params, x).argmax(-1) == y).mean(),
            "loss": optax.softmax_cross_entropy_with_integer_labels(_logits(params, x),
                                                                    y).mean()}


def _program(optimizer=None, **kwargs):
    return negres.loss_program(_init, _loss, optimizer or optax.sgd(0.1), evaluate=_evaluate,
                               streams=(), name="loop-test", **kwargs)


PROGRAM = _program()
KW = {"steps": STEPS, "batch_size": BATCH, "eval_data": (X, Y), "eval_every": EVERY}


def _same(a, b):
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


# ----- epochs

def _index_program():
    """A program whose step reports the sum and the first of its batch's example ids."""
    def init(key, batch):
        return {"w": jnp.zeros(())}, {}

    def loss(params, model_state, batch, rngs):
        (ids,) = batch
        return params["w"] * 0.0, (model_state, {
            "id_sum": ids.sum().astype(jnp.float32),
            "id_square_sum": (ids.astype(jnp.float32) ** 2).sum()})

    return negres.loss_program(init, loss, optax.sgd(0.1), streams=())


def test_epochs_visit_every_example_once_per_epoch_in_a_seeds_own_order():
    ids = np.arange(50, dtype=np.int32)
    # 5 steps of 10 examples: one epoch. Per epoch the sums are those of 0..49 exactly.
    result = negres.train(_index_program(), (ids,), num_seeds=3, steps=20, batch_size=10,
                          eval_every=1, sampling="epochs")
    per_epoch = result.curves["train_id_sum"].reshape(3, 4, 5).sum(-1)
    np.testing.assert_array_equal(per_epoch, ids.sum())
    squares = result.curves["train_id_square_sum"].reshape(3, 4, 5).sum(-1)
    np.testing.assert_array_equal(squares, (ids.astype(np.float64) ** 2).sum())
    # Each seed and epoch has an order of its own.
    orders = result.curves["train_id_sum"].reshape(3, 4, 5)
    assert len({tuple(o) for seed in orders for o in seed}) == 12
    # With replacement, an epoch's worth of draws misses some examples: the sums differ.
    drawn = negres.train(_index_program(), (ids,), num_seeds=3, steps=20, batch_size=10,
                         eval_every=1)
    assert not np.all(drawn.curves["train_id_sum"].reshape(3, 4, 5).sum(-1) == ids.sum())


def test_epochs_drop_the_remainder_of_each_order():
    ids = np.arange(23, dtype=np.int32)
    # 23 // 10 = 2 steps an epoch: each epoch visits 20 distinct examples.
    result = negres.train(_index_program(), (ids,), num_seeds=2, steps=8, batch_size=10,
                          eval_every=1, sampling="epochs")
    sums = result.curves["train_id_sum"].reshape(2, 4, 2).sum(-1)
    assert np.all(sums >= np.arange(20).sum()) and np.all(sums <= np.arange(3, 23).sum())


def test_epochs_keep_seed_alone_equal_to_batched_and_resume_equal_to_uninterrupted(tmp_path):
    batched = negres.train(PROGRAM, (X, Y), num_seeds=3, sampling="epochs", **KW)
    alone = negres.train(PROGRAM, (X, Y), seed_indices=[2], sampling="epochs", **KW)
    np.testing.assert_allclose(np.asarray(batched.params["w"][2]),
                               np.asarray(alone.params["w"][0]), rtol=1e-6, atol=1e-7)
    checkpoints = negres.TrainingCheckpoints(tmp_path)
    saving = negres.Checkpointing(checkpoints)
    negres.train(PROGRAM, (X, Y), num_seeds=3, sampling="epochs", stop_at=20,
                 checkpointing=saving, **KW)
    resumed = negres.train(PROGRAM, (X, Y), num_seeds=3, sampling="epochs",
                           checkpointing=saving, **KW)
    assert resumed.plan["resumed_from_step"] == 20
    _same(resumed.state, batched.state)
    np.testing.assert_array_equal(resumed.curves["eval_loss"], batched.curves["eval_loss"])


# ----- early stopping

def test_early_stopping_freezes_each_seed_at_its_best_state():
    stopping = negres.EarlyStopping("eval_loss", patience=2, mode="min", min_delta=0.0)
    # A learning rate this large oscillates: the eval loss stops improving early.
    program = _program(optax.sgd(3.0))
    kw = KW | {"steps": 80, "eval_every": 5}
    stopped = negres.train(program, (X, Y), num_seeds=4, early_stopping=stopping, **kw)
    free = negres.train(program, (X, Y), num_seeds=4, **kw)
    assert stopped.stopped_at.shape == (4,) and np.any(stopped.stopped_at > 0)
    for s in range(4):
        losses = free.curves["eval_loss"][s]
        best_point = int(np.argmin(losses[:stopped.stopped_at[s] // 5]
                                   if stopped.stopped_at[s] > 0 else losses))
        assert stopped.best_step[s] == 5 * (best_point + 1)
        if stopped.stopped_at[s] > 0:
            # Stopped after `patience` points without a better loss.
            assert stopped.stopped_at[s] - stopped.best_step[s] == 2 * 5
            later = stopped.stopped_at[s] // 5
            assert np.all(np.isnan(stopped.curves["train_loss"][s, later:]))
            frozen = stopped.curves["eval_loss"][s, later - 1]
            np.testing.assert_array_equal(stopped.curves["eval_loss"][s, later:], frozen)
        # Until it stopped, the seed trained as without early stopping.
        until = (stopped.stopped_at[s] if stopped.stopped_at[s] > 0 else 80) // 5
        np.testing.assert_array_equal(stopped.curves["eval_loss"][s, :until], losses[:until])
    # The returned state is the best point's: retrained to that step, each seed matches.
    for s in np.flatnonzero(stopped.stopped_at > 0)[:2]:
        best = int(stopped.best_step[s])
        again = negres.train(program, (X, Y), seed_indices=[s], **(kw | {"steps": best}))
        np.testing.assert_allclose(np.asarray(stopped.params["w"][s]),
                                   np.asarray(again.params["w"][0]), rtol=1e-5, atol=1e-6)


def test_once_every_seed_stopped_the_call_ends_with_the_curves_training_on_would_give(
        tmp_path):
    stopping = negres.EarlyStopping("eval_loss", patience=1, mode="min")
    program = _program(optax.sgd(3.0))
    kw = KW | {"steps": 200, "eval_every": 5}
    updates = []
    checkpoints = negres.TrainingCheckpoints(tmp_path)
    saving = negres.Checkpointing(checkpoints)
    result = negres.train(program, (X, Y), num_seeds=3, early_stopping=stopping,
                          progress=updates.append, checkpointing=saving, **kw)
    assert np.all(result.stopped_at > 0) and result.stopped_at.max() < 200
    # The last update jumps to the end, carrying every point the call skipped.
    assert updates[-1].step == 200 and updates[-2].step <= result.stopped_at.max()
    for name, values in result.curves.items():
        np.testing.assert_array_equal(
            np.concatenate([u.curves[name] for u in updates], axis=-1), values)
    for s in range(3):
        later = result.stopped_at[s] // 5
        np.testing.assert_array_equal(result.curves["eval_loss"][s, later:],
                                      result.curves["eval_loss"][s, later - 1])
        assert np.all(np.isnan(result.curves["train_loss"][s, later:]))
    # final() reads each curve at the best step: the value of the state returned.
    best = result.best_step // 5 - 1
    np.testing.assert_array_equal(result.final("eval_loss"),
                                  result.curves["eval_loss"][np.arange(3), best])
    np.testing.assert_array_equal(result.final("eval_loss"),
                                  np.nanmin(result.curves["eval_loss"], axis=1))
    # The checkpoint is the finished run's: read back, and resumed without training.
    saved = checkpoints.read(like=result.state)
    assert saved.step == 200
    np.testing.assert_array_equal(saved.stopped_at, result.stopped_at)
    _same(saved.state, result.state)
    again = negres.train(program, (X, Y), num_seeds=3, early_stopping=stopping,
                         checkpointing=saving, **kw)
    assert again.plan["resumed_from_step"] == 200
    _same(again.state, result.state)


def test_early_stopping_checks_its_fields_before_compiling():
    with pytest.raises(ArgumentError, match=r"early_stopping.metric='eval_acc'.*eval_accuracy"):
        negres.train(PROGRAM, (X, Y), num_seeds=2,
                     early_stopping=negres.EarlyStopping("eval_acc", 2), **KW)
    with pytest.raises(ArgumentError, match=r"early_stopping.patience=0"):
        negres.train(PROGRAM, (X, Y), num_seeds=2,
                     early_stopping=negres.EarlyStopping("eval_loss", 0), **KW)
    with pytest.raises(ArgumentError, match=r"early_stopping.metric='eval_loss'.*eval_data"):
        negres.train(PROGRAM, (X, Y), num_seeds=2, steps=STEPS, batch_size=BATCH,
                     early_stopping=negres.EarlyStopping("eval_loss", 2))
    with pytest.raises(ArgumentError, match="sampling='epoch'"):
        negres.train(PROGRAM, (X, Y), num_seeds=2, sampling="epoch", **KW)
    with pytest.raises(ArgumentError, match="stop_at=15"):
        negres.train(PROGRAM, (X, Y), num_seeds=2, stop_at=15, **KW)


# ----- continuing, stopping, warm starts, refusing another run's checkpoints

def test_continuing_a_finished_run_equals_the_longer_run_bit_for_bit(tmp_path):
    longer = negres.train(PROGRAM, (X, Y), num_seeds=3, **KW)
    checkpoints = negres.TrainingCheckpoints(tmp_path)
    saving = negres.Checkpointing(checkpoints)
    short = negres.train(PROGRAM, (X, Y), num_seeds=3, checkpointing=saving,
                         **(KW | {"steps": 20}))
    assert short.curves["eval_loss"].shape == (3, 2)
    more = negres.train(PROGRAM, (X, Y), num_seeds=3, checkpointing=saving, **KW)
    assert more.plan["resumed_from_step"] == 20
    _same(more.state, longer.state)
    np.testing.assert_array_equal(more.curves["eval_loss"], longer.curves["eval_loss"])
    # The finished run read back through the public API, in the run's own structure.
    saved = checkpoints.read(like=longer.state)
    _same(saved.state, longer.state)
    assert type(saved.state) is type(longer.state)
    np.testing.assert_array_equal(saved.curves["eval_loss"], longer.curves["eval_loss"])
    np.testing.assert_array_equal(saved.curve_steps, longer.curve_steps)
    assert saved.step == STEPS and list(saved.seed_indices) == [0, 1, 2]
    # Asking for fewer steps than a checkpoint holds is refused, not silently cut.
    with pytest.raises(ResumeError, match="at step 40, past the 20"):
        negres.train(PROGRAM, (X, Y), num_seeds=3, checkpointing=saving,
                     **(KW | {"steps": 20}))


def test_stop_at_returns_the_run_so_far_and_a_later_call_continues(tmp_path):
    checkpoints = negres.TrainingCheckpoints(tmp_path)
    saving = negres.Checkpointing(checkpoints)
    part = negres.train(PROGRAM, (X, Y), num_seeds=2, stop_at=20, checkpointing=saving,
                        **KW)
    np.testing.assert_array_equal(part.curve_steps, [10, 20])
    whole = negres.train(PROGRAM, (X, Y), num_seeds=2, checkpointing=saving, **KW)
    fresh = negres.train(PROGRAM, (X, Y), num_seeds=2, **KW)
    _same(whole.state, fresh.state)


@pytest.mark.parametrize("change", ["optimizer", "program", "data"])
def test_resuming_another_runs_checkpoints_is_refused_naming_what_differs(tmp_path, change):
    adamw = _program(optax.adamw(1e-2, weight_decay=1e-4))
    checkpoints = negres.TrainingCheckpoints(tmp_path)
    saving = negres.Checkpointing(checkpoints)
    negres.train(adamw, (X, Y), num_seeds=2, checkpointing=saving, **KW)
    program, data, named = adamw, (X, Y), "program's step"
    if change == "optimizer":
        program = _program(optax.adamw(1e-2, weight_decay=1e-2))
    elif change == "program":
        def loss(params, model_state, batch, rngs):
            value, aux = _loss(params, model_state, batch, rngs)
            return value + 1e-3 * jnp.sum(params["w"] ** 2), aux
        program = negres.loss_program(_init, loss, optax.adamw(1e-2, weight_decay=1e-4),
                                      evaluate=_evaluate, streams=())
    else:
        data, named = (X, np.random.default_rng(1).permutation(Y)), "training data"
    with pytest.raises(ResumeError, match=f"hold another run; what differs: the {named}"):
        negres.train(program, data, num_seeds=2, checkpointing=saving,
                     **(KW | {"steps": 80}))
    # The same run resumes (continues) in the same directory.
    again = negres.train(adamw, (X, Y), num_seeds=2, checkpointing=saving,
                         **(KW | {"steps": 50}))
    assert again.plan["resumed_from_step"] == STEPS


def test_init_state_starts_every_seed_from_given_parameters_with_a_fresh_optimizer():
    trained = negres.train(_program(optax.adam(1e-2)), (X, Y), num_seeds=2, **KW)
    # Learning rate 0: the parameters stay what was given, per seed.
    frozen = _program(optax.adam(0.0))
    start = negres.LossState(trained.params, trained.model_state, None)
    kept = negres.train(frozen, (X, Y), num_seeds=2, init_state=start, **KW)
    _same(kept.params, trained.params)
    assert int(np.asarray(kept.opt_state[0].count)[0]) == STEPS  # a fresh optimizer state
    # One state for every seed (no seed axis) broadcasts.
    one = jax.tree.map(lambda leaf: np.asarray(leaf)[0], trained.params)
    shared = negres.train(frozen, (X, Y), num_seeds=3,
                          init_state=negres.LossState(one, {}, None), **KW)
    for s in range(3):
        _same(jax.tree.map(lambda leaf, s=s: leaf[s], shared.params), one)
    with pytest.raises(ArgumentError, match="init_state"):
        negres.train(frozen, (X, Y), num_seeds=3, init_state=negres.LossState(
            {"w": np.zeros((2, 5, 3), np.float32), "b": np.zeros(3, np.float32)}, {}, None),
            **KW)


# ----- the seed's index, progress, argument traps

def test_a_step_sees_its_seed_index_and_grid_point():
    def loss(params, model_state, batch, rngs, hyper):
        value, (model_state, aux) = _loss(params, model_state, batch, rngs)
        return value, (model_state, aux | {
            "seed": hyper["seed_index"].astype(jnp.float32),
            "point": hyper["grid_point"].astype(jnp.float32)})

    # hyper=True: init, loss and evaluate take hyper last (init here ignores it).
    program = negres.loss_program(lambda key, batch, hyper: _init(key, batch), loss, optax.sgd,
                                  hyperparams={"learning_rate": 0.1}, streams=(), hyper=True)
    result = negres.train(program, (X, Y), seed_indices=[5, 9], steps=10, batch_size=8,
                          grid={"learning_rate": [0.1, 0.2, 0.3]})
    np.testing.assert_array_equal(result.final("train_seed"), [[5, 9]] * 3)
    np.testing.assert_array_equal(result.final("train_point"), [[0, 0], [1, 1], [2, 2]])
    assert set(result.hyperparams) == {"learning_rate"}
    with pytest.raises(ArgumentError, match=r"grid=\['seed_index'\]"):
        negres.train(program, (X, Y), num_seeds=2, steps=10, batch_size=8,
                     grid={"seed_index": [1.0]})


def test_progress_receives_every_curve_point_of_every_seed_as_it_is_computed():
    updates = []
    result = negres.train(PROGRAM, (X, Y), num_seeds=3, progress=updates.append, **KW)
    assert [u.step for u in updates] == sorted(u.step for u in updates)
    assert updates[-1].step == STEPS and updates[-1].num_seeds == 3
    for name, values in result.curves.items():
        joined = np.concatenate([u.curves[name] for u in updates], axis=-1)
        np.testing.assert_array_equal(joined, values)
    np.testing.assert_array_equal(np.concatenate([u.curve_steps for u in updates]),
                                  result.curve_steps)
    assert all(np.all(u.diverged_at == -1) and np.all(u.stopped_at == -1) for u in updates)


def test_lists_of_batches_iterators_and_generators_are_refused_saying_what_to_pass():
    batches = [(X[:16], Y[:16]), (X[16:32], Y[16:32])]
    with pytest.raises(ArgumentError, match=r"data='a list of 2 batches'.*np.concatenate"):
        negres.train(PROGRAM, batches, num_seeds=2, **KW)
    with pytest.raises(ArgumentError, match=r"data='generator'.*cannot be replayed"):
        negres.train(PROGRAM, ((x, y) for x, y in batches), num_seeds=2, **KW)
    # A list of arrays sharing their leading axis is one dataset, as before.
    result = negres.train(PROGRAM, [X, Y], num_seeds=1, steps=10, batch_size=8)
    assert result.final("train_loss").shape == (1,)


def test_the_pre_compile_check_traces_the_step_as_training_does():
    """A step indexing its batch with a traced permutation passes the check (it used to
    fail there with a TracerArrayConversionError)."""
    def loss(params, model_state, batch, rngs):
        x, y = batch
        order = jax.random.permutation(rngs["shuffle"], x.shape[0])
        return _loss(params, model_state, (x[order], y[order]), rngs)

    program = negres.loss_program(_init, loss, optax.sgd(0.1), streams=("shuffle",))
    result = negres.train(program, (X, Y), num_seeds=2, steps=10, batch_size=8)
    assert np.all(np.isfinite(result.final("train_loss")))


def test_an_optimizer_instance_with_a_grid_is_told_to_pass_a_factory():
    with pytest.raises(ArgumentError, match=r"read by neither.*factory.*optax.adamw"):
        negres.train(_program(optax.adamw(1e-3)), (X, Y), num_seeds=2, steps=10,
                     batch_size=8, grid={"weight_decay": [1e-4, 1e-2]})


# ----- data fed through Grain

@pytest.mark.parametrize("sampling", ["replacement", "epochs"])
def test_grain_fed_memmap_data_trains_exactly_as_in_memory_data(tmp_path, sampling):
    from negres.training.pipeline import ArraySource

    np.save(tmp_path / "x.npy", X)
    source = ArraySource((np.load(tmp_path / "x.npy", mmap_mode="r"), Y))
    in_memory = negres.train(PROGRAM, (X, Y), num_seeds=3, sampling=sampling, **KW)
    fed = negres.train(PROGRAM, source, num_seeds=3, sampling=sampling, **KW)
    _same(fed.state, in_memory.state)
    for name, values in in_memory.curves.items():
        np.testing.assert_array_equal(fed.curves[name], values)


def test_an_epochs_order_is_a_uniform_permutation():
    """Every order is a permutation, and over many seeds each position takes each example
    (and each pair of positions each pair of examples) about equally often."""
    import scipy.stats

    from negres.training.step import epoch_order

    for size in (1, 2, 7, 1000, 65537):
        order = np.asarray(epoch_order(jax.random.PRNGKey(size), 3, jnp.arange(size), size))
        np.testing.assert_array_equal(np.sort(order), np.arange(size))
    size, orders_drawn = 10, 20_000
    orders = np.asarray(jax.jit(jax.vmap(
        lambda key: epoch_order(key, 0, jnp.arange(size), size)))(
            jax.random.split(jax.random.PRNGKey(0), orders_drawn)))
    counts = np.stack([np.bincount(orders[:, p], minlength=size) for p in range(size)])
    expected = orders_drawn / size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert scipy.stats.chi2.sf(chi2, (size - 1) ** 2) > 1e-3
    pairs = np.bincount(orders[:, 0] * size + orders[:, 1], minlength=size * size)
    pairs = pairs.reshape(size, size)[~np.eye(size, dtype=bool)]
    expected = orders_drawn / (size * (size - 1))
    chi2 = ((pairs - expected) ** 2 / expected).sum()
    assert scipy.stats.chi2.sf(chi2, size * (size - 1) - 1) > 1e-3


def test_review_traps_of_the_loop(tmp_path):
    """Data fed through Grain enters the fingerprint by its records; nested datasets are
    not taken for lists of batches; eval_data must be in memory; continuing with the
    default eval_every reads it from the checkpoints; init_state errors name the leaf; a
    per-seed state warm-starts every grid point."""
    from negres.training.pipeline import ArraySource

    checkpoints = negres.TrainingCheckpoints(tmp_path / "fed")

    saving = negres.Checkpointing(checkpoints)
    negres.train(PROGRAM, ArraySource((X, Y)), num_seeds=2, checkpointing=saving, **KW)
    with pytest.raises(ResumeError, match="what differs: the training data"):
        negres.train(PROGRAM, ArraySource((X, (Y + 1) % 3)), num_seeds=2,
                     checkpointing=saving, **(KW | {"steps": 80}))
    with pytest.raises(ArgumentError, match=r"eval_data='ArraySource'.*in memory"):
        negres.train(PROGRAM, (X, Y), num_seeds=2, steps=10, batch_size=8,
                     eval_data=ArraySource((X, Y)))
    # ((x, mask), (y, weight)): one dataset whose halves share a structure.
    def loss(params, model_state, batch, rngs):
        (x, mask), (y, weight) = batch
        value, aux = _loss(params, model_state, (x * mask, y), rngs)
        return value * weight.mean(), aux

    nested = negres.loss_program(lambda key, batch: _init(key, batch[0]), loss,
                                 optax.sgd(0.1), streams=())
    data = ((X, np.ones_like(X)), (Y, np.ones(len(Y), np.float32)))
    assert negres.train(nested, data, num_seeds=1, steps=5, batch_size=8).final(
        "train_loss").shape == (1,)
    # Continuing a run whose curve spacing was left to its default (steps).
    checkpoints = negres.TrainingCheckpoints(tmp_path / "default")
    saving = negres.Checkpointing(checkpoints)
    negres.train(PROGRAM, (X, Y), num_seeds=2, steps=20, batch_size=BATCH,
                 checkpointing=saving)
    more = negres.train(PROGRAM, (X, Y), num_seeds=2, steps=40, batch_size=BATCH,
                        checkpointing=saving)
    np.testing.assert_array_equal(more.curve_steps, [20, 40])
    # init_state: a leaf of the wrong shape is named; per-seed states start every point.
    trained = negres.train(PROGRAM, (X, Y), num_seeds=2, **KW)
    with pytest.raises(ArgumentError, match=r"init_state\.params\['[bw]'\]='a leaf of shape"):
        negres.train(PROGRAM, (X, Y), num_seeds=3,
                     init_state=negres.LossState(trained.params, None, None), **KW)
    frozen = negres.loss_program(_init, _loss, optax.sgd, hyperparams={"learning_rate": 0.1},
                                 streams=())
    grid = negres.train(frozen, (X, Y), num_seeds=2, grid={"learning_rate": [1e-9, 2e-9]},
                        init_state=negres.LossState(trained.params, {}, None), steps=5,
                        batch_size=8)
    np.testing.assert_allclose(np.asarray(grid.params["w"][1]),
                               np.asarray(trained.params["w"]), atol=1e-6)


def test_array_likes_stay_in_memory_and_equal_early_stopping_settings_resume(tmp_path):
    from negres.training.pipeline import is_random_access

    class Frame:  # a DataFrame's protocol: an array-like with len and []
        def __array__(self, dtype=None, copy=None):
            return X

        def __len__(self):
            return len(X)

        def __getitem__(self, column):
            return X[:, column]

    assert not is_random_access(Frame())
    checkpoints = negres.TrainingCheckpoints(tmp_path)
    saving = negres.Checkpointing(checkpoints)
    kw = KW | {"num_seeds": 2, "checkpointing": saving}
    negres.train(PROGRAM, (X, Y), early_stopping=negres.EarlyStopping("eval_loss", 9, "min", 0),
                 **kw)
    # 0 and 0.0, restore_best or not: the same training, resumed (here: continued).
    again = negres.train(PROGRAM, (X, Y), early_stopping=negres.EarlyStopping(
        "eval_loss", 9, "min", 0.0, restore_best=False), **(kw | {"steps": 50}))
    assert again.plan["resumed_from_step"] == STEPS
