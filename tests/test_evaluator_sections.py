"""Each evaluator has its own config section (``evaluation.<name>``): same-named fields of
two evaluators do not collide, a field set in the flat layout of earlier versions is refused
with where it lives now, and each evaluator is given its own section."""

import dataclasses
import importlib
import json

import numpy as np
import pytest
from ml_collections import ConfigDict
from tests_configs import tiny_config

import negres
from negres import evaluators, fields
from negres.errors import ConfigError
from negres.study import prepare
from negres.study.conditions import expand_conditions
from negres.study.config import complete, default_config, validate_config

NUM_SEEDS = 3


def _task() -> negres.Task:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return negres.Task(name="toy", kind="classification", x_train=x, y_train=y, x_test=x,
                       y_test=y, num_outputs=2)


def _apply(params, x):
    return x @ params["w"]


PARAMS = {"w": np.random.default_rng(1).normal(size=(NUM_SEEDS, 4, 2)).astype(np.float32)}


def _toy(name: str, default: float, seen: dict) -> negres.Evaluator:
    """An evaluator whose one field is named ``scale`` (as the other toy's is); it returns
    its value as a metric and records the settings its check was given."""

    def evaluate(context):
        return negres.Evaluation(metrics={f"{name}_scale": negres.Metric(
            np.full(context.num_seeds, float(context.settings.scale)), "none")})

    def check(settings, task):
        seen[name] = settings.to_dict()

    return negres.Evaluator(
        name=name, evaluate=evaluate, check=check,
        fields=(fields.number("scale", default, f"{name}: a scale", 0.0, low_open=True),))


def _scales(out):
    return {name: float(out[name].metrics[f"{name}_scale"].values[0]) for name in ("a", "b")}


def test_two_evaluators_may_declare_the_same_field_name():
    seen: dict = {}
    chosen = (_toy("a", 1.0, seen), _toy("b", 2.0, seen))
    out = negres.evaluate(_apply, PARAMS, _task(), evaluators=chosen)
    assert _scales(out) == {"a": 1.0, "b": 2.0}  # each its own default
    out = negres.evaluate(_apply, PARAMS, _task(), evaluators=chosen,
                          settings={"a": {"scale": 5.0}})
    assert _scales(out) == {"a": 5.0, "b": 2.0}  # setting a's leaves b's alone
    out = negres.evaluate(_apply, PARAMS, _task(), evaluators=chosen,
                          settings={"a": {"scale": 5.0}, "b": {"scale": 7.0}})
    assert _scales(out) == {"a": 5.0, "b": 7.0}
    # Each check got its own section: its one field, nothing of the other's.
    assert seen == {"a": {"scale": 5.0}, "b": {"scale": 7.0}}
    with pytest.raises(ConfigError) as err:
        negres.evaluate(_apply, PARAMS, _task(), evaluators=chosen,
                        settings={"b": {"scale": -1.0}})
    assert err.value.field == "evaluation.b.scale"


def test_a_field_in_the_flat_layout_is_refused_with_where_it_lives_now():
    config = default_config()
    config.evaluation.ig_steps = 8
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert str(err.value) == (
        "config.evaluation.ig_steps=8 is not allowed: a field of evaluation.attributions "
        "(evaluation.attributions.ig_steps); each evaluator has its own section")
    assert "\n" not in str(err.value)
    # The library's settings, and a condition's override, say the same.
    with pytest.raises(ConfigError, match=r"evaluation\.robustness\.severities\); each"):
        negres.evaluate(_apply, PARAMS, _task(), evaluators=("robustness",),
                        settings={"severities": (0.0, 0.1)})
    config = tiny_config()
    config.conditions = ({"name": "a"}, {"name": "b", "evaluation.top_k": 3})
    with pytest.raises(ConfigError) as err:
        expand_conditions(validate_config(config))
    assert err.value.field == "conditions['b'].evaluation.top_k"
    assert "(evaluation.attributions.top_k)" in str(err.value)


def test_an_unknown_field_or_section_is_refused_naming_it():
    config = default_config()
    config.evaluation.attributions.ig_stepz = 8
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert err.value.field == "evaluation.attributions.ig_stepz"
    assert "ig_steps" in err.value.allowed  # what the section takes
    config = default_config()
    config.evaluation.attribution = ConfigDict({"ig_steps": 8})  # a typo of the section
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert err.value.field == "evaluation.attribution"
    assert "attributions" in err.value.allowed
    with pytest.raises(ConfigError) as err:
        negres.evaluate(_apply, PARAMS, _task(), evaluators=("attributions",),
                        settings={"attributions": {"ig_stepz": 8}})
    assert err.value.field == "evaluation.attributions.ig_stepz"


def test_a_nested_field_is_set_in_its_section():
    config = tiny_config()
    config.evaluation.attributions.ig_steps = 4
    config.conditions = ({"name": "a"},
                         {"name": "b", "evaluation.attributions.attribution_target": "label"})
    completed = validate_config(config)
    assert completed.evaluation.attributions.ig_steps == 4
    variants = dict(expand_conditions(completed)[0])
    assert variants["a"].evaluation.attributions.attribution_target == "predicted"
    assert variants["b"].evaluation.attributions.attribution_target == "label"


def test_each_evaluator_check_gets_its_own_section(monkeypatch):
    seen: dict = {}
    for name in ("robustness", "attributions", "multiplicity"):
        module = importlib.import_module(evaluators.REGISTRY[name])

        def check(settings, task, _name=name, _own=module.EVALUATOR.check):
            seen[_name] = settings.to_dict()
            _own(settings, task)

        monkeypatch.setattr(module, "EVALUATOR",
                            dataclasses.replace(module.EVALUATOR, check=check))
    config = tiny_config()
    config.evaluation.robustness.severities = (0.0, 0.2)
    config.evaluation.attributions.ig_steps = 4
    prepare.prepare_study(config)
    own = {name: {f.name for f in evaluators.get_evaluator(name).fields}
           for name in ("robustness", "attributions", "multiplicity")}
    assert set(seen["robustness"]) == own["robustness"]
    assert seen["robustness"]["severities"] == (0.0, 0.2)
    assert set(seen["attributions"]) == own["attributions"]
    assert seen["attributions"]["ig_steps"] == 4
    # multiplicity requires robustness: its settings hold that section under its name.
    assert set(seen["multiplicity"]) == own["multiplicity"] | {"robustness"}
    assert seen["multiplicity"]["robustness"] == seen["robustness"]


def test_settings_of_an_evaluator_without_fields_hold_only_what_it_requires():
    sections = complete(default_config()).evaluation
    truth = evaluators.settings_of(evaluators.get_evaluator("truth"), sections)
    assert set(truth) == {"attributions"}
    assert truth.attributions.to_dict() == sections.attributions.to_dict()
    fieldless = evaluators.get_evaluator("surrogate_fidelity")
    assert evaluators.settings_of(fieldless, sections).to_dict() == {}


def test_the_default_sections_are_each_evaluator_own_defaults():
    config = default_config()
    declared = evaluators.evaluator_fields()
    sections = {k for k, v in config.evaluation.items() if isinstance(v, ConfigDict)}
    assert sections == set(declared)
    for name in evaluators.REGISTRY:
        own = evaluators.get_evaluator(name).fields
        if not own:  # an evaluator without fields has no section
            assert name not in config.evaluation
            continue
        assert config.evaluation[name].to_dict() == {f.name: f.default for f in own}
    # A config leaving a section out gets it whole from complete.
    del config.evaluation["robustness"]
    assert complete(config).evaluation.robustness.to_dict() == {
        f.name: f.default for f in declared["robustness"]}


def test_an_unknown_shift_is_refused_naming_the_robustness_section():
    with pytest.raises(ConfigError) as err:
        negres.evaluate(_apply, PARAMS, _task(), evaluators=("robustness",),
                        settings={"robustness": {"shifts": ("snow",)}})
    assert err.value.field == "evaluation.robustness.shifts"
    assert "gaussian_noise" in err.value.allowed


def test_a_study_saved_in_the_flat_layout_still_matches_for_resume_and_extend():
    # config.json of an earlier version kept every evaluator's fields in `evaluation`: a
    # resumed or extended run compares what is computed, which the sections do not change.
    nested = complete(tiny_config()).to_dict()
    flat = json.loads(json.dumps(nested, default=list))
    sections = [k for k, v in flat["evaluation"].items() if isinstance(v, dict)]
    assert sections  # the default config has evaluator sections to flatten
    for section in sections:
        flat["evaluation"].update(flat["evaluation"].pop(section))
    assert prepare.what_is_computed(flat) == prepare.what_is_computed(nested)
    flat["evaluation"]["ig_steps"] = 3  # another value in the flat layout: another study
    assert prepare.what_is_computed(flat) != prepare.what_is_computed(nested)


def test_a_flat_layout_flag_is_told_where_its_field_lives_now():
    # main.py turns ml_collections' AttributeError for --config.evaluation.ig_steps=4 into
    # this line (the subprocess path is covered by test_cli's bad-config cases).
    import main

    line = main.config_error(AttributeError("'ig_steps'"), "configs/default.py",
                             ["--config.evaluation.ig_steps=4"])
    assert "--config.evaluation.ig_steps is a field of evaluation.attributions" in line
    assert "evaluation.attributions.ig_steps" in line
    assert "(" not in main.config_error(AttributeError("'nonsense'"), "configs/default.py",
                                        ["--config.evaluation.nonsense=1"])
    # A field an instance section's config file left out: build it with instance_section.
    line = main.config_error(AttributeError("'top_k'"), "configs/x.py",
                             ["--config.evaluation.ig_label.top_k=5"])
    assert "--config.evaluation.ig_label.top_k: evaluation.ig_label holds only" in line
    assert "instance_section" in line and "is a field of" not in line
