"""Prediction multiplicity: hand-computed churn, majority vote, ambiguity and vote entropy,
the evaluator on hand-made robustness predictions, and its report and plot."""

import json
import math

import numpy as np
import pytest
from ml_collections import ConfigDict

from negres.evaluators.multiplicity import (
    EVALUATOR,
    ambiguity,
    churn_matrix,
    majority_vote,
    mean_churn,
    multiplicity_evaluation,
    vote_entropy,
)
from negres.evaluators.protocol import Evaluation, EvaluationContext
from negres.reporting.sections.multiplicity import PRESENTATION
from negres.results import ConditionResults, Results, StudyStatistics, TaskInfo
from negres.tasks import Task

# Three seeds, four examples: seeds 0 and 1 differ on example 2, seeds 1 and 2 on
# example 0, seeds 0 and 2 on both.
PREDICTIONS = np.array([[0, 1, 1, 2],
                        [0, 1, 2, 2],
                        [1, 1, 2, 2]])
CLEAN_LABELS = np.array([0, 1, 2, 1])
# Two votes against one, in nats.
TWO_TO_ONE = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))


# ------------------------------------------------------------------------ pure functions


def test_churn_matrix_by_hand():
    expected = np.array([[0, 1 / 4, 2 / 4],
                         [1 / 4, 0, 1 / 4],
                         [2 / 4, 1 / 4, 0]])
    np.testing.assert_allclose(churn_matrix(PREDICTIONS), expected)
    np.testing.assert_allclose(mean_churn(expected), [3 / 8, 1 / 4, 3 / 8])


def test_majority_ambiguity_entropy_by_hand():
    majority = majority_vote(PREDICTIONS, 3)
    np.testing.assert_array_equal(majority, [0, 1, 2, 2])
    assert float(ambiguity(PREDICTIONS)) == pytest.approx(2 / 4)  # examples 0 and 2
    np.testing.assert_allclose(vote_entropy(PREDICTIONS, 3), [TWO_TO_ONE, 0, TWO_TO_ONE, 0])
    assert np.mean(majority == CLEAN_LABELS) == pytest.approx(3 / 4)


def test_majority_ties_go_to_the_smallest_class():
    np.testing.assert_array_equal(majority_vote(np.array([[2, 1, 0], [1, 0, 2]]), 3),
                                  [1, 0, 0])
    four = np.array([[3], [3], [1], [1]])
    np.testing.assert_array_equal(majority_vote(four, 4), [1])
    assert vote_entropy(four, 4)[0] == pytest.approx(math.log(2))


def test_one_seed():
    one = np.array([[2, 0, 1]])
    np.testing.assert_array_equal(churn_matrix(one), [[0.0]])
    assert np.isnan(mean_churn(churn_matrix(one))).all()
    assert float(ambiguity(one)) == 0.0
    np.testing.assert_array_equal(majority_vote(one, 3), [2, 0, 1])
    np.testing.assert_array_equal(vote_entropy(one, 3), [0, 0, 0])


def test_properties_on_random_predictions():
    rng = np.random.default_rng(0)
    predictions = rng.integers(0, 4, size=(5, 2, 60))  # (S, K, N)
    churn = churn_matrix(predictions)
    assert churn.shape == (5, 5, 2)
    np.testing.assert_array_equal(churn, churn.transpose(1, 0, 2))
    np.testing.assert_array_equal(churn[np.arange(5), np.arange(5)], 0.0)
    majority = majority_vote(predictions, 4)
    entropy = vote_entropy(predictions, 4)
    for k in range(2):  # batching over levels equals one level at a time
        level = predictions[:, k]
        np.testing.assert_array_equal(churn_matrix(level), churn[:, :, k])
        for i in range(5):
            for j in range(5):
                assert churn[i, j, k] == np.mean(level[i] != level[j])
        counts = np.stack([np.bincount(level[:, n], minlength=4) for n in range(60)])
        np.testing.assert_array_equal(majority[k], counts.argmax(axis=1))
        shares = counts / 5
        expected = -np.sum(np.where(shares > 0, shares * np.log(np.where(shares > 0, shares,
                                                                           1)), 0), axis=1)
        np.testing.assert_allclose(entropy[k], expected, atol=1e-12)
        assert ambiguity(predictions)[k] == np.mean((level != majority[k]).any(axis=0))
    np.testing.assert_allclose(mean_churn(churn),
                               churn.sum(axis=1) / 4)  # the diagonal is 0


def test_bad_predictions_raise():
    with pytest.raises(ValueError, match="outside"):
        majority_vote(np.array([[0, 3]]), 3)
    with pytest.raises(ValueError, match="integer"):
        churn_matrix(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="seeds first"):
        ambiguity(np.array([0, 1]))


# ---------------------------------------------------------------------------- evaluator


def _passed_on() -> dict:
    """What robustness passes on: 3 seeds, 4 examples, two shifts of 2 severities each."""
    noise = np.array([
        [[0, 1, 1, 2], [0, 0, 0, 0]],
        [[0, 1, 1, 2], [1, 1, 1, 1]],
        [[0, 1, 1, 2], [0, 1, 0, 1]],
    ])  # severity 0.1: unanimous; 0.3: churn 1, 1/2, 1/2; majority [0, 1, 0, 1]
    contrast = np.stack([PREDICTIONS, np.array([[0] * 4, [0] * 4, [1] * 4])], axis=1)
    labels = np.array([0, 1, 1, 1])
    return {
        "predictions": {"clean": PREDICTIONS[:, None], "gaussian_noise": noise,
                        "contrast": contrast},
        "labels": {"clean": CLEAN_LABELS[None], "gaussian_noise": np.stack([labels] * 2),
                   "contrast": np.stack([CLEAN_LABELS] * 2)},
        "severities": {"clean": np.zeros(1), "gaussian_noise": np.array([0.1, 0.3]),
                       "contrast": np.array([0.0, 0.2])},
    }


def _context(kind: str = "classification", matrices: bool = True) -> EvaluationContext:
    x = np.zeros((4, 2), np.float32)
    task = Task(name="toy", kind=kind, x_train=x, y_train=CLEAN_LABELS, x_test=x,
                y_test=CLEAN_LABELS, num_outputs=3 if kind == "classification" else 1)
    robustness = Evaluation(passed_on=_passed_on() if kind == "classification" else {})
    return EvaluationContext(
        apply=lambda params, xs: xs, params={}, task=task,
        settings=ConfigDict({"multiplicity_matrices": matrices}),
        seed_keys=np.zeros((3, 2), np.uint32), shared_key=np.zeros(2, np.uint32),
        earlier={"robustness": robustness})


def test_evaluator_declaration():
    assert EVALUATOR.name == "multiplicity"
    assert EVALUATOR.requires == ("robustness",)
    assert [f.name for f in EVALUATOR.fields] == ["multiplicity_matrices"]
    assert EVALUATOR.fields[0].default is True


def test_evaluate_by_hand():
    result = EVALUATOR.evaluate(_context())
    assert set(result.metrics) == {"churn_clean", "gaussian_noise_mean_churn",
                                   "contrast_mean_churn"}
    for name, metric in result.metrics.items():
        assert metric.direction == "lower"
        assert metric.labels["measure"] == "churn"
        assert metric.values.shape == (3,)
        # The saved pairwise matrix the metric's values are the row means of.
        group, leaf = metric.pairwise.split("/")
        matrix = result.pairwise[group][leaf]
        assert matrix.shape == (3, 3)
        np.testing.assert_allclose(mean_churn(matrix), metric.values, err_msg=name)
    churn = result.metrics["churn_clean"]
    assert churn.labels == {"set": "clean", "measure": "churn"}
    assert churn.pairwise == "churn/clean"
    np.testing.assert_allclose(churn.values, [3 / 8, 1 / 4, 3 / 8])
    # Severity 0.1: no churn; 0.3: row means 3/4, 3/4, 1/2; averaged over both.
    np.testing.assert_allclose(result.metrics["gaussian_noise_mean_churn"].values,
                               [3 / 8, 3 / 8, 1 / 4])
    assert result.metrics["gaussian_noise_mean_churn"].labels == {
        "set": "gaussian_noise", "measure": "churn"}
    # Severity 0 is left out of the average: only severity 0.2 counts.
    np.testing.assert_allclose(result.metrics["contrast_mean_churn"].values, [1 / 2, 1 / 2, 1])

    assert result.pairwise["churn"]["clean"].shape == (3, 3)
    assert result.pairwise["churn"]["gaussian_noise"].shape == (3, 3, 2)
    assert result.pairwise["churn"]["contrast"].shape == (3, 3, 2)
    passed = _passed_on()
    for name, predictions in passed["predictions"].items():
        expected = churn_matrix(predictions)
        saved = result.pairwise["churn"][name]
        np.testing.assert_allclose(saved, expected[:, :, 0] if name == "clean" else expected)
        majority = majority_vote(predictions, 3)
        np.testing.assert_allclose(result.per_seed["agrees_with_majority"][name],
                                   (predictions == majority).mean(axis=-1))
        entry = result.shared["sets"][name]
        assert entry["num_seeds"] == 3
        assert entry["severities"] == list(passed["severities"][name])
        np.testing.assert_allclose(entry["ambiguity"], ambiguity(predictions))
        np.testing.assert_allclose(entry["mean_vote_entropy"],
                                   vote_entropy(predictions, 3).mean(axis=-1))
        np.testing.assert_allclose(entry["majority_vote_accuracy"],
                                   (majority == passed["labels"][name]).mean(axis=-1))
    clean = result.shared["sets"]["clean"]
    np.testing.assert_allclose(clean["ambiguity"], [1 / 2])
    np.testing.assert_allclose(clean["majority_vote_accuracy"], [3 / 4])
    np.testing.assert_allclose(clean["mean_seed_accuracy"], [(2 + 3 + 2) / 12])
    np.testing.assert_allclose(result.shared["sets"]["gaussian_noise"]["ambiguity"], [0, 1])
    np.testing.assert_allclose(result.per_seed["agrees_with_majority"]["gaussian_noise"],
                               [[1, 1 / 2], [1, 1 / 2], [1, 1]])
    np.testing.assert_allclose(result.shared["clean_vote_entropy"],
                               [TWO_TO_ONE, 0, TWO_TO_ONE, 0])


def test_evaluate_kept_rows_and_without_matrices():
    passed = _passed_on()
    kept = np.array([True, False, True])
    result = multiplicity_evaluation(
        {k: v[kept] for k, v in passed["predictions"].items()}, passed["labels"],
        passed["severities"], 3, save_matrices=False)
    assert set(result.pairwise["churn"]) == {"clean"}
    np.testing.assert_allclose(result.pairwise["churn"]["clean"], [[0, 1 / 2], [1 / 2, 0]])
    np.testing.assert_allclose(result.metrics["gaussian_noise_mean_churn"].values,
                               [1 / 4, 1 / 4])
    assert result.shared["sets"]["clean"]["num_seeds"] == 2


def test_regression_gives_nothing():
    result = EVALUATOR.evaluate(_context(kind="regression"))
    assert result == Evaluation()


# ---------------------------------------------------------------------- report and plot


def _as_json(value):
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(type(value))


def _results(matrices: bool = True) -> Results:
    conditions = {}
    for name in ("baseline", "wider"):
        evaluation = EVALUATOR.evaluate(_context(matrices=matrices))
        conditions[name] = {
            "metrics": {k: m.values for k, m in evaluation.metrics.items()},
            "evaluations": {"multiplicity": {"per_seed": evaluation.per_seed,
                                             "pairwise": evaluation.pairwise,
                                             "shared": evaluation.shared}}}
    conditions["no_multiplicity"] = {"metrics": {}, "evaluations": {}}
    conditions = json.loads(json.dumps(conditions, default=_as_json))
    return _typed(conditions)


def _typed(conditions: dict) -> Results:
    """Results holding these conditions (as in results.json) and nothing else."""
    return Results(config={}, task=TaskInfo(), baseline=next(iter(conditions)),
                   conditions={n: ConditionResults.from_json(c) for n, c in conditions.items()},
                   statistics=StudyStatistics())


@pytest.mark.parametrize("matrices", [True, False])
def test_report(matrices):
    lines = PRESENTATION.report(_results(matrices), ["baseline", "no_multiplicity"])
    assert lines[0] == "## Prediction multiplicity"
    assert "### baseline (3 seeds, 3 pairs of seeds)" in lines
    assert not any("no_multiplicity" in line for line in lines)
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][:4] == ["set", "severity", "churn (mean ± std over pairs)", "ambiguity"]
    by_level = {(c[0], c[1]): c for c in cells[1:]}
    assert len(by_level) == 5  # clean, 2 severities of each shift
    clean = by_level[("clean", "0")]
    # Pairs churn 1/4, 1/2, 1/4: mean 1/3, std sqrt(1/72); ambiguity 2/4 (by hand).
    assert clean[2] == f"{1 / 3:.4f} ± {math.sqrt(1 / 72):.4f}"
    assert clean[3] == "0.5000"
    assert clean[4] == f"{2 * TWO_TO_ONE / 4:.4f}"
    assert clean[5:] == ["0.7500", f"{7 / 12:.4f}", f"{3 / 4 - 7 / 12:+.4f}"]
    assert by_level[("gaussian noise", "0.1")][3] == "0.0000"
    assert by_level[("gaussian noise", "0.3")][3] == "1.0000"
    assert by_level[("gaussian noise", "0.3")][2].startswith(f"{2 / 3:.4f} ± ")


def test_report_without_results():
    assert PRESENTATION.report(_typed({"a": {"metrics": {}}}), ["a"]) == []


def test_plot(tmp_path):
    made = PRESENTATION.plots(_results(), tmp_path)  # the workdir; plots go to its plots/
    assert len(made) == 1
    caption, path = made[0]
    assert path == "plots/multiplicity_churn.png"
    assert caption
    written = tmp_path / path
    assert written.exists() and written.stat().st_size > 0
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_kept_seed_has_no_pairs():
    passed = _passed_on()
    result = multiplicity_evaluation({k: v[:1] for k, v in passed["predictions"].items()},
                                     passed["labels"], passed["severities"], 3)
    assert all(np.isnan(m.values).all() and m.values.shape == (1,)
               for m in result.metrics.values())
    np.testing.assert_array_equal(result.shared["sets"]["gaussian_noise"]["ambiguity"], [0, 0])


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8])
def test_majority_vote_of_narrow_integer_predictions(dtype):
    """JAX's argmax gives int32: the vote must not wrap a sentinel into a class of -1."""
    predictions = np.array([[8, 9, 8, 4], [8, 3, 7, 0], [8, 9, 3, 0], [9, 9, 7, 0]], dtype)
    np.testing.assert_array_equal(majority_vote(predictions, 10), [8, 9, 7, 0])
