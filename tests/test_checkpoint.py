"""Checkpoints must give back exactly the state that was saved, and only complete ones."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from negres.errors import ResumeError
from negres.models import MLP
from negres.seeds import seed_keys
from negres.training.checkpoint import CheckpointMismatchError, TrainingCheckpoints

NUM_SEEDS, NUM_POINTS = 3, 4


def _stacked_state(num_seeds: int) -> dict:
    """A training state as the engine holds it mid-run: seeds first, curves half NaN.

    Built from flax and optax directly, the way the engine's seed-lifted init does it,
    so this test does not hang on the engine's signatures.
    """
    model = MLP(num_outputs=3, hidden_sizes=(4,))
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
    keys = seed_keys(0, np.arange(num_seeds))

    def one(key):
        params = model.init(key, x[:1])["params"]
        opt_state = optimizer.init(params)
        # One Adam step with random gradients, so moments and counts are not zeros.
        grads = jax.tree.map(lambda p: jax.random.normal(key, p.shape), params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = jax.jit(jax.vmap(one))(keys)
    curve = jnp.full((num_seeds, NUM_POINTS), jnp.nan, jnp.float32)
    losses = jnp.linspace(0.5, 2.0, num_seeds, dtype=jnp.float32)
    return {
        "params": params,
        "opt_state": opt_state,
        "keys": keys,
        "curves": {
            "train_loss": curve.at[:, 0].set(losses),
            "train_accuracy": curve.at[:, 0].set(1.0 / losses),
        },
        "diverged_at": jnp.full((num_seeds,), -1, jnp.int32).at[1].set(2),
    }


def _template(state):
    """What the engine passes to restore: shapes, dtypes and shardings, no values."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state
    )


@pytest.fixture(scope="module")
def state():
    return _stacked_state(NUM_SEEDS)


def _meta(step):
    return {"step": step, "seed_indices": [0, 1, 2], "fingerprint": "abc123"}


def test_round_trip_is_bit_exact_and_keeps_the_template_structure(tmp_path, state):
    with TrainingCheckpoints(tmp_path / "ckpt") as ckpt:
        ckpt.save(2, state, _meta(2))
    # A fresh instance, as after a restart.
    with TrainingCheckpoints(tmp_path / "ckpt") as ckpt:
        restored, _ = ckpt.restore(None, _template(state))

    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    assert type(restored["opt_state"]) is type(state["opt_state"])
    assert np.isnan(np.asarray(restored["curves"]["train_loss"][:, 1:])).all()
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        assert isinstance(got, jax.Array)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.sharding == want.sharding
        # Bytes, not values: NaN curve points and uint32 keys must come back identical.
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def test_metadata_round_trips(tmp_path, state):
    metadata = {
        "step": 4,
        "seed_indices": np.arange(3),  # arrays are stored as lists
        "fingerprint": "f" * 64,
        "nested": {"lr": 0.5, "names": ["a", "b"]},
    }
    with TrainingCheckpoints(tmp_path) as ckpt:
        ckpt.save(4, state, metadata)
        _, got = ckpt.restore(4, _template(state))
    assert got == {
        "step": 4, "seed_indices": [0, 1, 2], "fingerprint": "f" * 64,
        "nested": {"lr": 0.5, "names": ["a", "b"]},
    }


def test_only_the_newest_max_to_keep_steps_remain(tmp_path, state):
    with TrainingCheckpoints(tmp_path, max_to_keep=2) as ckpt:
        for step in (2, 4, 6, 8):
            ckpt.save(step, state, _meta(step))
        assert ckpt.latest_step() == 8
        assert ckpt.all_steps() == [6, 8]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["6", "8"]
    with TrainingCheckpoints(tmp_path, max_to_keep=2) as ckpt:
        assert ckpt.latest_step() == 8
        _, metadata = ckpt.restore(None, _template(state))
    assert metadata["step"] == 8


def test_no_checkpoint_in_a_fresh_or_empty_directory(tmp_path, state):
    fresh = tmp_path / "not" / "there"
    with TrainingCheckpoints(fresh) as ckpt:
        assert fresh.is_dir()
        assert ckpt.latest_step() is None
        with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
            ckpt.restore(None, _template(state))
    with TrainingCheckpoints(fresh) as ckpt:
        assert ckpt.latest_step() is None


def test_a_half_written_checkpoint_is_ignored_and_can_be_written_again(tmp_path, state):
    with TrainingCheckpoints(tmp_path) as ckpt:
        ckpt.save(2, state, _meta(2))
        ckpt.save(4, state, _meta(4))
    # What a process killed while writing step 6 leaves: orbax writes into
    # "<step>.orbax-checkpoint-tmp" and renames it to "<step>" only when complete.
    partial = tmp_path / "6.orbax-checkpoint-tmp"
    shutil.copytree(tmp_path / "4", partial)
    (partial / "commit_success.txt").unlink()
    shutil.rmtree(partial / "metadata")

    with TrainingCheckpoints(tmp_path) as ckpt:
        assert ckpt.latest_step() == 4
        assert ckpt.all_steps() == [2, 4]
        _, metadata = ckpt.restore(None, _template(state))
        assert metadata["step"] == 4
        # The resumed run reaches step 6 again and must be able to save it.
        ckpt.save(6, state, _meta(6))
        assert ckpt.latest_step() == 6
    assert not partial.exists()


def test_restoring_another_seed_count_names_the_directory_and_the_way_out(tmp_path, state):
    with TrainingCheckpoints(tmp_path / "ckpt") as ckpt:
        ckpt.save(2, state, _meta(2))
        four_seeds = jax.eval_shape(lambda: _stacked_state(NUM_SEEDS + 1))
        with pytest.raises(CheckpointMismatchError) as info:
            ckpt.restore(2, four_seeds)
    message = str(info.value)
    assert isinstance(info.value, ResumeError) and isinstance(info.value, ValueError)
    assert repr(str(tmp_path / "ckpt")) in message
    assert "3 seeds stored, 4 expected" in message
    assert "curves.train_loss is stored as (3, 4) float32, expected (4, 4) float32" in message
    # A library error speaks of its arguments; the command line adds --overwrite.
    assert "give an empty directory to start over" in message


def test_restoring_another_state_layout_is_refused(tmp_path, state):
    other = dict(state, curves={"eval_loss": state["curves"]["train_loss"]})
    with TrainingCheckpoints(tmp_path) as ckpt:
        ckpt.save(2, state, _meta(2))
        with pytest.raises(CheckpointMismatchError, match=r"curves\.eval_loss is expected but not"):
            ckpt.restore(2, _template(other))
        with pytest.raises(CheckpointMismatchError, match=r"keys is stored as \(3, 2\) uint32"):
            ckpt.restore(2, _template(dict(state, keys=state["keys"].astype(jnp.int32))))


def test_saving_a_step_twice_is_refused(tmp_path, state):
    with TrainingCheckpoints(tmp_path) as ckpt:
        ckpt.save(2, state, _meta(2))
        with pytest.raises(ResumeError, match="already holds step 2"):
            ckpt.save(2, state, _meta(2))


def test_max_to_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep=0"):
        TrainingCheckpoints(tmp_path, max_to_keep=0)
