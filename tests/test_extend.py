"""--extend: a finished study gets more seeds; only they train, and its verdicts stay
sequentially honest."""

import shutil

import numpy as np
import pytest
from tests_configs import tiny_config

from negres.errors import ConfigError
from negres.statistics.sequential import nominal_alphas
from negres.study import experiment
from negres.study.workdir import WorkdirError


def study_config(num_seeds: int):
    config = tiny_config()
    config.num_seeds = num_seeds
    config.evaluation.evaluators = ("performance", "robustness", "multiplicity")
    config.conditions = ({"name": "fast"}, {"name": "slow", "optimizer.learning_rate": 0.003})
    return config


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A 2-seed study, the same extended to 4 seeds, and a 4-seed study from the start."""
    first = tmp_path_factory.mktemp("extended")
    experiment.run(study_config(2), str(first))
    finished = tmp_path_factory.mktemp("finished")
    shutil.copytree(first, finished, dirs_exist_ok=True)
    first_checkpoints = sorted(p.stat().st_mtime_ns for p in (first / "checkpoints").rglob("*"))
    results = experiment.run(study_config(4), str(first), extend=True)
    from_start = experiment.run(study_config(4), str(tmp_path_factory.mktemp("from_start")))
    return first, finished, first_checkpoints, results, from_start


def test_seed_i_of_an_extended_study_equals_seed_i_of_a_study_run_whole(extended):
    _, _, _, results, from_start = extended
    for name in ("fast", "slow"):
        ours, whole = results.conditions[name], from_start.conditions[name]
        assert ours.seed_indices.tolist() == whole.seed_indices.tolist() == [0, 1, 2, 3]
        for metric, values in whole.metrics.items():
            np.testing.assert_allclose(ours.metrics[metric], values, atol=2e-5,
                                       err_msg=f"{name}/{metric}")
        for curve, values in whole.curves.items():
            np.testing.assert_allclose(ours.curves[curve], values, atol=2e-5)
        # Pairwise numbers cross the looks: seeds 0-1 against seeds 2-3.
        churn = ours.saved_by("multiplicity").pairwise["churn"]["clean"]
        np.testing.assert_allclose(
            churn, whole.saved_by("multiplicity").pairwise["churn"]["clean"], atol=2e-5)


def test_only_the_new_seeds_train_and_the_looks_are_recorded(extended):
    workdir, _, first_checkpoints, results, _ = extended
    # The first look's checkpoints were read, never rewritten.
    group = workdir / "checkpoints" / "0_fast"
    assert sorted(p.stat().st_mtime_ns for p in (workdir / "checkpoints").rglob("*")
                  if "_look" not in str(p.relative_to(workdir))) == first_checkpoints
    assert (group.parent / "0_fast_look2").is_dir()
    assert results.looks == [{"fast": 2, "slow": 2}, {"fast": 4, "slow": 4}]
    sequential = results.statistics.settings["sequential"]
    assert sequential["looks"] == [2, 4] and sequential["look"] == 2
    assert sequential["alpha"] == pytest.approx(nominal_alphas([2, 4])[1])
    compared = results.statistics.comparisons["test_accuracy"]["slow"]
    assert compared["alpha"] == sequential["alpha"]
    report = (workdir / "report.md").read_text()
    assert "look 2" in report


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c.train, "steps", 90),
     "config.train.steps=90 is not allowed: 60, the value of the study"),
    (lambda c: setattr(c, "num_seeds", 1), "config.num_seeds=1 is not allowed: at least the 2"),
    (lambda c: None, "config.num_seeds=2 is not allowed: more than the 2 seeds"),
])
def test_an_extension_that_is_not_one_is_refused_before_anything_runs(extended, tmp_path,
                                                                      change, message):
    _, finished, _, _, _ = extended
    workdir = tmp_path / "w"
    shutil.copytree(finished, workdir)
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    config = study_config(2)
    change(config)
    with pytest.raises(ConfigError, match=message):
        experiment.run(config, str(workdir), extend=True)
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before


def test_a_rerun_with_more_seeds_points_to_extend_and_extend_needs_a_study(extended,
                                                                            tmp_path):
    _, finished, _, _, _ = extended
    with pytest.raises(WorkdirError, match="or --extend to add seeds 2–3 to it"):
        experiment.run(study_config(4), str(finished))
    with pytest.raises(WorkdirError, match="exclude each other"):
        experiment.run(study_config(4), str(finished), extend=True, overwrite=True)
    with pytest.raises(WorkdirError, match="holds no finished study"):
        experiment.run(study_config(4), str(tmp_path), extend=True)


KILL_THE_EXTENSION = """
import os, signal, sys
sys.path[:0] = [{tests!r}]
from tests_configs import tiny_config
from negres.study import experiment
from negres.training import checkpoint
save = checkpoint.TrainingCheckpoints.save
def save_then_die(self, step, state, metadata):
    save(self, step, state, metadata)
    if "_look2" in str(self.directory):
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.TrainingCheckpoints.save = save_then_die
config = tiny_config()
config.num_seeds = 4
config.train.checkpoint_every = 30
config.evaluation.evaluators = ("performance", "robustness", "multiplicity")
config.conditions = ({{"name": "fast"}}, {{"name": "slow", "optimizer.learning_rate": 0.003}})
experiment.run(config, {workdir!r}, extend=True)
"""


def test_a_killed_extension_is_not_rewritten_by_an_extension_to_another_count(extended,
                                                                            tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _, finished, _, _, _ = extended
    workdir = tmp_path / "w"
    shutil.copytree(finished, workdir)
    tests = str(Path(__file__).parent)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_THE_EXTENSION.format(tests=tests, workdir=str(workdir))],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "JAX_PLATFORMS": "cpu",
             "PYTHONPATH": str(Path(tests).parent)})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert any(workdir.glob("checkpoints/*_look2/*"))
    # The killed run's lock file (its lock died with it) is the one file that may go.
    (workdir / ".negres_lock").unlink()
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    with pytest.raises(WorkdirError) as err:
        experiment.run(study_config(3), str(workdir), extend=True)
    message = str(err.value)
    assert "holds an unfinished --extend of its study to num_seeds=4" in message
    assert "--config.num_seeds=4 --extend" in message and "--overwrite" not in message
    assert "\n" not in message
    # Nothing was rewritten: config.json still records the extension to 4 seeds.
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before
    # Rerun as it was, the extension resumes and finishes.
    results = experiment.run(study_config(4), str(workdir), extend=True)
    assert results.looks == [{"fast": 2, "slow": 2}, {"fast": 4, "slow": 4}]


def test_a_study_written_before_a_config_field_existed_still_extends(extended, tmp_path):
    """A finished study whose config.json and results.json predate a field (here the
    `randomness` section and `stats.estimand`) computed what the field's default computes:
    it extends, and its first look is not retrained."""
    import json

    _, finished, _, _, _ = extended
    workdir = tmp_path / "old"
    shutil.copytree(finished, workdir)
    for name in ("config.json", "results.json"):
        data = json.loads((workdir / name).read_text())
        config = data if name == "config.json" else data["config"]
        config.pop("randomness")
        config["stats"].pop("estimand")
        (workdir / name).write_text(json.dumps(data))
    results = experiment.run(study_config(4), str(workdir), extend=True)
    assert results.looks == [{"fast": 2, "slow": 2}, {"fast": 4, "slow": 4}]
    assert not (workdir / "checkpoints" / "0_fast_look1").exists()
