"""A run's fingerprint must change with what determines its numbers, and only with that: the
same run gives the same fingerprint in any process, another optimizer, program, data or
setting another one, named in the refusal."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import negres
from negres.training.contract import SeedProgram
from negres.training.fingerprint import (
    _JaxprHasher,
    data_digest,
    describe_differences,
    fingerprint_differences,
    run_fingerprint,
)

ROOT = Path(__file__).resolve().parents[1]


class MLP(nn.Module):
    hidden: int = 8

    @nn.compact
    def __call__(self, x):
        # relu is a custom_jvp: its equation carries Python functions among its params.
        return nn.Dense(3)(nn.relu(nn.Dense(self.hidden)(x)))


def cross_entropy(logits, batch):
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()


def toy_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 5), dtype=np.float32),
            rng.integers(0, 3, n).astype(np.int32))


def fingerprint(program, data=None, *, eval_data=None, hyper=None, settings=None,
                init_state=None):
    data = toy_data() if data is None else data
    example = jax.tree_util.tree_map(lambda a: a[:8], data)
    return run_fingerprint(program, example=example, eval_example=eval_data,
                           hyper=hyper or {}, data=data, eval_data=eval_data,
                           init_state=init_state,
                           settings={"batch_size": 8} if settings is None else settings)


def toy_fingerprint():
    """The fingerprint of one fixed run; the subprocesses of the determinism test print it."""
    data = toy_data()
    program = negres.linen_program(MLP(), cross_entropy, optax.adamw(1e-3, weight_decay=1e-2))
    return fingerprint(program, data, eval_data=data, settings={"batch_size": 8, "seed": 0})


def test_same_run_same_fingerprint_in_separate_processes():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    code = "import json, test_fingerprint as t; print(json.dumps(t.toy_fingerprint()))"
    # Different string-hash seeds too: a set printed in hash order would show here.
    runs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**env, "PYTHONHASHSEED": str(hash_seed)})
            for hash_seed in (1, 2)]
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    # Here, after other programs were traced: JAX's caches hold their jaxprs.
    fingerprint(negres.linen_program(MLP(hidden=4), cross_entropy, optax.sgd(0.1)))
    assert toy_fingerprint() == outputs[0]
    assert outputs[0]["program.evaluate"] != "none"


def test_addresses_in_params_are_stripped():
    def make_callback():
        def double(v):
            return np.asarray(v) * 2
        return double

    first, second = make_callback(), make_callback()

    def traced(callback):
        def fn(x):
            return jax.pure_callback(callback, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        return jax.make_jaxpr(fn)(jax.ShapeDtypeStruct((3,), jnp.float32))

    a, b = traced(first), traced(second)
    raw = [str(e.params["callback"]) for e in (a.jaxpr.eqns[0], b.jaxpr.eqns[0])]
    assert raw[0] != raw[1] and " at 0x" in raw[0]  # two functions, two addresses
    assert _JaxprHasher().closed(a) == _JaxprHasher().closed(b)


def test_same_program_built_twice_same_fingerprint():
    def build():
        return negres.linen_program(MLP(), cross_entropy, optax.adamw(1e-3, weight_decay=1e-2))

    first, second = fingerprint(build()), fingerprint(build())
    assert first == second
    assert set(first) == {"program.init", "program.step", "program.evaluate", "data",
                          "eval_data", "init_state", "settings.batch_size"}
    assert first["program.evaluate"] == first["eval_data"] == first["init_state"] == "none"


def test_optimizer_hyperparameters_change_the_program():
    def with_optimizer(optimizer):
        return fingerprint(negres.linen_program(MLP(), cross_entropy, optimizer))

    instance = [with_optimizer(optax.adamw(1e-3, weight_decay=wd)) for wd in (1e-2, 1e-4)]
    assert fingerprint_differences(*instance) == ["program.step"]
    # Injected hyperparameters live in the optimizer state: init sets them.
    factory = [with_optimizer(optax.inject_hyperparams(optax.adamw)(
        learning_rate=1e-3, weight_decay=wd)) for wd in (1e-2, 1e-4)]
    assert fingerprint_differences(*factory) == ["program.init"]
    schedule = [with_optimizer(optax.adam(optax.cosine_decay_schedule(1e-3, decay_steps)))
                for decay_steps in (100, 200)]
    assert fingerprint_differences(*schedule) == ["program.step"]
    # So do the module's and program's own code: another hidden width.
    wider = fingerprint(negres.linen_program(MLP(hidden=9), cross_entropy,
                                             optax.adamw(1e-3, weight_decay=1e-2)))
    assert {"program.init", "program.step"} <= set(fingerprint_differences(instance[0], wider))


def test_shuffled_labels_change_only_the_data():
    program = negres.linen_program(MLP(), cross_entropy, optax.adam(1e-3))
    x, y = toy_data()
    shuffled = np.random.default_rng(1).permutation(y)
    assert not np.array_equal(shuffled, y)
    before, after = fingerprint(program, (x, y)), fingerprint(program, (x, shuffled))
    assert fingerprint_differences(before, after) == ["data"]
    assert describe_differences(["data"], before, after) == (
        "the training data (its shapes or contents)")
    # A transposed view hashes as its copy: the bytes are read in C order.
    assert data_digest(x.T) == data_digest(np.ascontiguousarray(x.T))
    assert data_digest(x.T) != data_digest(x.T.reshape(x.shape))


def closed_over_program(teacher: np.ndarray) -> SeedProgram:
    """A program distilling a fixed linear teacher: ``teacher`` is closed over."""
    def init(key, batch, hyper):
        return {"w": jax.random.normal(key, teacher.shape) * 0.1}

    def step(state, batch, rngs, hyper):
        x = batch[0]
        loss, grad = jax.value_and_grad(
            lambda w: jnp.mean((x @ w - x @ teacher) ** 2))(state["w"])
        return {"w": state["w"] - 0.1 * grad}, {"loss": loss}

    return SeedProgram(init=init, step=step)


@pytest.mark.parametrize("simplified_constants", [False, True])
@pytest.mark.parametrize("shape", [(5, 2), (5, 40)])
def test_a_closed_over_array_changes_the_step(simplified_constants, shape):
    flag = "jax_use_simplified_jaxpr_constants"
    if simplified_constants and flag not in jax.config.values:
        pytest.skip(f"this JAX has no {flag}")
    teacher = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    changed = teacher.copy()
    changed[3, 1] += 1.0
    saved = jax.config.values.get(flag)
    try:
        if simplified_constants:
            # Newer JAX inlines closed-over arrays as literals instead of constants.
            jax.config.update(flag, True)
        before = fingerprint(closed_over_program(teacher))
        again = fingerprint(closed_over_program(teacher.copy()))
        after = fingerprint(closed_over_program(changed))
    finally:
        if saved is not None:
            jax.config.update(flag, saved)
    assert before == again
    assert fingerprint_differences(before, after) == ["program.step"]


def test_hyperparameter_dtypes_matter_not_their_values():
    def scaled(logits, batch, hyper):
        return cross_entropy(logits, batch) * hyper["scale"]

    program = negres.linen_program(MLP(), scaled, optax.sgd(0.1), hyper=True)
    small, large, other_dtype = (fingerprint(program, hyper={"scale": value})
                                 for value in (np.float32(0.5), np.float32(2.0),
                                               np.asarray(1, jnp.bfloat16)))
    assert small == large
    assert "program.step" in fingerprint_differences(small, other_dtype)


def test_settings_are_named_with_both_values():
    program = negres.linen_program(MLP(), cross_entropy, optax.adam(1e-3))
    saved = fingerprint(program, settings={"batch_size": 32, "fingerprint": "a",
                                           "sampling": "replacement"})
    now = fingerprint(program, settings={"batch_size": 64, "fingerprint": "b",
                                         "eval_every": 5, "sampling": "replacement"})
    names = fingerprint_differences(saved, now)
    assert names == ["settings.batch_size", "settings.eval_every", "settings.fingerprint"]
    message = describe_differences(names, saved, now)
    assert message == ('batch_size (saved 32, now 64), eval_every (saved not given, now 5), '
                       'fingerprint (saved "a", now "b")')
    # Several kinds at once, still one line; a long value is cut.
    now = {**now, "program.step": "other", "settings.fingerprint": json.dumps("x" * 500)}
    message = describe_differences(fingerprint_differences(saved, now), saved, now)
    assert message.startswith("the program's step (its code or the constants it closes over")
    assert "\n" not in message and len(message) < 400


def test_present_on_one_side_only():
    program = negres.linen_program(MLP(), cross_entropy, optax.adam(1e-3))
    data = toy_data()
    without, with_eval = fingerprint(program, data), fingerprint(program, data, eval_data=data)
    names = fingerprint_differences(without, with_eval)
    assert names == ["eval_data", "program.evaluate"]
    assert describe_differences(names, without, with_eval) == (
        "the evaluation data (saved without, now with), "
        "the program's evaluate (saved without, now with)")


def test_init_state_with_typed_keys():
    state = {"w": np.ones((3,), np.float32), "key": jax.random.key(0)}
    program = negres.linen_program(MLP(), cross_entropy, optax.adam(1e-3))
    first = fingerprint(program, init_state=state)
    same = fingerprint(program, init_state={**state, "key": jax.random.key(0)})
    other = fingerprint(program, init_state={**state, "key": jax.random.key(1)})
    assert first == same
    assert fingerprint_differences(first, other) == ["init_state"]


class Source:
    """A random-access source as grain and TFDS give them: records by index."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"x": self.x[index], "y": self.y[index]}


def test_random_access_source_is_sampled():
    x, y = toy_data(n=1000)
    digest = data_digest(Source(x, y))
    assert digest == data_digest(Source(x.copy(), y.copy()))
    assert digest != data_digest((x, y))  # not hashed as the arrays it holds
    sampled, unsampled = y.copy(), y.copy()
    sampled[0] += 1  # the first and last records are always among the 16
    unsampled[1] += 1
    assert data_digest(Source(x, sampled)) != digest
    # A sample: a change between the sampled records goes unnoticed.
    assert data_digest(Source(x, unsampled)) == digest
    assert data_digest(Source(x[:999], y[:999])) != digest
    program = negres.linen_program(MLP(), cross_entropy, optax.adam(1e-3))
    example = (x[:8], y[:8])
    fp = run_fingerprint(program, example=example, eval_example=None, hyper={},
                         data=Source(x, y), eval_data=None, settings={})
    assert fp["data"] == digest


def test_time_of_a_fingerprint():
    """Prints (does not assert) what a fingerprint costs: run with -s to see it."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((100_000, 64), dtype=np.float32),
            rng.integers(0, 10, 100_000).astype(np.int32))
    program = negres.linen_program(MLP(hidden=128), cross_entropy, optax.adam(1e-3))
    start = time.perf_counter()
    fingerprint(program, data)
    first = time.perf_counter() - start
    start = time.perf_counter()
    digest = data_digest(data)
    hashing = time.perf_counter() - start
    print(f"\nrun_fingerprint, MLP 64-128-3 and 1e5 x 64 float32 data: {first:.3f} s "
          f"(hashing the data alone: {hashing:.3f} s)")
    assert len(digest) == 32
