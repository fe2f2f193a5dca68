"""The evaluator protocol: every registered evaluator is one module, and a new one is one
file plus one registry line, with its metrics' declared directions deciding their verdicts."""

import importlib
import sys
import textwrap

import numpy as np
import pytest
from tests_configs import tiny_config

from negres import evaluators
from negres.errors import ConfigError
from negres.reporting.sections import PRESENTATIONS
from negres.study import experiment, prepare

MARGIN_MODULE = '''
"""A test's own evaluator: the mean logit margin of each seed, with no better direction."""

import jax
import jax.numpy as jnp
import numpy as np

from negres import fields
from negres.evaluators.protocol import Evaluation, Evaluator, Metric
from negres.reporting.sections import Presentation
from negres.seeds import over_seeds


def evaluate(context):
    x = jnp.asarray(context.task.x_test)

    def margin(p):
        top2 = jax.lax.top_k(context.apply(p, x), 2)[0]
        return context.settings.margin_scale * (top2[:, 0] - top2[:, 1])  # (N,)

    margins = np.asarray(jax.jit(over_seeds(margin))(context.params))  # (S, N)
    return Evaluation(
        metrics={"mean_margin": Metric(margins.mean(axis=1), "none", {"measure": "margin"})},
        per_seed={"margins": margins[:, :5]})


def report(results, names):
    lines = ["## Margins", ""]
    for name in names:
        first = np.asarray(results.conditions[name].saved_by("margin").per_seed["margins"])
        lines.append(f"{name}: {first.shape[0]} seeds, first margin {first[0, 0]:.4f}")
    return lines + [""]


EVALUATOR = Evaluator(
    name="margin",
    fields=(fields.number("margin_scale", 1.0, "margin: a scale", 0.0, low_open=True),),
    evaluate=evaluate,
)
# Its part of the report: the presentation, registered in negres.reporting.sections.
PRESENTATION = Presentation(report=report)
'''


@pytest.mark.parametrize("name", list(evaluators.REGISTRY))
def test_every_registered_evaluator_is_one_module_with_checked_defaults(name):
    evaluator = evaluators.get_evaluator(name)
    assert evaluator.name == name
    assert importlib.import_module(evaluators.REGISTRY[name]).EVALUATOR is evaluator
    for field in evaluator.fields:
        field.check(field.default, "evaluation")  # a default its own range accepts
    for needed in evaluator.requires:
        assert needed in evaluators.REGISTRY


def test_requirements_must_come_first_and_names_must_not_repeat():
    with pytest.raises(ConfigError) as err:
        evaluators.resolve(["truth", "attributions"])
    assert err.value.field == "evaluation.evaluators" and "'attributions'" in str(err.value)
    with pytest.raises(ConfigError):
        evaluators.resolve(["robustness", "robustness"])
    assert [e.name for e in evaluators.resolve(["robustness", "multiplicity"])] == [
        "performance", "robustness", "multiplicity"]


@pytest.fixture
def margin_registered(tmp_path, monkeypatch):
    """A new evaluator: its one file, and its one registry line (and one line in the
    presentations' registry for its part of the report)."""
    (tmp_path / "margin_evaluator.py").write_text(textwrap.dedent(MARGIN_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(evaluators.REGISTRY, "margin", "margin_evaluator")
    monkeypatch.setitem(PRESENTATIONS, "margin", "margin_evaluator")
    yield
    sys.modules.pop("margin_evaluator", None)


def test_a_new_evaluator_is_one_file_and_one_registry_line(margin_registered, tmp_path):
    config = tiny_config()
    config.evaluation.evaluators = ("margin",)
    # Its field is a config field now, in its own section.
    config.evaluation.margin = {"margin_scale": 2.0}
    config.conditions = ({"name": "fast"}, {"name": "slow", "optimizer.learning_rate": 1e-4})
    workdir = tmp_path / "run"
    results = experiment.run(config, str(workdir))
    fast = results.conditions["fast"]
    assert list(fast.evaluations) == ["performance", "margin"]
    assert fast.direction("mean_margin") == "none"
    assert fast.metric_info["mean_margin"].evaluator == "margin"
    assert np.asarray(fast.metrics["mean_margin"]).shape == (3,)
    # Its metric gets statistics like any other, and no improved/worse verdict.
    compared = results.statistics.comparisons["mean_margin"]["slow"]
    assert compared["verdict"] in ("higher", "lower", "inconclusive")
    assert compared["higher_is_better"] is None
    # The declared direction of a built-in metric decides its verdict's wording.
    assert results.statistics.directions["test_loss"] == "lower"
    report = (workdir / "report.md").read_text()
    assert "## Margins" in report and "fast: 3 seeds" in report
    assert "**mean_margin** (no better direction)" in report
    # A bad value of its field is refused before anything runs.
    config.evaluation.margin.margin_scale = float("nan")
    with pytest.raises(ConfigError) as err:
        experiment.run(config, str(tmp_path / "bad"))
    assert err.value.field == "evaluation.margin.margin_scale"
    assert not (tmp_path / "bad").exists()


def test_an_evaluation_without_its_seed_axis_is_refused_when_collected():
    """Seeds are left out generically by their leading axis: an array without it would
    lose the wrong rows, so it is refused with the evaluator and the path named."""
    metric = evaluators.Metric(np.zeros(3), "higher")
    with pytest.raises(ValueError, match=r"'mine'.*per_seed 'a/b'"):
        evaluators.as_results({"mine": evaluators.Evaluation(
            metrics={"m": metric}, per_seed={"a": {"b": np.zeros((2, 4))}})})
    with pytest.raises(ValueError, match=r"pairwise 'missing'"):
        evaluators.as_results({"mine": evaluators.Evaluation(
            metrics={"m": metric._replace(pairwise="missing")})})
    collected = evaluators.as_results({"mine": evaluators.Evaluation(
        metrics={"m": metric}, pairwise={"p": np.eye(3)})})
    assert collected.direction("m") == "higher"
    assert collected.metric_info["m"].evaluator == "mine"
    assert collected.evaluations["mine"].pairwise["p"].shape == (3, 3)
    assert collected.num_seeds == 3 and collected.seed_indices.tolist() == [0, 1, 2]


def test_conditions_of_classification_and_regression_are_refused_together():
    config = tiny_config()
    config.conditions = ({"name": "digits"},
                         {"name": "regression", "task.name": "synthetic_regression"})
    with pytest.raises(ConfigError) as err:
        prepare.prepare_study(config)
    assert err.value.field == "conditions" and "regression" in str(err.value)
