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
from negres.files import write_json_atomic
from negres.results import SCHEMA_VERSION
from negres.study import experiment, lifecycle, prepare
from negres.study.workdir import WorkdirError


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


def with_value(field: str, value, config=None):
    config = tiny_config() if config is None else config
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
    ("evaluation.robustness.severities", (0.0, math.nan)),
    ("evaluation.robustness.severities", (0.0, math.inf)),
    ("evaluation.attributions.smoothgrad_noise", math.nan),
    ("evaluation.attributions.sensitivity_radius", math.nan),
    ("task.split_seed", -1),
    ("num_seeds", 1_000_000_000),
    ("stats.num_resamples", 1_000_000_000),
    ("stats.level", math.nan),
    ("evaluation.robustness.shifts", ("gaussian_noise", "gaussian_noise")),
    ("evaluation.attributions.attribution_methods",
     ("integrated_gradients", "integrated_gradients")),
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
    config = with_value("evaluation.robustness.shifts", ("occlusion",))
    config.evaluation.robustness.severities = (0.0, 0.5, 5.0)
    with pytest.raises(ConfigError,
                       match=r"evaluation\.robustness\.severities=\(0\.0, 0\.5, 5\.0\)") as err:
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
    conditions = prepare.prepare_study(config).conditions
    assert conditions[0].task.num_train == 100


def valid_results() -> dict:
    return {"schema_version": SCHEMA_VERSION, "config": {}, "task": {},
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
        lifecycle.rebuild_report(str(tmp_path))
    assert said in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_report_only_on_results_damaged_inside_is_one_line(tmp_path):
    results = valid_results()  # passes the checks of its outer keys, lacks what tables need
    write_json_atomic(tmp_path / "results.json", results)
    with pytest.raises(WorkdirError, match="the report cannot be built from") as err:
        lifecycle.rebuild_report(str(tmp_path))
    assert "\n" not in str(err.value)



@pytest.mark.parametrize("conditions,shown,said", [
    (({"name": "a/b"}, {"name": "a_b"}), "conditions[1].name='a_b'",
     "condition 'a/b': both would write files named 'a_b'"),
    (({"name": "fast"}, {"name": "Fast"}), "conditions[1].name='Fast'",
     "condition 'fast': both would write files named 'Fast'"),
    (({"name": ""},), "conditions[0].name=''", "a non-empty name"),
    (({"name": "fast"}, {"name": " "}), "conditions[1].name=' '", "a non-empty name"),
    (({"name": "x" * 200},), "conditions[0].name='xxx", "a name of at most 100 bytes"),
])
def test_condition_names_that_collide_as_file_names_or_are_empty_are_refused(
        tmp_path, conditions, shown, said):
    workdir, before = a_workdir_with_results(tmp_path)
    config = tiny_config()
    config.conditions = conditions
    with pytest.raises(ConfigError) as err:
        experiment.run(config, str(workdir), overwrite=True)
    assert shown in str(err.value) and said in str(err.value) and "\n" not in str(err.value)
    assert snapshot(workdir) == before


def test_paired_conditions_with_unequal_seed_counts_are_refused(tmp_path):
    workdir, before = a_workdir_with_results(tmp_path)
    config = tiny_config()
    config.stats.paired_conditions = True
    config.conditions = ({"name": "four", "num_seeds": 4}, {"name": "six", "num_seeds": 6})
    with pytest.raises(ConfigError) as err:
        experiment.run(config, str(workdir), overwrite=True)
    assert err.value.field == "stats.paired_conditions" and "\n" not in str(err.value)
    assert "('six': 6, 'four': 4)" in str(err.value)
    assert snapshot(workdir) == before
    # Unpaired, the same seed counts are fine (Welch); paired, equal ones are.
    config.stats.paired_conditions = False
    prepare.prepare_study(config)
    config.stats.paired_conditions = True
    config.conditions = ({"name": "four", "num_seeds": 4}, {"name": "again", "num_seeds": 4})
    prepare.prepare_study(config)


def library_program():
    import flax.linen as nn
    import optax

    import negres

    def loss(logits, batch):
        _, y = batch
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), {}

    return negres.linen_program(nn.Dense(3), loss, optax.adam,
                                hyperparams={"learning_rate": 1e-2})


@pytest.mark.parametrize("arguments,shown,said", [
    ({"grid": {"learning_rate": ["fast", "slow"]}}, "grid['learning_rate']=['fast', 'slow']",
     "a non-empty list of finite numbers"),
    ({"grid": {"learning_rate": [-0.5, 1e-2]}}, "grid['learning_rate']=[-0.5, 0.01]",
     "numbers > 0 (optax's learning_rate is a step size; -0.5 is not)"),
    ({"grid": {"learning_rate": [0.0]}}, "grid['learning_rate']=[0.0]", "numbers > 0"),
    ({"grid": {"learning_rate": [1e-3, math.nan]}}, "grid['learning_rate']=[0.001, nan]",
     "finite numbers"),
    ({"grid": {"learning_rate": [True, False]}}, "grid['learning_rate']=[True, False]",
     "finite numbers"),
    ({"grid": {"b1": [0.9, 1.5]}}, "grid['b1']=[0.9, 1.5]", "numbers in [0, 1)"),
    ({"grid": ["learning_rate"]}, "grid=['learning_rate']", "a dict of hyperparameter name"),
    ({"hyperparams": {"learning_rate": ["a", "b"]}}, "hyperparams['learning_rate']=['a', 'b']",
     "2 finite numbers, one per seed"),
    ({"hyperparams": {"learning_rate": [1e-3, -1.0]}},
     "hyperparams['learning_rate']=[0.001, -1.0]", "numbers > 0"),
    ({"hyperparams": {"learning_rate": [1e-3, math.inf]}},
     "hyperparams['learning_rate']=[0.001, inf]", "2 finite numbers"),
])
def test_the_library_checks_grids_and_hyperparameters_like_the_command_line(
        arguments, shown, said):
    import numpy as np

    import negres
    from negres.errors import ArgumentError

    rng = np.random.default_rng(0)
    data = (rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 3, 16))
    with pytest.raises(ArgumentError) as err:
        negres.train(library_program(), data, num_seeds=2, steps=2, batch_size=4, **arguments)
    assert shown in str(err.value) and said in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value, said", [
    (-0.5, "numbers > 0"), ("fast", "a finite real number"),
    (math.nan, "a finite real number"), (True, "a finite real number")])
def test_a_programs_own_hyperparameters_are_checked_like_the_grids(value, said):
    """``hyperparams=`` of a program builder (not only of ``negres.train``): a learning rate
    of -0.5 would train at chance without a word."""
    import flax.linen as nn
    import optax

    import negres
    from negres.errors import ArgumentError

    with pytest.raises(ArgumentError) as err:
        negres.linen_program(nn.Dense(3), lambda logits, batch: (logits.mean(), {}),
                             optax.adam, hyperparams={"learning_rate": value})
    assert "hyperparams['learning_rate']=" in str(err.value) and said in str(err.value)


def test_a_fully_diverged_condition_leaves_paired_comparisons_explained_and_unpaired_beside(
        tmp_path):
    config = tiny_config()
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
    config.evaluation.evaluators = ("performance",)
    config.stats.paired_conditions = True
    # One condition whose every seed diverges: paired, it leaves every seed index out of
    # the healthy conditions too.
    config.conditions = ({"name": "ok"}, {"name": "slower", "optimizer.learning_rate": 0.02},
                         {"name": "exploding", "optimizer.learning_rate": 1e30})
    results = experiment.run(config, str(tmp_path))
    assert results.conditions["exploding"].diverged.count == 3
    statistics = results.statistics
    compared = statistics.comparisons["test_accuracy"]["slower"]
    assert compared["paired"] and min(compared["n_x"], compared["n_y"]) == 0
    assert compared["verdict"] == "inconclusive"
    assert compared["reason"].startswith("`slower` − `ok` has 0 paired seeds: paired conditions "
                                         "leave out every seed index that diverged in any "
                                         "condition, and seeds diverged in `exploding` on "
                                         "every one of its seeds (0, 1, 2)")
    unpaired = compared["unpaired"]
    assert not unpaired["paired"] and unpaired["n_x"] == unpaired["n_y"] == 3
    assert unpaired["verdict"] in ("improved", "worse", "inconclusive")
    assert compared["reason"] in statistics.notes
    # The report says why, and shows the unpaired comparison beside the empty paired one.
    report = (tmp_path / "report.md").read_text()
    assert "**What these seeds cannot tell.**" in report and compared["reason"] in report
    assert "| slower (unpaired) |" in report


@pytest.mark.parametrize("overrides,field", [
    ({"evaluation.attributions.attribution_methods": ("kernel_shap",),
      "evaluation.attributions.kernel_shap_samples": 3},
     "evaluation.attributions.kernel_shap_samples"),
    ({"evaluation.attributions.attribution_methods": ("deeplift",), "model.name": "cnn"},
     "evaluation.attributions.attribution_methods"),
])
def test_a_method_its_settings_or_model_cannot_serve_is_refused_before_training(
        tmp_path, overrides, field):
    workdir, before = a_workdir_with_results(tmp_path)
    config = tiny_config()
    for name, value in overrides.items():
        with_value(name, value, config)
    with pytest.raises(ConfigError) as err:
        experiment.run(config, str(workdir), overwrite=True)
    assert err.value.field == field and "\n" not in str(err.value)
    assert snapshot(workdir) == before
