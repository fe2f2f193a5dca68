"""Every core by default: main.py's setup gives one CPU device per core, and the default
config and every study then compute per seed what one device computes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _environment(**env: str) -> dict[str, str]:
    """This environment with no device setting but ``env``'s."""
    kept = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return dict(kept, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **env)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=_environment(**env))


SETUP = """
import sys, jax, negres
{before}
setup = negres.use_all_cores({count})
print(setup.num_devices, len(jax.devices()), setup.reason, sep="|")
"""


@pytest.mark.parametrize("before,count,env,devices,reason", [
    ("", "", {}, "cores", "one CPU device per available core"),
    ("", "3", {}, "3", "one CPU device per available core (3)"),
    ("", "", {"JAX_NUM_CPU_DEVICES": "1"}, "1", "set by JAX_NUM_CPU_DEVICES"),
    ("", "", {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, "2", "XLA_FLAGS"),
    ("jax.numpy.zeros(1)", "3", {}, "1", "JAX was initialised before"),
])
def test_use_all_cores_gives_one_device_per_core_unless_told_otherwise(before, count, env,
                                                                        devices, reason):
    from negres.sharding import available_cores

    proc = _run("-c", SETUP.format(before=before, count=count), **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wanted, got, said = proc.stdout.strip().splitlines()[-1].split("|")
    expected = str(available_cores()) if devices == "cores" else devices
    assert wanted == got == expected
    assert reason in said
    if before:  # too late to change: the warning says what to do instead
        assert "call negres.use_all_cores() before the first JAX computation" in proc.stderr
        assert "JAX_NUM_CPU_DEVICES=3" in proc.stderr


def _numbers(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_default_config_and_every_study_on_all_cores_equal_one_device_per_seed():
    def start(*args: str, **env: str) -> subprocess.Popen:
        # XLA's lowest backend optimisation level compiles these nine studies about three
        # times faster; what is checked, that splitting the seeds over devices leaves each
        # seed's numbers alone, holds at every level (test_scale.py checks training at the
        # default level on 8 devices).
        return subprocess.Popen([sys.executable, str(REPO / "tests" / "all_cores_runs.py"),
                                 *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO, env=_environment(
                                    XLA_FLAGS="--xla_backend_optimization_level=0", **env))

    # Side by side, as main.py runs with two cores' worth of devices (whatever this
    # machine has), and the one-device run of a user who sets JAX_NUM_CPU_DEVICES=1.
    runs = start("2"), start(JAX_NUM_CPU_DEVICES="1")
    spread, alone = (_numbers(run) for run in runs)
    assert spread["num_devices"] == 2 and alone["num_devices"] == 1
    assert spread["studies"].keys() == alone["studies"].keys()
    # The default, the six studies of test_studies (two variants of the rule study),
    # MNIST-1D and CIFAR-10 (on TFDS's mock data).
    assert len(spread["studies"]) == 9
    for study, conditions in spread["studies"].items():
        assert conditions.keys() == alone["studies"][study].keys(), study
        for condition, run in conditions.items():
            reference = alone["studies"][study][condition]
            assert (run["devices"], reference["devices"]) == (2, 1), (study, condition)
            assert run["numbers"].keys() == reference["numbers"].keys()
            for name, values in run["numbers"].items():
                np.testing.assert_allclose(
                    np.asarray(values, float), np.asarray(reference["numbers"][name], float),
                    rtol=1e-4, atol=1e-5, err_msg=f"{study} / {condition} / {name}")
