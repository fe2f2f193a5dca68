"""Shared, small fixtures: real tasks cut to toy size so the suite stays fast on 2 CPU cores."""

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from negres.tasks import Task, load_task

# Many tests build the same toy programs afresh (a study run, then its extension or its
# resumption; main.py run again and again in subprocesses): JAX's persistent cache
# compiles each distinct program once per test run. The directory is shared by the xdist
# workers of one run and, through the environment, by every subprocess they start.
_CACHE = Path(tempfile.gettempdir()) / (
    f"negres_test_jit_{os.environ.get('PYTEST_XDIST_TESTRUNUID') or os.getpid()}")
os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_CACHE)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

# Compiling dominates a toy run's time, and XLA's lowest backend optimisation level
# compiles CPU programs about three times faster (the suite: 17.5 -> 11.7 minutes on 2
# cores). What the tests check, negres's numbers against references and against
# themselves, holds at every level; only float rounding moves (tolerances allow for it).
# JAX reads XLA_FLAGS when its backend starts, after this; subprocesses inherit it.
# test_scale's 8-device comparison sets its own XLA_FLAGS and so checks the default level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()


@pytest.fixture(scope="session")
def small_digits() -> Task:
    """Real digits, 400 training and 200 test examples."""
    task = load_task(ConfigDict({"name": "digits"}))
    return dataclasses.replace(
        task,
        x_train=task.x_train[:400],
        y_train=task.y_train[:400],
        x_test=task.x_test[:200],
        y_test=task.y_test[:200],
    )


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """One toy study with three conditions and every default evaluator, run once per
    process and shared by the modules that read its outputs: ``(config, workdir,
    results)``. Tests must leave its workdir as they found it."""
    from tests_configs import tiny_config

    from negres.study import experiment

    config = tiny_config()
    config.evaluation.attributions.attribution_methods = ("integrated_gradients",)
    config.evaluation.attributions.max_sensitivity = False
    config.conditions = (
        {"name": "fast"},
        {"name": "slow", "optimizer.learning_rate": 0.001},
        {"name": "linear", "model.name": "linear"},
    )
    workdir = tmp_path_factory.mktemp("study")
    results = experiment.run(config, str(workdir))
    return config, workdir, results


@pytest.fixture(scope="session")
def regression_task() -> Task:
    config = {"name": "synthetic_regression", "num_train": 512, "num_test": 256}
    return load_task(ConfigDict(config))


def tree_allclose(a, b, atol: float, rtol: float = 0.0) -> None:
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)


REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "main.py")


def subprocess_env() -> dict[str, str]:
    """The environment of a test's Python subprocess: this one's, on the CPU, with the
    checkout importable."""
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))


def run_python(*argv: str) -> subprocess.CompletedProcess:
    """``python *argv`` run from the checkout (``subprocess_env``), its output captured as
    text; 5 minutes at most."""
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO,
                          env=subprocess_env(), timeout=300)


# A Python script (python -c) that runs main.py with argv and SIGKILLs it right after the
# checkpoint of step kill_step or later is saved: format(kill_step=..., argv=[...]).
KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
from negres.training import checkpoint
save = checkpoint.TrainingCheckpoints.save
def save_then_die(self, step, state, metadata):
    save(self, step, state, metadata)
    if step >= {kill_step}:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.TrainingCheckpoints.save = save_then_die
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""
