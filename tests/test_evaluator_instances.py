"""An evaluator run more than once under names of its own, each with its own settings (an
instance: ``evaluation.<name>.evaluator`` names the registered evaluator, or
``Evaluator.named``): it computes exactly what its kind computes with those settings, its
metrics carry its name, its statistics, report section, plots and files are its kind's,
reading its own results, and bad instance declarations are refused naming the field in the
library as in a study config."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict
from tests_configs import tiny_config

import negres
from negres import evaluators
from negres.errors import ConfigError
from negres.files import to_jsonable
from negres.results import ConditionResults, instance_metric
from negres.statistics.study import analyze
from negres.study.config import validate_config

NUM_SEEDS = 4
ATTRIBUTIONS = {"attribution_methods": ("gradient", "integrated_gradients"),
                "attribution_examples": 10, "ig_steps": 4, "randomization_check": False}


def _task() -> negres.Task:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    return negres.Task(name="toy", kind="classification", x_train=x, y_train=y, x_test=x,
                       y_test=y, num_outputs=2)


def _apply(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


_RNG = np.random.default_rng(1)
PARAMS = {"w1": _RNG.normal(size=(NUM_SEEDS, 5, 6)).astype(np.float32),
          "w2": _RNG.normal(size=(NUM_SEEDS, 6, 2)).astype(np.float32)}


def _evaluate(evaluators_, settings):
    return negres.evaluate(_apply, PARAMS, _task(), evaluators=evaluators_, settings=settings)


@pytest.fixture(scope="module")
def runs():
    """The kind alone with the label target, and predicted + a label-target instance, the
    instance declared as a section (as in a study config) and with ``Evaluator.named``."""
    label = {**ATTRIBUTIONS, "attribution_target": "label"}
    alone = _evaluate(("attributions",), {"attributions": label})
    predicted_alone = _evaluate(("attributions",), {"attributions": ATTRIBUTIONS})
    by_section = _evaluate(("attributions", "ig_label"), {
        "attributions": ATTRIBUTIONS, "ig_label": {"evaluator": "attributions", **label}})
    named = evaluators.get_evaluator("attributions").named("ig_label")
    by_named = _evaluate(("attributions", named),
                         {"attributions": ATTRIBUTIONS, "ig_label": label})
    return alone, predicted_alone, by_section, by_named


def test_an_instance_computes_what_its_kind_computes_with_its_settings(runs):
    alone, predicted_alone, by_section, by_named = runs
    for both in (by_section, by_named):
        instance, kind = both["ig_label"], alone["attributions"]
        assert instance.kind == "attributions" and both["attributions"].kind is None
        assert set(instance.metrics) == set(kind.metrics)
        for metric, value in kind.metrics.items():
            np.testing.assert_allclose(instance.metrics[metric].values, value.values,
                                       rtol=1e-6, err_msg=metric)
        # The kind under its own name keeps its own settings (the predicted class).
        for metric, value in predicted_alone["attributions"].metrics.items():
            np.testing.assert_allclose(both["attributions"].metrics[metric].values,
                                       value.values, rtol=1e-6, err_msg=metric)
    # Label and predicted targets differ where the model is wrong: the two are not copies.
    differs = [m for m in alone["attributions"].metrics if not np.allclose(
        alone["attributions"].metrics[m].values,
        predicted_alone["attributions"].metrics[m].values)]
    assert differs


def test_an_instance_s_metrics_carry_its_name_and_its_results_its_kind(runs):
    alone, _, by_section, _ = runs
    condition = negres.evaluators.as_results(by_section)
    for metric in alone["attributions"].metrics:
        assert metric in condition.metrics                  # the kind's, unprefixed
        name = instance_metric("ig_label", metric)
        assert condition.info(name).evaluator == "ig_label"
        np.testing.assert_allclose(condition.metrics[name],
                                   alone["attributions"].metrics[metric].values, rtol=1e-6)
    assert condition.evaluations["ig_label"].kind == "attributions"
    assert condition.evaluations["attributions"].kind is None
    # The kind is written only for an instance: results.json of a study without one is
    # unchanged; with one it round-trips.
    entry = json.loads(json.dumps(to_jsonable(condition.to_json())))
    assert entry["evaluations"]["ig_label"]["kind"] == "attributions"
    assert "kind" not in entry["evaluations"]["attributions"]
    back = ConditionResults.from_json(entry)
    assert back.evaluations["ig_label"].kind == "attributions"
    assert back.evaluations["attributions"].kind is None
    # A pairwise metric of the instance is sampled from the instance's own matrix.
    pairwise = [m for m in condition.metrics if m.startswith("ig_label/")
                and condition.info(m).sampling == "pairwise"]
    assert pairwise
    sample = condition.sample(pairwise[0])
    assert sample.pairwise is not None and sample.pairwise.shape == (NUM_SEEDS, NUM_SEEDS)


def test_the_kind_s_statistics_hook_runs_on_the_instance_s_own_results(runs):
    alone, _, by_section, _ = runs
    common = {"num_resamples": 200, "num_permutations": 200, "seed": 0}
    with_instance = analyze({"c": negres.evaluators.as_results(by_section)}, "c", **common)
    kind_alone = analyze({"c": negres.evaluators.as_results(alone)}, "c", **common)
    ours = with_instance.within("ig_label", "c")
    reference = kind_alone.within("attributions", "c")
    assert ours and ours.keys() == reference.keys()
    for family, comparisons in reference.items():
        for label, record in comparisons.items():
            for key in ("difference", "p_value", "verdict"):
                if key in record:
                    assert ours[family][label][key] == pytest.approx(record[key]), (
                        family, label, key)
    # The kind's own comparisons are on its own (predicted-class) attributions.
    assert with_instance.within("attributions", "c").keys() == reference.keys()


def test_an_instance_view_shows_only_the_instance_under_its_kind_s_names(runs):
    _, _, by_section, _ = runs
    condition = negres.evaluators.as_results(by_section)
    view = condition.instance_view("ig_label")
    assert set(view.evaluations) == {"performance", "attributions"}
    assert view.evaluations["attributions"] is not condition.evaluations["attributions"]
    np.testing.assert_array_equal(
        view.saved_by("attributions").pairwise["agreement"]["gradient"]["spearman_abs"],
        condition.saved_by("ig_label").pairwise["agreement"]["gradient"]["spearman_abs"])
    assert not any("/" in m for m in view.metrics)
    assert "test_accuracy" in view.metrics                 # other evaluators' stay
    assert condition.instance_view("attributions") is condition


@pytest.mark.parametrize("settings, evaluator_names, field", [
    ({"ig": {"evaluator": "atributions"}}, ("ig",), "evaluation.ig.evaluator"),
    ({"attributions": {"evaluator": "robustness"}}, ("attributions",),
     "evaluation.attributions.evaluator"),
    ({"ig-x": {"evaluator": "attributions"}}, ("ig-x",), "evaluation.ig-x"),
    ({}, ("ig",), "evaluation.evaluators"),
    ({"ig": {"evaluator": "attributions", "ig_stepz": 3}}, ("ig",), "evaluation.ig.ig_stepz"),
    ({"ig": {"evaluator": "attributions", "top_k": 0}}, ("ig",), "evaluation.ig.top_k"),
    ({"ig": {"evaluator": "attributions", "ig_steps": float("nan")}}, ("ig",),
     "evaluation.ig.ig_steps"),
    ({"ig": {"evaluator": "attributions"}}, ("ig", "ig"), "evaluation.evaluators"),
])
def test_a_bad_instance_is_refused_naming_its_field_in_the_library_and_the_config(
        settings, evaluator_names, field):
    with pytest.raises(ConfigError) as library:
        _evaluate(evaluator_names, settings)
    assert library.value.field == field
    config = tiny_config()
    with config.evaluation.unlocked():
        for name, section in settings.items():
            if name in config.evaluation:
                config.evaluation[name].update(section)
            else:
                config.evaluation[name] = ConfigDict(section)
    config.evaluation.evaluators = evaluator_names
    with pytest.raises(ConfigError) as study:
        validate_config(config)
    assert study.value.field == field


def test_an_instance_declared_twice_two_ways_must_agree_on_its_kind():
    named = evaluators.get_evaluator("robustness").named("ig")
    with pytest.raises(ConfigError, match=r"evaluation\.ig\.evaluator"):
        _evaluate((named,), {"ig": {"evaluator": "attributions"}})
    with pytest.raises(ConfigError, match=r"config\.name="):
        evaluators.get_evaluator("robustness").named("two words")
    for taken in ("truth", "evaluators"):  # whose settings section it would read
        with pytest.raises(ConfigError, match=r"config\.evaluation\.evaluators="):
            _evaluate((evaluators.get_evaluator("attributions").named(taken),), {})


def test_instance_section_sets_every_field_so_any_can_be_overridden():
    section = evaluators.instance_section("attributions", attribution_target="label")
    declared = {f.name for f in evaluators.get_evaluator("attributions").fields}
    assert set(section) == declared | {"evaluator"}
    assert section.attribution_target == "label" and section.evaluator == "attributions"
    assert section.ig_steps == 32                          # the declared default
    with pytest.raises(ConfigError):
        evaluators.instance_section("attribution")
    with pytest.raises(ConfigError):
        evaluators.instance_section("attributions", top_k=-1)


def test_a_study_reports_each_instance_in_its_own_section_plots_and_files(tmp_path):
    from negres.reporting import tidy
    from negres.study import experiment, lifecycle

    config = tiny_config()
    config.num_seeds = 2
    config.train.steps = 30
    config.evaluation.evaluators = ("robustness", "attributions", "ig_label", "noise")
    config.evaluation.attributions.update({
        "attribution_methods": ("integrated_gradients",), "attribution_examples": 4,
        "ig_steps": 4,
        "max_sensitivity": False, "randomization_check": False, "save_attributions": 2})
    config.evaluation.ig_label = evaluators.instance_section(
        "attributions", **(config.evaluation.attributions.to_dict()
                           | {"attribution_target": "label"}))
    config.evaluation.noise = evaluators.instance_section(
        "robustness", shifts=("occlusion",), severities=(0.0, 0.3))
    results = experiment.run(config, str(tmp_path))
    condition = results.baseline_results
    assert condition.evaluations["ig_label"].kind == "attributions"
    assert condition.evaluations["noise"].kind == "robustness"
    assert results.statistics.within("noise", results.baseline)  # its shift-vs-clean family
    assert set(condition.saved_by("noise").per_seed["curves"]) == {"occlusion"}
    assert set(condition.saved_by("robustness").per_seed["curves"]) == {"gaussian_noise"}
    report = (tmp_path / "report.md").read_text()
    assert "## Saliency across seeds (`ig_label`, attributions)" in report
    assert "## Robustness under shift (`noise`, robustness)" in report
    # Its plots and saved attributions lie in its own folder, linked from the report.
    instance_plots = sorted((tmp_path / "instances" / "ig_label" / "plots").glob("*.png"))
    assert instance_plots and all(
        f"instances/ig_label/plots/{p.name}" in report for p in instance_plots)
    assert (tmp_path / "instances" / "noise" / "plots").is_dir()
    assert sorted(p.name for p in (tmp_path / "instances" / "ig_label" / "attributions").glob(
        "*.npy")) == sorted(p.name for p in (tmp_path / "attributions").glob("*.npy"))
    # Tidy rows and arrays name the instance.
    arrays = tidy.condition_arrays(condition, tmp_path)
    assert arrays["ig_label/attributions/integrated_gradients"].values.shape[:2] == (2, 2)
    assert "instances/ig_label/attributions/" in str(
        arrays["ig_label/attributions/integrated_gradients"].values.filename)
    assert "instances" not in str(arrays["attributions/integrated_gradients"].values.filename)
    rows = tidy.tidy_rows(results)
    assert {r["evaluator"] for r in rows if r["shift"] == "occlusion"} == {"noise"}
    # Read back from results.json (--report_only), the report is rebuilt the same.
    loaded = lifecycle.rebuild_report(str(tmp_path))
    assert loaded.kind_of("ig_label") == "attributions" and loaded.kind_of("noise")
    assert (tmp_path / "report.md").read_text() == report
