"""The study pipeline: evaluators per seed, conditions sharing a call, statistics and the report."""

import dataclasses
import json

import numpy as np
import pytest
from tests_configs import tiny_config

from negres import evaluators, linen_apply
from negres.measures.agreement import layer_order
from negres.models import build_model
from negres.seeds import take_rows
from negres.study import experiment, lifecycle
from negres.training.builtin import train_seeds
from negres.training.optimizers import build_optimizer


@pytest.fixture(scope="module")
def trained_digits(small_digits):
    config = tiny_config()
    model = build_model(config.model, 10)
    result = train_seeds(model, build_optimizer(config.optimizer), small_digits.x_train,
                         small_digits.y_train, num_seeds=3, steps=60, batch_size=32)
    return config, model, result


def _evaluate(config, model, task, params, seed_indices, names):
    example = task.x_test[:1]
    return evaluators.evaluate(
        linen_apply(model), params, task, evaluators=names,
        settings=config.evaluation,  # each evaluator's section; `evaluators` is ignored
        seed_indices=seed_indices,
        init=lambda key: model.init(key, example, train=False)["params"],
        layers=layer_order(model, example, train=False))


def test_evaluators_give_seed_i_what_seed_i_alone_gets(small_digits, trained_digits):
    config, model, result = trained_digits
    names = ("robustness", "attributions")
    every = _evaluate(config, model, small_digits, result.params, result.seed_indices, names)
    alone = _evaluate(config, model, small_digits, take_rows(result.params, slice(1, 2)),
                      result.seed_indices[1:2], names)
    compared = 0
    for name in names:
        for metric, value in alone[name].metrics.items():
            if value.pairwise:  # agreement is between seeds; alone it has no partner
                continue
            np.testing.assert_allclose(every[name].metrics[metric].values[1], value.values[0],
                                       atol=1e-4, rtol=1e-3)
            compared += 1
    assert compared >= 5
    for method, values in alone["attributions"].passed_on["attributions"].items():
        np.testing.assert_allclose(every["attributions"].passed_on["attributions"][method][1],
                                   values[0], atol=1e-5)


@pytest.fixture
def study(tiny_study):
    return tiny_study


def test_learning_rate_conditions_share_one_compiled_call(study, small_digits):
    _, _, results = study
    conditions = results.conditions
    assert conditions["fast"].trained_in_one_call_with == ["slow"]
    assert conditions["linear"].trained_in_one_call_with == []
    assert conditions["slow"].hyperparams["learning_rate"] == 0.001
    # Slower learning leaves a higher training loss on every seed.
    fast = np.asarray(conditions["fast"].metrics["train_loss"])
    slow = np.asarray(conditions["slow"].metrics["train_loss"])
    assert np.all(slow > fast)


def test_statistics_compare_every_condition_with_the_baseline(study):
    _, _, results = study
    comparisons = results.statistics.comparisons["test_accuracy"]
    assert set(comparisons) == {"slow", "linear"}
    for c in comparisons.values():
        assert c["verdict"] in ("improved", "worse", "inconclusive")
        assert c["adjustment"] == "holm" and c["num_comparisons"] == 2
    summary = results.statistics.summaries["fast"]["test_accuracy"]
    values = results.conditions["fast"].metrics["test_accuracy"]
    assert summary["n"] == len(values) == 3
    assert summary["mean"] == pytest.approx(np.mean(values))


def test_report_and_plots_are_written_and_rebuilt_from_results_alone(study):
    _, workdir, _ = study
    report = (workdir / "report.md").read_text()
    for text in ("## Results per condition", "## Comparisons",
                 "## Robustness under shift", "## Saliency across seeds",
                 "## Prediction multiplicity", "verdict", "inconclusive"):
        assert text in report
    plots = sorted(p.name for p in (workdir / "plots").glob("*.png"))
    assert "test_accuracy_by_condition.png" in plots
    for name in ("fast", "slow", "linear"):
        assert f"learning_curves_{name}.png" in plots and f"robustness_{name}.png" in plots
    for png in (workdir / "plots").glob("*.png"):
        assert png.stat().st_size > 5000
        assert f"]({png.relative_to(workdir)})" in report
    attributions = np.load(workdir / "attributions" / "fast__integrated_gradients.npy")
    assert attributions.shape == (3, 4, 8, 8, 1)
    (workdir / "report.md").unlink()
    lifecycle.rebuild_report(str(workdir))
    assert (workdir / "report.md").read_text() == report
    results = json.loads((workdir / "results.json").read_text())
    assert results["metrics"] == results["conditions"]["fast"]["metrics"]


def test_results_json_round_trips_non_finite_values(tmp_path):
    from negres.files import read_json, write_json_atomic

    write_json_atomic(tmp_path / "r.json", {"a": np.array([1.0, np.nan, np.inf])})
    values = read_json(tmp_path / "r.json")["a"]
    assert values[0] == 1.0 and np.isnan(values[1]) and np.isinf(values[2])


def test_shortcut_diagnostics_run_for_tasks_that_declare_shortcuts(small_digits,
                                                                   trained_digits):
    config, model, result = trained_digits
    # Two corner pixels declared as shortcuts: digits barely use them, so their share is small.
    task = dataclasses.replace(small_digits, shortcut_features=(0, 7))
    out = _evaluate(config, model, task, result.params, result.seed_indices,
                    ("attributions",))["attributions"]
    share = out.metrics["integrated_gradients_shortcut_share"].values
    assert share.shape == (3,) and np.all((share >= 0) & (share < 0.05))
    wrong_reasons = out.metrics["integrated_gradients_right_for_wrong_reasons"].values
    assert wrong_reasons.shape == (3,) and np.all(wrong_reasons == 0.0)


def test_regression_study_end_to_end(tmp_path):
    config = tiny_config()
    config.task.name = "synthetic_regression"
    config.task.num_train = 256
    config.task.num_test = 64
    config.evaluation.attributions.attribution_methods = ("gradient_x_input", "shapley")
    config.evaluation.attributions.shapley_background = 8
    config.evaluation.attributions.max_sensitivity = False
    config.evaluation.attributions.randomization_check = False
    results = experiment.run(config, str(tmp_path))
    metrics = results.baseline_results.metrics
    assert {"test_mse", "gaussian_noise_mean_mse", "shapley_completeness_gap"} <= set(metrics)
    assert "test_ece" not in metrics
    # Exact Shapley values add up to f(x) - E[f(background)].
    assert max(metrics["shapley_completeness_gap"]) < 1e-4
    gap = np.asarray(results.conditions["mlp"].saved_by("robustness").per_seed[
        "curves"]["gaussian_noise"]["gap"])
    assert np.all(gap[:, -1] > 0)  # noise raises the MSE of every seed
    report = (tmp_path / "report.md").read_text()
    assert "test_mse" in report and "## Config" in report
    assert (tmp_path / "plots" / "saliency_mlp_shapley.png").is_file()


@pytest.mark.parametrize("top_k,num_features,expected", [(10, 64, 10), (10, 5, 2), (3, 2, 1)])
def test_top_k_is_capped_so_agreement_is_not_trivial(top_k, num_features, expected):
    from negres.measures.agreement import top_k_used

    assert top_k_used(top_k, num_features) == expected


def test_report_only_refuses_results_of_another_schema_in_one_line(tmp_path):
    from negres.files import write_json_atomic
    from negres.study.workdir import WorkdirError

    write_json_atomic(tmp_path / "results.json",
                      {"schema_version": 1, "config": {}, "conditions": {}})
    with pytest.raises(WorkdirError) as err:
        lifecycle.rebuild_report(str(tmp_path))
    assert "schema version 1" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "report.md").exists()
