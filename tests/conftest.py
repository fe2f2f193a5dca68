"""Shared, small fixtures: real tasks cut to toy size so the suite stays fast on 2 CPU cores."""

import dataclasses
import json
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


# main.py runs refused before anything compiles spend most of their 4.5 CPU seconds importing
# JAX, flax and negres. A fork server imports what main.py imports once; each command then
# runs main.py in a fork of it, as ``python main.py ARGV`` runs it: a process of its own, with
# its own exit status, stdout and stderr (Python's handling of SystemExit and of an uncaught
# exception, then the atexit functions), so what a test asserts of the process is unchanged.
MAIN_FORKSERVER = r"""
import atexit, json, os, runpy, signal, sys, traceback
import absl.app, ml_collections.config_flags, negres.study.experiment, negres.study.lifecycle
import negres.evaluators, negres.files, negres.sharding
for line in sys.stdin:
    argv, out, err = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.alarm(300)
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv, sys.path[0] = argv, os.path.dirname(os.path.abspath(argv[0]))
        try:
            runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else e.code is not None
            if not isinstance(e.code, int | None):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class MainForkServer:
    """``run(*argv)``: ``python main.py *argv`` (``subprocess_env``, from the checkout) as a
    CompletedProcess, forked from a process that has imported what main.py imports."""

    def __init__(self, scratch: Path):
        self.scratch, self.count = scratch, 0
        self.server = subprocess.Popen([sys.executable, "-c", MAIN_FORKSERVER],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, cwd=REPO, env=subprocess_env())

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        self.count += 1
        out, err = (self.scratch / f"{self.count}.{name}" for name in ("out", "err"))
        self.server.stdin.write(json.dumps([[MAIN, *argv], str(out), str(err)]) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        assert line, "the main.py fork server ended"
        return subprocess.CompletedProcess([MAIN, *argv], int(line), out.read_text(),
                                           err.read_text())

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)


@pytest.fixture(scope="session")
def main_forked(tmp_path_factory):
    """``main_forked(*argv)``: main.py run as a process of its own at a fraction of the cost;
    for runs that compile nothing (refusals, --rollback; see MainForkServer)."""
    server = MainForkServer(tmp_path_factory.mktemp("main_forked"))
    yield server.run
    server.close()
