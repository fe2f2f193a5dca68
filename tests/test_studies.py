"""Every documented study, end to end at toy size: config -> training -> report with the
verdicts of its claims; and each study's claims, fed constructed results, come out
"reproduces", "does not reproduce" and "inconclusive"."""

import re

import numpy as np
import pytest
from tests_configs import load_config

from negres.errors import ConfigError
from negres.reporting import write as report
from negres.results import ConditionResults, MetricInfo, Saved
from negres.statistics import claims as claims_module
from negres.statistics.claims import FAILS, INCONCLUSIVE, REPRODUCES, Claim
from negres.study import experiment
from negres.study.conditions import expand_conditions
from negres.tasks import TASKS, load_task


def config_of(config, name):
    return dict(expand_conditions(config)[0])[name]

FINDING = re.compile(
    r"^(Reproduces|Partly reproduces|Does not reproduce|Inconclusive|Not tested)\b")
SEEDS = 3


def toy(config, keep=None):
    """``config`` at toy size; ``keep`` filters its conditions by name."""
    config.num_seeds = SEEDS
    config.train.steps = 40
    config.train.eval_every = 20
    config.train.batch_size = 32
    for name, section in config.evaluation.items():  # attributions and its instances
        if name == "attributions" or (hasattr(section, "get")
                                      and section.get("evaluator") == "attributions"):
            section.attribution_examples = 8
            section.save_attributions = 4
            section.ig_steps = 8
            section.smoothgrad_samples = 4
            section.sensitivity_samples = 2
    config.stats.num_resamples = 200
    config.stats.num_permutations = 200
    if keep is not None:
        config.conditions = tuple(c for c in config.conditions if keep(c["name"]))
        config.claims = _claims_within(config.claims, {c["name"] for c in config.conditions})
    return config


def _claims_within(claims, kept):
    """The claims (a grid claim at its points) whose conditions are all ``kept``."""
    out = []
    for entry in claims:
        claim = Claim.from_config(entry)
        points = [p for p in claim.points or ("",)
                  if {c for c in claim.at(p) if c is not None} <= kept]
        if points and claim.points:
            out.append(dict(entry, points=tuple(points)))
        elif points:
            out.append(dict(entry))
    return tuple(out)



def additive_attributions():
    config = toy(load_config("additive_attributions"))
    config.task.num_train, config.task.num_test = 200, 100
    # The document's conditions set their own steps (its 500 epochs): toy ones here too.
    config.conditions = tuple(dict(c, **{"train.steps": 40}) if "train.steps" in c else c
                              for c in config.conditions)
    # Four conditions x five methods: the randomisation check (no claim of this study reads
    # it) would compile a cascade for each.
    config.evaluation.attributions.randomization_check = False
    return config


def rule_shortcut():
    # Two of the four grid points: each claim is still judged over a grid.
    config = toy(load_config("rule_shortcut"), keep=lambda name: name.startswith("lr0.01_"))
    config.task.num_train, config.task.num_test = 300, 200
    # Enough to hold some conflicting examples.
    config.evaluation.attributions.attribution_examples = 40
    return config


def rule_shortcut_image():
    return toy(load_config("rule_shortcut", "image"),
               keep=lambda name: name.startswith("lr0.01_wd0/"))


def shape_color():
    config = toy(load_config("shape_color"),
                 keep=lambda name: name in ("shape/full", "color/full"))
    config.task.num_train, config.task.num_test = 300, 160
    return config


def saliency_stability():
    config = toy(load_config("saliency_stability"),
                 keep=lambda name: name in ("clean", "input_noise"))
    config.task.num_samples = 1000
    config.model.channels = (8, 8, 8)
    config.evaluation.attributions.attribution_methods = ("gradient", "integrated_gradients")
    config.claims = tuple(c for c in config.claims if "smoothgrad" not in c["metric"])
    return config


def capacity_tradeoff():
    config = toy(load_config("capacity_tradeoff"),
                 keep=lambda name: name.split("/")[1] in ("linear", "mlp_32", "mlp_256x3"))
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
        f"{m}_{measure}" for m in ("gradient", "integrated_gradients")
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
    assert config.claims and len(results.statistics.claims) == len(config.claims)
    assert FINDING.match(results.finding), results.finding
    for record in results.statistics.claims:
        assert record["verdict"] in (REPRODUCES, FAILS, INCONCLUSIVE), record
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


def test_a_claim_naming_a_condition_the_study_lacks_is_refused_before_training(tmp_path):
    config = rule_shortcut()
    config.conditions = tuple(c for c in config.conditions if c["name"] != "lr0.01_wd0/control")
    with pytest.raises(ConfigError, match=r"claims\[\d+\]\.condition='lr0.01_wd0/control'"):
        experiment.run(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def _constructed(claim: Claim, outcome: str, seeds: int = 12) -> dict[str, ConditionResults]:
    """Conditions whose numbers make ``claim`` come out ``outcome`` at every grid point: its
    effect far beyond its margin, far short of it, or on it with a wide spread."""
    rng = np.random.default_rng(0)
    sign = 1.0 if claim.direction == "higher" else -1.0
    beyond = outcome == REPRODUCES if claim.asserts == "beyond" else outcome == FAILS
    effect = (claim.margin + 0.3 if beyond else claim.margin - 0.3
              if outcome != INCONCLUSIVE else claim.margin)
    spread = 0.3 if outcome == INCONCLUSIVE else 0.01
    reference = 0.5 if claim.versus_value is None else claim.versus_value

    def condition(**metrics) -> ConditionResults:
        values = {m: np.asarray(v, float) for m, v in metrics.items()}
        return ConditionResults(
            metrics=values, evaluations={"e": Saved()}, seed_indices=np.arange(seeds),
            num_seeds=seeds, metric_info={m: MetricInfo(direction="none", evaluator="e")
                                          for m in values})

    out: dict[str, ConditionResults] = {}
    for point in claim.points or ("",):
        name, versus = claim.at(point)
        base = reference + rng.normal(0, 0.01, seeds)
        value = base + sign * effect + rng.normal(0, spread, seeds)
        if claim.versus_metric is not None:
            out[name] = condition(**{claim.metric: value, claim.versus_metric: base})
        else:
            out[name] = condition(**{claim.metric: value})
        if versus is not None:
            out[versus] = condition(**{claim.metric: base})
    return out


STUDY_CLAIMS = [(name, arg, i) for name, arg in (
    ("additive_attributions", None), ("rule_shortcut", None), ("rule_shortcut", "image"),
    ("shape_color", None), ("saliency_stability", None), ("capacity_tradeoff", None))
    for i in range(len(load_config(name, arg).claims))]


@pytest.mark.parametrize("study, variant, index", STUDY_CLAIMS)
def test_no_study_s_claim_is_fixed_by_its_code(study, variant, index):
    # Every claim of every study comes out each way on numbers built to decide it, and
    # its sentence quotes the deciding number.
    claim = Claim.from_config(load_config(study, variant).claims[index])
    for outcome in (REPRODUCES, FAILS, INCONCLUSIVE):
        record = claims_module.judge([claim], _constructed(claim, outcome),
                                     num_resamples=300)[0]
        assert record["verdict"] == outcome, (claim.name, outcome, record["points"])
        sentence = claims_module.claim_sentence(record)
        assert f"{record['points'][0]['estimate']:.3f}" in sentence
        assert claims_module.overall([record]) == ({
            REPRODUCES: "Reproduces", FAILS: "Does not reproduce",
            INCONCLUSIVE: "Inconclusive"}[outcome] if claim.role == "claim" else
            "Inconclusive" if outcome == REPRODUCES else "Not tested (a premise is not shown)")


def test_claims_compute_nothing_so_a_study_may_declare_them_anew_when_extended():
    from negres.study.prepare import what_is_computed

    with_claims = load_config("rule_shortcut").to_dict()
    without = dict(with_claims, claims=(), finding="rule_shortcut")  # a config.json of before
    assert what_is_computed(with_claims) == what_is_computed(without)
    other = dict(with_claims, num_seeds=3)
    assert what_is_computed(with_claims) != what_is_computed(other)
