"""Bad input, as an adversarial user gives it: each is refused in one line that names the
field (and the condition), the value and what is allowed, before anything compiles, and
the workdir keeps what it held.

The values are refused by the study (``negres.study.experiment.run``) the command line
calls; tests/test_cli.py shows the command line prints such refusals as one line.
"""

import math

import pytest
from tests_configs import tiny_config

from negres.errors import ConfigError
from negres.study import experiment
from negres.study.workdir import WorkdirError, write_json_atomic


def a_workdir_with_results(tmp_path):
    """A workdir holding an earlier run's outputs, and a snapshot of it."""
    workdir = tmp_path / "w"
    (workdir / "plots").mkdir(parents=True)
    (workdir / "checkpoints" / "0_mlp").mkdir(parents=True)
    for name in ("results.json", "config.json", "report.md", "plots/a.png",
                 "checkpoints/0_mlp/state"):
        (workdir / name).write_text(f"earlier {name}")
    return workdir, snapshot(workdir)


def snapshot(workdir):
    return {str(p.relative_to(workdir)): p.read_bytes()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def with_value(field: str, value):
    config = tiny_config()
    section, _, key = field.rpartition(".")
    node = config
    for part in filter(None, section.split(".")):
        node = node[part]
    node[key] = value
    return config


CASES = [
    ("optimizer.learning_rate", math.inf),
    ("optimizer.learning_rate", float("1e400")),
    ("optimizer.learning_rate", math.nan),
    ("optimizer.weight_decay", math.nan),
    ("optimizer.grad_clip_norm", math.nan),
    ("evaluation.severities", (0.0, math.nan)),
    ("evaluation.severities", (0.0, math.inf)),
    ("evaluation.smoothgrad_noise", math.nan),
    ("evaluation.sensitivity_radius", math.nan),
    ("task.split_seed", -1),
    ("num_seeds", 1_000_000_000),
    ("stats.num_resamples", 1_000_000_000),
    ("stats.level", math.nan),
    ("evaluation.shifts", ("gaussian_noise", "gaussian_noise")),
    ("evaluation.attribution_methods", ("integrated_gradients", "integrated_gradients")),
]


@pytest.mark.parametrize("field,value", CASES, ids=[f"{f}={v!r}" for f, v in CASES])
def test_a_bad_value_is_one_line_and_the_workdir_keeps_what_it_held(tmp_path, field, value):
    workdir, before = a_workdir_with_results(tmp_path)
    with pytest.raises(ConfigError) as err:
        # --overwrite: had the value passed, the earlier outputs would have been set aside.
        experiment.run(with_value(field, value), str(workdir), overwrite=True)
    message = str(err.value)
    assert err.value.field == field
    assert "\n" not in message and f"config.{field}=" in message and "is not allowed: " in message
    assert snapshot(workdir) == before


def test_occlusion_beyond_the_whole_input_is_refused(tmp_path):
    workdir, before = a_workdir_with_results(tmp_path)
    config = with_value("evaluation.shifts", ("occlusion",))
    config.evaluation.severities = (0.0, 0.5, 5.0)
    with pytest.raises(ConfigError, match=r"evaluation\.severities=\(0\.0, 0\.5, 5\.0\)") as err:
        experiment.run(config, str(workdir), overwrite=True)
    assert "[0, 1]" in str(err.value)
    assert snapshot(workdir) == before


def test_more_seeds_than_memory_holds_is_refused_with_the_numbers(tmp_path):
    workdir, before = a_workdir_with_results(tmp_path)
    with pytest.raises(ConfigError) as err:
        experiment.run(with_value("num_seeds", 1_000_000), str(workdir), overwrite=True)
    assert err.value.field == "num_seeds" and "1000000" in str(err.value)
    assert "B" in str(err.value) and "\n" not in str(err.value)  # the bytes needed and free
    assert snapshot(workdir) == before


@pytest.mark.parametrize("override,shown", [
    ({"optimizer.learning_rate": "fast"}, "conditions['slow'].optimizer.learning_rate='fast'"),
    ({"optimizer.learning_rate": math.nan}, "conditions['slow'].optimizer.learning_rate=nan"),
    ({"train.steps": 0}, "conditions['slow'].train.steps=0"),
])
def test_a_bad_override_names_its_condition(tmp_path, override, shown):
    workdir, before = a_workdir_with_results(tmp_path)
    config = tiny_config()
    config.conditions = ({"name": "slow", **override},)
    with pytest.raises(ConfigError) as err:
        experiment.run(config, str(workdir), overwrite=True)
    assert shown in str(err.value) and "\n" not in str(err.value)
    assert snapshot(workdir) == before


def test_an_empty_workdir_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkdirError, match="--workdir='' is not allowed"):
        experiment.run(tiny_config(), "")
    assert list(tmp_path.iterdir()) == []


def test_train_subset_is_a_field_of_every_task():
    config = tiny_config()
    config.task.train_subset = 100
    conditions, _ = experiment.prepare_conditions(config)
    assert conditions[0].task.num_train == 100


def valid_results() -> dict:
    return {"schema_version": experiment.SCHEMA_VERSION, "config": {}, "task": {},
            "baseline": "mlp", "device": {}, "wall_time_s": 1.0,
            "conditions": {"mlp": {"num_seeds": 2, "metrics": {}, "evaluations": {},
                                   "curves": {}}},
            "statistics": {"settings": {}}}


def damaged(kind: str) -> bytes | dict | list:
    results = valid_results()
    if kind == "statistics-less":
        del results["statistics"]
    elif kind == "baseline elsewhere":
        results["baseline"] = "cnn"
    elif kind == "condition without metrics":
        del results["conditions"]["mlp"]["metrics"]
    return {"truncated": b'{"schema_version": 2, "conf', "empty object": {}, "list": [1, 2],
            "binary": bytes(range(128, 256)), "empty file": b""}.get(kind, results)


@pytest.mark.parametrize("kind,said", [
    ("truncated", "not valid JSON"), ("empty file", "not valid JSON"),
    ("binary", "not text"), ("empty object", "without 'schema_version'"),
    ("list", "a JSON list, not an object"), ("statistics-less", "without 'statistics'"),
    ("baseline elsewhere", "baseline 'cnn' is not among its conditions"),
    ("condition without metrics", "condition 'mlp' lacks a valid 'metrics'"),
])
def test_report_only_says_in_one_line_what_is_wrong_with_results_json(tmp_path, kind, said):
    content = damaged(kind)
    path = tmp_path / "results.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_json_atomic(path, content)
    with pytest.raises(WorkdirError) as err:
        experiment.rebuild_report(str(tmp_path))
    assert said in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_report_only_on_results_damaged_inside_is_one_line(tmp_path):
    results = valid_results()  # passes the checks of its outer keys, lacks what tables need
    write_json_atomic(tmp_path / "results.json", results)
    with pytest.raises(WorkdirError, match="the report cannot be built from") as err:
        experiment.rebuild_report(str(tmp_path))
    assert "\n" not in str(err.value)

