"""The memory check: refuses a study that cannot fit, with the number, before anything runs.

The per-seed state is compared with the bytes negres's training really returns, the
multiplicity hook with what the evaluator really allocates, and every shipped config must
fit on a machine of 8 GB.
"""

import dataclasses
import os
import re
import socket
import subprocess
import sys
import textwrap
import tracemalloc

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict
from tests_configs import REPO, load_config, tiny_config

from negres.errors import ConfigError
from negres.evaluators import multiplicity, robustness
from negres.evaluators.protocol import Evaluation, EvaluationContext
from negres.study import group_training, prepare
from negres.study.memory import (
    MEMORY_ENV,
    available_memory,
    check_memory,
    state_bytes_per_seed,
)
from negres.tasks import ShiftSet, Task

GB = 10**9
CONFIGS = sorted(p.stem for p in REPO.glob("configs/*.py") if p.stem != "__init__")


def _refusal(config: ConfigDict, available: float, monkeypatch) -> ConfigError:
    # Through the environment: the check may also run inside prepare_study.
    monkeypatch.setenv(MEMORY_ENV, str(int(available)))
    with pytest.raises(ConfigError) as err:
        conditions = prepare.prepare_study(config).conditions
        check_memory(conditions)
    return err.value


def _fits(config: ConfigDict, available: float, monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, str(int(available)))
    conditions = prepare.prepare_study(config).conditions
    check_memory(conditions)


def _most_that_fit(error: ConfigError) -> int:
    found = re.search(r"at most about ([\d,]+) seeds fit", error.allowed)
    assert found, error.allowed
    return int(found.group(1).replace(",", ""))


@pytest.mark.parametrize("variant", [
    {},
    # A model state (the label-noise key) and a chained optimizer with momentum.
    {"train.label_noise": 0.1, "optimizer.name": "sgd", "optimizer.momentum": 0.9,
     "optimizer.grad_clip_norm": 1.0, "model.hidden_sizes": (8, 8)},
], ids=["adam", "sgd_chain_label_noise"])
def test_state_per_seed_is_the_trained_states_bytes(variant):
    config = tiny_config()
    config.train.steps, config.train.eval_every = 2, 1
    for dotted, value in variant.items():
        section, key = dotted.split(".")
        config[section][key] = value
    conditions = prepare.prepare_study(config).conditions
    trained = group_training.train_group(conditions)[0]
    leaves = jax.tree_util.tree_leaves(trained.state)
    assert sum(np.asarray(leaf).nbytes for leaf in leaves) == (
        config.num_seeds * state_bytes_per_seed(conditions[0]))


def test_a_million_seeds_of_the_default_study_are_refused_with_the_number(monkeypatch):
    config = load_config("default")
    config.num_seeds = 1_000_000
    error = _refusal(config, 16 * GB, monkeypatch)
    assert error.field == "num_seeds" and error.value == 1_000_000
    message = str(error)
    assert message.startswith("config.num_seeds=1000000 is not allowed: at most about ")
    assert "16 GB of memory is available" in message
    assert "state 58 kB a seed x 1,000,000 seeds x 4 copies" in message
    assert "\n" not in message
    most = _most_that_fit(error)
    # Rounded down to two digits: that many fit, a tenth more do not.
    config.num_seeds = most
    _fits(config, 16 * GB, monkeypatch)
    config.num_seeds = int(most * 1.1) + 1
    assert _most_that_fit(_refusal(config, 16 * GB, monkeypatch)) == most


def test_conditions_trained_in_one_call_count_their_seeds_together(monkeypatch):
    # Without evaluators the need is linear in the seeds: two conditions trained in one
    # call (they differ in learning rate only) fit half the seeds each.
    config = load_config("default")
    config.num_seeds = 1_000_000
    config.evaluation.evaluators = ()
    alone = _most_that_fit(_refusal(config, 2 * GB, monkeypatch))
    config.conditions = ({"name": "slow"}, {"name": "fast", "optimizer.learning_rate": 0.1})
    together = _most_that_fit(_refusal(config, 2 * GB, monkeypatch))
    assert together == pytest.approx(alone / 2, rel=0.06)


def test_a_condition_that_sets_its_own_seed_count_is_named(monkeypatch):
    config = load_config("default")
    config.conditions = ({"name": "small"}, {"name": "big", "num_seeds": 1_000_000})
    error = _refusal(config, 16 * GB, monkeypatch)
    assert error.field == "conditions['big'].num_seeds" and error.value == 1_000_000
    assert str(error).startswith("config.conditions['big'].num_seeds=1000000 is not allowed")


def _at_full_size(task: Task, num_train: int, num_test: int, corruptions: int,
                  severities: tuple[int, ...]) -> Task:
    """``task`` with CIFAR-10's real sizes, as zero-stride views: shapes without memory."""
    def like(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.zeros((), np.asarray(array).dtype), shape)

    shape = task.input_shape
    shift = ShiftSet(severities, like(np.zeros((), np.uint8), (len(severities), num_test,
                                                                *shape)),
                     like(task.y_test, (len(severities), num_test)))
    return dataclasses.replace(
        task, x_train=like(task.x_train, (num_train, *shape)),
        y_train=like(task.y_train, (num_train,)), x_test=like(task.x_test, (num_test, *shape)),
        y_test=like(task.y_test, (num_test,)),
        shift_sets={f"corruption_{i}": shift for i in range(corruptions)})


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_fit_on_a_machine_of_8_gb(name, monkeypatch):
    config = load_config(name)
    if name == "cifar10_corrupted":
        # No CIFAR-10 here: a stand-in with its real sizes (50,000 and 10,000 images, 15
        # corruptions at 5 severities of 10,000 images each).
        def load_task(task_config, others=()):
            del others
            x = np.zeros((2, 32, 32, 3), np.float32)
            y = np.zeros(2, np.int32)
            task = Task(name="cifar10", kind="classification", x_train=x, y_train=y,
                        x_test=x, y_test=y, num_outputs=10)
            return _at_full_size(task, 50_000, 10_000, len(task_config.corruptions),
                                 tuple(task_config.corruption_severities))

        monkeypatch.setattr(prepare, "load_task", load_task)
    _fits(config, 8 * GB, monkeypatch)


def _predictions(num_seeds: int, levels: int, examples: int, classes: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, classes, (num_seeds, levels, examples),
                                             dtype=np.int32)


def test_multiplicity_estimate_covers_what_the_evaluator_really_holds():
    num_seeds, examples, classes = 120, 50, 4
    severities = (0.0, 0.2, 0.5)
    x = np.zeros((examples, 2), np.float32)
    labels = np.arange(examples) % classes
    task = Task(name="toy", kind="classification", x_train=x, y_train=labels, x_test=x,
                y_test=labels, num_outputs=classes)
    # multiplicity's settings: its own section and that of robustness, which it requires.
    settings = ConfigDict({"multiplicity_matrices": True, "robustness": {
        "shifts": ("gaussian_noise",), "severities": severities}})
    passed_on = {
        "predictions": {"clean": _predictions(num_seeds, 1, examples, classes),
                        "gaussian_noise": _predictions(num_seeds, 3, examples, classes)},
        "labels": {"clean": labels[None], "gaussian_noise": np.stack([labels] * 3)},
        "severities": {"clean": np.zeros(1), "gaussian_noise": np.asarray(severities)}}
    context = EvaluationContext(
        apply=lambda params, xs: xs, params={}, task=task, settings=settings,
        seed_keys=np.zeros((num_seeds, 2), np.uint32), shared_key=np.zeros(2, np.uint32),
        earlier={"robustness": Evaluation(passed_on=passed_on)})
    tracemalloc.start()  # NumPy reports its allocations to tracemalloc
    try:
        evaluation = multiplicity.EVALUATOR.evaluate(context)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    use = multiplicity.EVALUATOR.memory(settings, task, num_seeds)
    matrices = jax.tree_util.tree_leaves(evaluation.pairwise)
    assert matrices and all(m.shape[:2] == (num_seeds, num_seeds) for m in matrices)
    assert use.held >= sum(m.nbytes for m in matrices)
    assert use.held >= peak
    saved = jax.tree_util.tree_leaves((evaluation.pairwise, evaluation.per_seed))
    assert use.saved >= sum(np.size(leaf) for leaf in saved)


def _toy_task() -> Task:
    x = np.zeros((10, 3), np.float32)
    y = np.zeros(10, np.int32)
    return Task(name="toy", kind="classification", x_train=x, y_train=y, x_test=x, y_test=y,
                num_outputs=2)


@pytest.mark.parametrize("shifts,severities,refused", [
    (("occlusion",), (0.0, 0.5, 1.0), False),
    (("occlusion",), (0.0, 1.5), True),
    (("gaussian_noise", "occlusion"), (0.0, 2.0), True),
    (("gaussian_noise",), (0.0, 2.0), False),  # a noise scale may exceed 1
    (("contrast",), (0.0, 1.0), False),
    (("gaussian_noise", "contrast"), (0.0, 1.2), True),  # contrast's severity is a share too
])
def test_occlusion_severity_is_a_share(shifts, severities, refused):
    settings = ConfigDict({"shifts": shifts, "severities": severities})
    if not refused:
        robustness.check(settings, _toy_task())
        return
    with pytest.raises(ConfigError) as err:
        robustness.check(settings, _toy_task())
    assert err.value.field == "evaluation.robustness.severities"
    assert str(err.value) == (f"config.evaluation.robustness.severities={severities!r} is not "
                              f"allowed: severities in [0, 1] when {shifts[-1]} is among the "
                              "shifts")


def test_occlusion_severity_is_refused_before_anything_runs():
    config = tiny_config()
    config.evaluation.robustness.shifts = ("occlusion",)
    config.evaluation.robustness.severities = (0.0, 1.5)
    with pytest.raises(ConfigError,
                       match=r"^config\.evaluation\.robustness\.severities=\(0\.0, 1\.5\)"):
        prepare.prepare_study(config)


def test_a_task_shift_named_occlusion_is_the_tasks_to_bound():
    task = dataclasses.replace(_toy_task(), shifts={"occlusion": lambda k, x, s: x * s})
    robustness.check(ConfigDict({"shifts": ("occlusion",), "severities": (0.0, 3.0)}), task)


def test_available_memory_reads_the_machine_or_the_override(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    assert 0 < available_memory() < 2**60
    monkeypatch.setenv(MEMORY_ENV, "3e9")
    assert available_memory() == 3 * GB
    for bad in ("lots", "-1", "inf"):
        monkeypatch.setenv(MEMORY_ENV, bad)
        with pytest.raises(ConfigError) as err:
            available_memory()
        assert str(err.value) == (f"${MEMORY_ENV}={bad!r} is not allowed: a number of "
                                  "bytes > 0")


TWO_HOSTS = textwrap.dedent("""
    import sys

    import jax

    jax.config.update("jax_platforms", "cpu")
    process, port = int(sys.argv[1]), int(sys.argv[2])
    from negres.sharding import initialize_distributed

    initialize_distributed(f"localhost:{port}", 2, process, heartbeat_timeout_seconds=30,
                           shutdown_timeout_seconds=30)
    from tests_configs import load_config

    from negres.errors import ConfigError
    from negres.study import experiment
    from negres.study import prepare
    from negres.study import group_training
    from negres.study.memory import check_memory

    config = load_config("default")
    config.num_seeds = 2000
    config.evaluation.evaluators = ()
    conditions = prepare.prepare_study(config).conditions
    try:  # process 1's host is small: 4 copies of 58 kB a seed fit 430 times in 100 MB
        check_memory(conditions, available=lambda: 10**8 if process == 1 else 10**12)
        print("accepted")
    except ConfigError as e:
        print(e)
""")


def test_on_several_hosts_the_smallest_decides_for_every_process(tmp_path):
    script = tmp_path / "two_hosts.py"
    script.write_text(TWO_HOSTS)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    # JAX warns that proxies may hang its coordination service's gRPC.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}")
    processes = [subprocess.Popen([sys.executable, str(script), str(i), str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1].startswith(
            "config.num_seeds=2000 is not allowed: at most about 430 seeds fit"), out
