"""The evaluators behind the documented studies, against closed forms and references."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

import negres
from negres import evaluators
from negres.errors import ArgumentError, ConfigError
from negres.evaluators.subsets import subset_scores
from negres.evaluators.truth import true_contributions
from negres.measures import saliency
from negres.models import Linear
from negres.results import ConditionResults, MetricInfo, Saved
from negres.statistics import study as analysis
from negres.study.conditions import references_of
from negres.tasks import load_task
from negres.training import builtin as engine

COEFFICIENTS = np.array([3.0, 2.0, -1.5, 0.0, 0.0])


class TrueFunction(nn.Module):
    """``f(x) = c . x + a x0 x1`` exactly; ``scale`` is a parameter so params are a pytree."""

    interaction: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, ())
        f = x @ jnp.asarray(COEFFICIENTS, x.dtype) + self.interaction * x[:, 0] * x[:, 1]
        return (scale * f)[:, None]


@pytest.fixture(scope="module", params=[0.0, 2.0])
def true_world(request):
    interaction = request.param
    task = load_task(ConfigDict({"name": "synthetic_regression", "num_train": 64,
                                 "num_test": 40, "interaction": interaction}))
    model = TrueFunction(interaction)
    params = jax.tree.map(lambda v: jnp.stack([v, v]),
                          model.init(jax.random.PRNGKey(0), task.x_test[:1])["params"])
    return interaction, task, model, params


def test_true_contributions_split_each_product_evenly_and_sum_to_f():
    x = np.array([[1.0, 2.0, 3.0, 0.5, -1.0]])
    phi = true_contributions(x, COEFFICIENTS, {"x0*x1": (0, 1, 2.0)})
    np.testing.assert_allclose(phi[0], [3.0 + 2.0, 4.0 + 2.0, -4.5, 0.0, 0.0])
    f = x @ COEFFICIENTS + 2.0 * x[:, 0] * x[:, 1]
    np.testing.assert_allclose(phi.sum(axis=1), f)


def test_truth_evaluator_on_the_true_function_recovers_the_truth(true_world):
    interaction, task, model, params = true_world
    apply_fn = negres.linen_apply(model)
    x = jnp.asarray(task.x_test)
    attributions = {
        m: np.asarray(jnp.stack([saliency.attribute(m, apply_fn, jax.tree.map(lambda v: v[0],
                                                                               params), x, 0)] * 2))
        for m in ("gradient_x_input", "integrated_gradients", "shapley", "gradient")
    }
    # truth declares no fields: what it needs comes from what attributions passed on.
    context = evaluators.EvaluationContext(
        apply=apply_fn, params=params, task=task, settings=ConfigDict(),
        seed_keys=jax.random.split(jax.random.PRNGKey(0), 2), shared_key=jax.random.PRNGKey(1),
        earlier={"attributions": evaluators.Evaluation(
            passed_on={"attributions": attributions, "examples": task.num_test,
                       "shapley_background": 0})})
    out = evaluators.get_evaluator("truth").evaluate(context)
    metrics = {name: metric.values for name, metric in out.metrics.items()}
    # Shapley values and IG (exact for a quadratic with the midpoint rule) equal the truth.
    np.testing.assert_allclose(metrics["shapley_truth_error"], 0.0, atol=1e-5)
    np.testing.assert_allclose(metrics["integrated_gradients_truth_error"], 0.0, atol=1e-4)
    # Gradient x input counts the product twice: its error is |a x0 x1| / sum |phi|.
    x64 = task.x_test.astype(np.float64)
    phi = true_contributions(x64, COEFFICIENTS, {"x0*x1": (0, 1, interaction)})
    expected = (np.abs(interaction * x64[:, 0] * x64[:, 1]) / np.abs(phi).sum(1)).mean()
    np.testing.assert_allclose(metrics["gradient_x_input_truth_error"], expected, rtol=1e-4,
                               atol=1e-6)
    assert "gradient_truth_error" not in metrics  # a slope, not comparable with phi
    # x0's and x1's Shapley values each hold half the product: a share of |a x0 x1| of the
    # attribution mass depends on the other feature (none without the interaction).
    expected = np.abs(interaction * x64[:, 0] * x64[:, 1]).sum() / np.abs(phi).sum()
    np.testing.assert_allclose(metrics["shapley_non_additivity"], expected, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(out.shared["true_non_additivity"], expected, rtol=1e-6)
    assert (expected > 0.1) == (interaction != 0)
    np.testing.assert_allclose(metrics["interaction_x0*x1_mixed_partial"], interaction,
                               atol=1e-4)
    np.testing.assert_allclose(metrics["interaction_x0*x2_mixed_partial"], 0.0, atol=1e-4)
    np.testing.assert_allclose(metrics["interaction_x0*x1_shapley_error"], 0.0, atol=1e-4)
    assert out.shared["interactions"]["x0*x1"]["mixed_partial"] == interaction
    # The truth of a mixed partial is a value, not an end: it has no better direction.
    assert out.metrics["interaction_x0*x1_mixed_partial"].direction == "none"
    assert out.metrics["shapley_truth_error"].direction == "lower"


def test_subset_scores_match_a_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    masks = rng.random((2, 50)) < 0.4
    out = subset_scores(jnp.asarray(logits), jnp.asarray(y), jnp.asarray(masks), "classification")
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    for i, mask in enumerate(masks):
        np.testing.assert_allclose(out["accuracy"][i], (logits.argmax(1) == y)[mask].mean(),
                                   rtol=1e-6)
        np.testing.assert_allclose(out["loss"][i], -log_p[mask, y[mask]].mean(), rtol=1e-5)
        assert out["count"][i] == mask.sum()


def test_subsets_evaluator_gives_every_seed_its_own_subset_accuracy():
    task = load_task(ConfigDict({"name": "rule_shortcut", "num_train": 200, "num_test": 300}))
    model = Linear(num_outputs=2)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = jax.vmap(lambda k: model.init(k, task.x_test[:1])["params"])(keys)
    out = evaluators.evaluate(negres.linen_apply(model), params, task,
                              evaluators=("subsets",))["subsets"]
    conflicts = task.test_subsets["shortcut_conflicts"]
    for s in range(3):
        p = jax.tree.map(lambda v, _s=s: v[_s], params)
        predictions = np.asarray(model.apply({"params": p}, task.x_test)).argmax(1)
        np.testing.assert_allclose(
            out.metrics["subset_shortcut_conflicts_accuracy"].values[s],
            (predictions == task.y_test)[conflicts].mean(), rtol=1e-6)
    assert out.shared["sizes"]["shortcut_conflicts"] == conflicts.sum()
    assert out.metrics["subset_shortcut_conflicts_accuracy"].direction == "higher"
    assert not any("class" in name for name in out.metrics)  # per_class is off by default


def test_per_class_subset_accuracy_is_each_row_of_the_subsets_confusion_matrix():
    task = load_task(ConfigDict({"name": "rule_shortcut", "num_train": 200, "num_test": 300}))
    model = Linear(num_outputs=2)
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    params = jax.vmap(lambda k: model.init(k, task.x_test[:1])["params"])(keys)
    out = evaluators.evaluate(negres.linen_apply(model), params, task, evaluators=("subsets",),
                              settings={"subsets": {"per_class": True}})["subsets"]
    for name, mask in task.test_subsets.items():
        for s in range(3):
            p = jax.tree.map(lambda v, _s=s: v[_s], params)
            predictions = np.asarray(model.apply({"params": p}, task.x_test)).argmax(1)
            confusion = np.zeros((2, 2))
            np.add.at(confusion, (task.y_test[mask], predictions[mask]), 1)
            for k in range(2):
                metric = out.metrics[f"subset_{name}_class{k}_accuracy"]
                np.testing.assert_allclose(metric.values[s],
                                           confusion[k, k] / confusion[k].sum(), rtol=1e-6)
                assert metric.labels == {"subset": name, "class": str(k), "measure": "accuracy"}
                assert out.per_seed["per_example"][f"subset_{name}_class{k}_accuracy"].shape[1] \
                    == confusion[k].sum() == out.shared["sizes"][f"{name}/class{k}"]


def _config(conditions, baseline=""):
    return ConfigDict({"model": {"name": "mlp"}, "conditions": conditions,
                       "baseline": baseline})


def test_references_follow_compared_with_and_default_to_the_baseline():
    config = _config(({"name": "a/lin"}, {"name": "a/mlp", "compared_with": "a/lin"},
                      {"name": "b/lin"}, {"name": "b/mlp", "compared_with": "b/lin"},
                      {"name": "c"}), baseline="a/lin")
    assert references_of(config, "a/lin") == {
        "a/lin": None, "a/mlp": "a/lin", "b/lin": None, "b/mlp": "b/lin", "c": "a/lin"}


@pytest.mark.parametrize("reference", ["nope", "self"])
def test_a_bad_compared_with_names_the_field(reference):
    config = _config(({"name": "a"}, {"name": "self", "compared_with": reference}))
    with pytest.raises(ConfigError) as err:
        references_of(config, "a")
    assert err.value.field == "conditions['self'].compared_with"


def test_a_bad_compared_with_stops_a_study_before_anything_is_trained(tmp_path):
    from tests_configs import tiny_config

    from negres.study import experiment

    config = tiny_config()
    config.conditions = ({"name": "a"}, {"name": "b", "compared_with": "nope"})
    workdir = tmp_path / "w"
    with pytest.raises(ConfigError) as err:
        experiment.run(config, str(workdir))
    assert err.value.field == "conditions['b'].compared_with"
    assert not workdir.exists()


def test_comparisons_use_each_conditions_reference():
    rng = np.random.default_rng(0)
    conditions = {
        name: _with_directions({"acc": rng.normal(mean, 0.01, 8)}, {"acc": "higher"})
        for name, mean in (("a/lin", 0.5), ("a/mlp", 0.9), ("b/lin", 0.1), ("b/mlp", 0.1))}
    references = {"a/lin": None, "a/mlp": "a/lin", "b/lin": None, "b/mlp": "b/lin"}
    out = analysis.analyze(conditions, "a/lin", num_resamples=500, num_permutations=500,
                           references=references)
    family = out.comparisons["acc"]
    assert set(family) == {"a/mlp", "b/mlp"}
    assert family["a/mlp"]["reference"] == "a/lin" and family["a/mlp"]["verdict"] == "improved"
    assert family["b/mlp"]["reference"] == "b/lin"
    np.testing.assert_allclose(family["b/mlp"]["difference"],
                               conditions["b/mlp"].metrics["acc"].mean()
                               - conditions["b/lin"].metrics["acc"].mean())


def _with_directions(metrics, directions, **extra):
    return ConditionResults(
        seed_indices=np.arange(len(next(iter(metrics.values())))), metrics=metrics,
        metric_info={m: MetricInfo(direction=directions[m], evaluator="x") for m in metrics},
        **extra)


@pytest.mark.parametrize("direction,verdict", [("higher", "improved"), ("lower", "worse"),
                                               ("none", "higher")])
def test_a_verdict_follows_the_declared_direction_and_none_gets_no_verdict(direction, verdict):
    """The same clear increase is improved, worse, or merely "higher": the name of the
    metric (here one that sounds like a loss) plays no part."""
    rng = np.random.default_rng(2)
    base = rng.normal(0.5, 0.01, 10)
    conditions = {
        "a": _with_directions({"some_loss": base}, {"some_loss": direction}),
        "b": _with_directions({"some_loss": base + 0.2}, {"some_loss": direction}),
    }
    out = analysis.analyze(conditions, "a", num_resamples=500, num_permutations=500)
    compared = out.comparisons["some_loss"]["b"]
    assert compared["verdict"] == verdict
    assert out.directions["some_loss"] == direction
    if direction == "none":
        assert compared["higher_is_better"] is None and np.isnan(compared["prob_improvement"])


def test_an_undeclared_metric_gets_no_verdict():
    rng = np.random.default_rng(3)
    conditions = {
        "a": ConditionResults(seed_indices=np.arange(8), metrics={"m": rng.normal(0, 1e-3, 8)}),
        "b": ConditionResults(seed_indices=np.arange(8), metrics={"m": rng.normal(1, 1e-3, 8)})}
    out = analysis.analyze(conditions, "a", num_resamples=500, num_permutations=500)
    assert out.comparisons["m"]["b"]["verdict"] == "higher"


def test_methods_are_compared_paired_within_a_condition_by_their_labels():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.05, 10)
    metrics = {"first": base, "second": base - 0.2 + rng.normal(0, 0.001, 10)}
    result = ConditionResults(
        seed_indices=np.arange(10), metrics=metrics, evaluations={"attributions": Saved()},
        metric_info={name: MetricInfo(direction="higher", evaluator="attributions",
                                      labels={"method": method,
                                              "measure": "agreement_spearman_abs"})
                     for name, method in (("first", "ig"), ("second", "grad"))})
    out = analysis.analyze({"c": result}, "c", num_resamples=500, num_permutations=500)
    compared = out.within("attributions", "c")["agreement_spearman_abs"]["grad"]
    assert compared["verdict"] == "worse" and compared["paired"]
    assert compared["reference"] == "ig"
    np.testing.assert_allclose(compared["difference"], -0.2, atol=0.002)


@pytest.fixture(scope="module")
def small_task(small_digits):
    return dataclasses.replace(small_digits, x_train=small_digits.x_train[:200],
                               y_train=small_digits.y_train[:200])


def test_input_noise_is_per_seed_and_seed_i_alone_equals_seed_i_of_many(small_task):
    model = Linear(num_outputs=10)
    common = dict(steps=20, batch_size=16, seed=3)
    many = engine.train_seeds(model, optax.sgd(0.1), small_task.x_train, small_task.y_train,
                              num_seeds=3, input_noise=0.5, **common)
    alone = engine.train_seeds(model, optax.sgd(0.1), small_task.x_train, small_task.y_train,
                               seed_indices=[2], input_noise=0.5, **common)
    clean = engine.train_seeds(model, optax.sgd(0.1), small_task.x_train, small_task.y_train,
                               seed_indices=[2], **common)
    for a, b, c in zip(jax.tree.leaves(many.params), jax.tree.leaves(alone.params),
                       jax.tree.leaves(clean.params), strict=True):
        np.testing.assert_allclose(np.asarray(a)[2], np.asarray(b)[0], atol=1e-5)
        assert np.abs(np.asarray(b) - np.asarray(c)).max() > 1e-3  # the noise did something


@pytest.mark.parametrize("value", [-0.1, float("inf"), True, "0.1"])
def test_bad_input_noise_names_the_field(value):
    with pytest.raises(ArgumentError) as err:
        engine.check_input_noise(value)
    assert err.value.field == "input_noise"


def test_a_shifts_score_on_each_test_subset_against_a_numpy_reference():
    """Rule compliance under a distortion: the mean over a shift's non-zero severities of
    each example's correctness, averaged over a test subset (covariate_scale draws no
    noise, so the reference recomputes it exactly)."""
    task = load_task(ConfigDict({"name": "rule_shortcut", "num_train": 200, "num_test": 300}))
    model = Linear(num_outputs=2)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    params = jax.vmap(lambda k: model.init(k, task.x_test[:1])["params"])(keys)
    severities = (0.0, 0.5, 1.0)
    settings = {"robustness": {"shifts": ("covariate_scale",), "severities": severities,
                               "per_subset": True}}
    out = evaluators.evaluate(negres.linen_apply(model), params, task,
                              evaluators=("robustness",), settings=settings)["robustness"]
    for s in range(3):
        p = jax.tree.map(lambda v, _s=s: v[_s], params)
        correct = np.mean([
            np.asarray(model.apply({"params": p}, task.x_test * (1 + v) + v)).argmax(1)
            == task.y_test for v in severities[1:]], axis=0)
        for name, mask in task.test_subsets.items():
            metric = out.metrics[f"covariate_scale_{name}_mean_accuracy"]
            np.testing.assert_allclose(metric.values[s], correct[mask].mean(), rtol=1e-6)
            assert metric.labels["subset"] == name and metric.direction == "higher"
    off = evaluators.evaluate(negres.linen_apply(model), params, task,
                              evaluators=("robustness",),
                              settings={"robustness": {**settings["robustness"],
                                                       "per_subset": False}})["robustness"]
    assert not any("shortcut" in name for name in off.metrics)
