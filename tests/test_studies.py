"""Every documented study, end to end at toy size: config -> training -> report with its finding."""

import re

import numpy as np
import pytest
from tests_configs import load_config

from negres.reporting import findings
from negres.reporting import write as report
from negres.results import ConditionResults, Results, StudyStatistics, TaskInfo
from negres.study import experiment
from negres.study.conditions import expand_conditions
from negres.tasks import TASKS, load_task


def config_of(config, name):
    return dict(expand_conditions(config)[0])[name]

FINDING = re.compile(r"^(Reproduces|Partly reproduces|Does not reproduce)\b")
SEEDS = 3


def toy(config, keep=None):
    """``config`` at toy size; ``keep`` filters its conditions by name."""
    config.num_seeds = SEEDS
    config.train.steps = 40
    config.train.eval_every = 20
    config.train.batch_size = 32
    evaluation = config.evaluation.attributions
    evaluation.attribution_examples = 8
    evaluation.save_attributions = 4
    evaluation.ig_steps = 8
    evaluation.smoothgrad_samples = 4
    evaluation.sensitivity_samples = 2
    config.stats.num_resamples = 200
    config.stats.num_permutations = 200
    if keep is not None:
        config.conditions = tuple(c for c in config.conditions if keep(c["name"]))
    return config


def additive_attributions():
    config = toy(load_config("additive_attributions"))
    config.task.num_train, config.task.num_test = 200, 100
    return config


def rule_shortcut():
    config = toy(load_config("rule_shortcut"))
    config.task.num_train, config.task.num_test = 300, 200
    # Enough to hold some conflicting examples.
    config.evaluation.attributions.attribution_examples = 40
    return config


def rule_shortcut_image():
    return toy(load_config("rule_shortcut", "image"))


def shape_color():
    config = toy(load_config("shape_color"),
                 keep=lambda name: name in ("shape/full", "shape/no_attention", "color/full"))
    config.task.num_train, config.task.num_test = 300, 160
    return config


def saliency_stability():
    config = toy(load_config("saliency_stability"),
                 keep=lambda name: name in ("clean", "input_noise"))
    config.task.num_samples = 1000
    config.model.channels = (8, 8, 8)
    config.evaluation.attributions.attribution_methods = ("gradient", "smoothgrad")
    return config


def capacity_tradeoff():
    config = toy(load_config("capacity_tradeoff"),
                 keep=lambda name: name.split("/")[1] in ("linear", "mlp_16", "mlp_32", "cnn"))
    config.task.num_samples = 1000
    return config


# study -> (config at toy size, per-seed metrics of its baseline that its finding rests on)
STUDIES = {
    "additive_attributions": (additive_attributions, [
        "shapley_truth_error", "gradient_x_input_truth_error", "interaction_x0*x1_mixed_partial",
        "interaction_x0*x1_shapley_error", "gaussian_noise_mean_mse"]),
    "rule_shortcut": (rule_shortcut, [
        "subset_shortcut_conflicts_accuracy", "shortcut_reversal_mean_accuracy",
        "integrated_gradients_shortcut_share", "integrated_gradients_right_for_wrong_reasons"]),
    "rule_shortcut_image": (rule_shortcut_image, [
        "subset_shortcut_conflicts_accuracy", "patch_shuffle_mean_accuracy",
        "integrated_gradients_shortcut_share"]),
    "shape_color": (shape_color, [
        "subset_held_out_combinations_accuracy", "subset_seen_combinations_accuracy",
        "channel_shift_mean_accuracy"]),
    "saliency_stability": (saliency_stability, [
        f"{m}_{measure}" for m in ("gradient", "smoothgrad")
        for measure in ("agreement_spearman_abs", "max_sensitivity", "randomization_spearman")]),
    "capacity_tradeoff": (capacity_tradeoff, [
        "linear_surrogate_fidelity", "integrated_gradients_sparsity",
        "integrated_gradients_agreement_spearman_abs"]),
}


@pytest.mark.parametrize("study", list(STUDIES))
def test_study_runs_end_to_end_and_states_its_finding(study, tmp_path):
    make, metrics = STUDIES[study]
    config = make()
    results = experiment.run(config, str(tmp_path))
    assert config.finding in findings.FINDINGS
    assert FINDING.match(results.finding), results.finding
    assert "nan" not in results.finding, results.finding
    report_text = (tmp_path / "report.md").read_text()
    assert f"**Finding.** {results.finding}" in report_text
    baseline = results.baseline_results
    for metric in metrics:
        values = np.asarray(baseline.metrics[metric], dtype=float)
        assert values.shape == (SEEDS,), metric
    for line in report_text.splitlines():
        if line.startswith("!["):
            path = tmp_path / line.split("](")[1].rstrip(")")
            assert path.is_file() and path.stat().st_size > 1000, path
    # Each condition's saliency plot is drawn from its own inputs (conditions may differ in
    # task or target).
    for name in results.conditions:
        prefix = report.safe_name(name)
        labels = np.load(tmp_path / "attributions" / f"{prefix}__labels.npy")
        np.testing.assert_array_equal(labels, load_task(
            config_of(config, name).task, others=TASKS).y_test[:labels.size])
        assert f"plots/saliency_{prefix}_" in "\n".join(report_text.splitlines())
    if study == "capacity_tradeoff":  # three models on MNIST-1D: a frontier per proxy
        assert "plots/frontier_mnist1d_linear_surrogate_fidelity.png" in report_text
    # Every non-baseline condition is compared with its declared reference.
    references = results.statistics.settings["references"]
    for family in results.statistics.comparisons.values():
        for name, comparison in family.items():
            assert comparison["reference"] == references[name]


def test_a_finding_whose_conditions_were_removed_says_so():
    results = Results(config={"finding": "rule_shortcut"}, task=TaskInfo(), baseline="",
                      conditions={}, statistics=StudyStatistics())
    text = findings.finding_of(results)
    assert text.startswith("Not stated: finding 'rule_shortcut' needs")


def _rule_results(conflict_accuracy: float, reversed_accuracy: float) -> Results:
    """Results of a rule/shortcut study with the given shortcut-world numbers, 12 seeds."""
    from negres.statistics.study import analyze

    rng = np.random.default_rng(0)

    def noisy(value):
        return np.clip(value + rng.normal(0, 0.005, 12), 0, 1)

    conditions = {}
    for name, conflicts, reversed_ in (("shortcut", conflict_accuracy, reversed_accuracy),
                                       ("control", 0.97, 0.97)):
        conditions[name] = ConditionResults.from_json({
            "num_seeds": 12, "seed_indices": np.arange(12),
            "metrics": {"test_accuracy": noisy(0.98),
                        "subset_shortcut_conflicts_accuracy": noisy(conflicts)},
            "metric_info": {
                "test_accuracy": {"direction": "higher", "evaluator": "performance"},
                "subset_shortcut_conflicts_accuracy": {"direction": "higher",
                                                       "evaluator": "subsets"}},
            "evaluations": {
                "subsets": {"shared": {"sizes": {"shortcut_conflicts": 50}}},
                "robustness": {
                    "per_seed": {"curves": {"shortcut_reversal": {
                        "accuracy": np.stack([noisy(0.98), noisy(reversed_)], 1)}}},
                    "shared": {"severities": {"shortcut_reversal": [0.0, 1.0]}}}},
        })
    statistics = analyze(conditions, "shortcut", num_resamples=500, num_permutations=500)
    return Results(config={"finding": "rule_shortcut", "task": {"shortcut_agreement": 0.95}},
                   task=TaskInfo(), baseline="shortcut", conditions=conditions,
                   statistics=statistics)


@pytest.mark.parametrize("conflicts,reversed_,claim", [
    (0.40, 0.45, "Reproduces:"),          # the rule is dropped where the shortcut disagrees
    (0.94, 0.87, "Partly reproduces:"),   # the rule mostly holds, reversal still costs
    (0.97, 0.98, "Does not reproduce:"),  # no trace of the shortcut
])
def test_rule_shortcut_finding_follows_the_evidence(conflicts, reversed_, claim):
    text = findings.finding_of(_rule_results(conflicts, reversed_))
    assert text.startswith(claim), text
    assert f"{conflicts:.2f}"[:3] in text  # the deciding number is quoted
