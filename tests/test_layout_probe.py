"""layout="auto": which layouts the probe times, what it keeps, and that a resumed run keeps
the layout it started with (the layouts round differently)."""

import re
import shutil

import flax.linen as nn
import numpy as np
import optax
import pytest
from conftest import tree_allclose

import negres
from negres.seeds import take_rows
from negres.training.plan import (
    _MAP_MARGIN,
    _PROBE_MIN_SEEDS_PER_DEVICE,
    _PROBE_WIDTHS,
    _candidates,
)

STEPS, EVAL_EVERY, BATCH = 20, 10, 32


class SmallMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        # Two hidden layers of 64: enough for map of 1 and vmap to round differently.
        x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(10)(x)


@pytest.fixture(scope="module")
def run(small_digits):
    model = SmallMLP()

    def loss(logits, batch):
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    program = negres.linen_program(model, loss, optax.adam(1e-2), streams=())
    data = {"x": small_digits.x_train, "y": small_digits.y_train}

    def train(**kwargs):
        return negres.train(program, data, steps=STEPS, batch_size=BATCH,
                            eval_every=EVAL_EVERY, **kwargs)

    return train


def test_candidates_follow_convolutions_and_seeds_per_device():
    small, large = _PROBE_WIDTHS
    enough = _PROBE_MIN_SEEDS_PER_DEVICE
    assert enough >= 2 * small
    assert _candidates(False, 1, enough - 1) == [("vmap", 1)]
    assert _candidates(False, 1, max(enough, 2 * large)) == [
        ("vmap", 1), ("map", small), ("map", large)]
    # The cache-sized groups are a CPU's: elsewhere vmap, or the native-convolution probe.
    assert _candidates(False, 1, 2 * large + enough, cpu=False) == [("vmap", 1)]
    assert _candidates(True, 1, 2 * large + enough, cpu=False) == [("vmap", 1), ("map", 1)]
    # Native convolutions: the asked width too, even for a handful of seeds.
    assert _candidates(True, 1, 2) == [("vmap", 1), ("map", 1)]
    assert _candidates(True, small, enough) == [("vmap", 1), ("map", small)] + (
        [("map", large)] if enough >= 2 * large else [])


def _timings(reason: str) -> dict[str, float]:
    return {name: float(ms) for name, ms in re.findall(
        r"(vmap|map of \d+) ([0-9.]+) ms/seed-step", reason)}


def test_a_dense_model_with_enough_seeds_is_timed_as_map_too(run):
    few = run(num_seeds=4)
    assert (few.plan["layout"], few.plan["seeds_per_map_step"]) == ("vmap", 1)
    assert "no convolution and 4 seed(s) per device" in few.plan["reason"]

    num_seeds = _PROBE_MIN_SEEDS_PER_DEVICE  # on this one device
    many = run(num_seeds=num_seeds)
    timings = _timings(many.plan["reason"])
    maps = {f"map of {w}": w for w in _PROBE_WIDTHS if num_seeds >= 2 * w}
    assert set(timings) == {"vmap", *maps}
    fastest = min(maps, key=timings.__getitem__)
    clearly_faster = timings[fastest] * _MAP_MARGIN < timings["vmap"]
    expected = ("map", maps[fastest]) if clearly_faster else ("vmap", 1)
    assert (many.plan["layout"], many.plan["seeds_per_map_step"]) == expected
    # Either way, the first seeds are the 4-seed run's, to float rounding.
    tree_allclose(take_rows(many.params, slice(0, 4)), few.params, atol=2e-5)
    # One probe per model, seed count and device in a process.
    again = run(num_seeds=num_seeds)
    assert "measured earlier in this process" in again.plan["reason"]
    assert again.plan["layout"] == many.plan["layout"]


def test_auto_resumes_in_the_layout_its_checkpoints_were_written_in(run, tmp_path):
    width = 1
    in_map = negres.Scale(layout="map", seeds_per_map_step=width)
    uninterrupted = run(num_seeds=4, scale=in_map)
    with negres.TrainingCheckpoints(tmp_path) as full:
        run(num_seeds=4, scale=in_map,
            checkpointing=negres.Checkpointing(full, every=EVAL_EVERY))
    shutil.rmtree(tmp_path / str(STEPS))  # what a run killed after step 10 leaves
    with negres.TrainingCheckpoints(tmp_path) as partial:
        resumed = run(num_seeds=4, checkpointing=negres.Checkpointing(partial, every=EVAL_EVERY))
    assert resumed.plan["resumed_from_step"] == EVAL_EVERY
    assert (resumed.plan["layout"], resumed.plan["seeds_per_map_step"]) == ("map", width)
    assert "being resumed" in resumed.plan["reason"]
    # Resumed as vmap, these seeds would differ from the uninterrupted run by about 1e-6.
    tree_allclose(resumed.state, uninterrupted.state, atol=0)
    for name, curve in uninterrupted.curves.items():
        np.testing.assert_array_equal(resumed.curves[name], curve)
