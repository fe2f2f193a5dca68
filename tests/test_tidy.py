"""The tidy table (metrics.csv, metrics.parquet) and negres.reporting.tidy.load_results,
against the results.json of one tiny study."""

import csv
import json
import math
import shutil
import sys

import numpy as np
import pytest

from negres.reporting import sections, tidy
from negres.reporting.sections import Presentation, saved_sweeps
from negres.results import ConditionResults, Results, StudyStatistics, TaskInfo
from negres.study.workdir import WorkdirError


@pytest.fixture(scope="module")
def study(tiny_study):
    """The shared toy study (three conditions, every default evaluator), its tidy files
    written again here."""
    _, workdir, _ = tiny_study
    # Compared with what was written, not with what run() returned.
    results = json.loads((workdir / "results.json").read_text())
    written = tidy.write_tidy(Results.from_json(results), workdir)
    return workdir, results, written


def expected_row_count(results):
    """One row per metric and seed, plus one per seed, shift, severity and measure."""
    count = 0
    for condition in results["conditions"].values():
        count += sum(len(v) for v in condition["metrics"].values())
        robustness = condition["evaluations"]["robustness"]
        for shift, measures in robustness["per_seed"]["curves"].items():
            levels = len(robustness["shared"]["severities"][shift])
            count += sum(len(v) * levels for v in measures.values())
    return count


def accuracy_by_seed(rows, condition):
    return {int(r["seed"]): float(r["value"]) for r in rows
            if r["condition"] == condition and r["metric"] == "test_accuracy"}


def test_table_and_files_hold_every_seed_exactly(study):
    workdir, results, written = study
    assert [p.name for p in written] == ["metrics.csv", "metrics.parquet"]
    rows = tidy.tidy_rows(Results.from_json(results))
    assert rows and all(tuple(r) == tidy.COLUMNS for r in rows)
    assert len(rows) == expected_row_count(results)
    with open(workdir / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == tidy.COLUMNS
        from_csv = list(reader)
    assert len(from_csv) == len(rows)
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = pq.read_table(workdir / "metrics.parquet")
    assert tuple(parquet.column_names) == tidy.COLUMNS
    from_parquet = parquet.to_pylist()
    assert len(from_parquet) == len(rows)
    for name, condition in results["conditions"].items():
        expected = dict(zip(condition["seed_indices"], condition["metrics"]["test_accuracy"],
                            strict=True))
        for source in (rows, from_csv, from_parquet):
            assert accuracy_by_seed(source, name) == expected  # exact, seed by seed
        info = condition["metric_info"]
        for r in rows:
            if r["condition"] == name and r["shift"] == "":
                assert r["direction"] == info[r["metric"]]["direction"]
                assert r["evaluator"] == info[r["metric"]]["evaluator"]
                assert r["units"] == info[r["metric"]].get("units", "")
                assert math.isnan(r["severity"])
    assert all(r["look"] == 1 and r["diverged"] is False for r in rows)


def test_sweep_rows_equal_the_saved_curves(study):
    _, results, _ = study
    rows = tidy.tidy_rows(Results.from_json(results))
    sweep = [r for r in rows if r["shift"]]
    assert sweep
    for r in sweep:
        condition = results["conditions"][r["condition"]]
        saved = condition["evaluations"]["robustness"]
        levels = saved["shared"]["severities"][r["shift"]]
        seed = condition["seed_indices"].index(r["seed"])
        value = saved["per_seed"]["curves"][r["shift"]][r["metric"]][seed][
            levels.index(r["severity"])]
        assert r["value"] == value and r["evaluator"] == "robustness"
    directions = {r["metric"]: r["direction"] for r in sweep}
    assert directions["accuracy"] == "higher"
    assert directions["loss"] == "lower" and directions["ece"] == "lower"


def test_two_workdirs_load_into_one_table(study):
    workdir, results, _ = study
    second = workdir.with_name("second")
    if not second.exists():
        shutil.copytree(workdir, second)
    loaded = tidy.load_results([workdir, second])
    table = loaded.table
    assert list(table.columns) == ["run", *tidy.COLUMNS]
    assert set(table["run"]) == {workdir.name, "second"}  # each workdir's directory name
    assert len(table) == 2 * expected_row_count(results)
    assert sorted(loaded.results) == sorted([workdir.name, "second"])
    for run in (workdir.name, "second"):
        rows = table[table["run"] == run].to_dict("records")
        for name, condition in results["conditions"].items():
            assert accuracy_by_seed(rows, name) == dict(zip(
                condition["seed_indices"], condition["metrics"]["test_accuracy"], strict=True))
    renamed = tidy.load_results([workdir, second], runs=["a", "b"])
    assert set(renamed.table["run"]) == {"a", "b"}

    with pytest.raises(ValueError, match="unique") as refused:
        tidy.load_results([workdir, second], runs=["same", "same"])
    assert "\n" not in str(refused.value) and "'same'" in str(refused.value)
    empty = workdir.with_name("empty")
    empty.mkdir(exist_ok=True)
    with pytest.raises(WorkdirError) as refused:
        tidy.load_results([workdir, empty])
    assert "\n" not in str(refused.value) and str(empty) in str(refused.value)


def test_curves_load_as_labelled_arrays(study):
    workdir, results, _ = study
    arrays = tidy.load_results(workdir).arrays[workdir.name]
    for name, condition in results["conditions"].items():
        curve = arrays[name]["curves/test_accuracy"]
        assert curve.dims == ("seed", "step")
        np.testing.assert_array_equal(curve.values, condition["curves"]["test_accuracy"])
        np.testing.assert_array_equal(curve.coords["step"], condition["curves"]["step"])
        np.testing.assert_array_equal(curve.coords["seed"], condition["seed_indices"])
        sweep = arrays[name]["robustness/per_seed/curves/gaussian_noise/accuracy"]
        assert sweep.dims == ("seed", "severity")


def test_per_example_values_load_with_the_metric_they_average(study):
    """Each metric's declared sampling is in the table, and a metric over test examples
    loads its (S, N) values, whose means over examples are the metric: what
    negres.statistics.compare_examples takes, as the module's docstring shows."""
    import negres

    workdir, results, _ = study
    loaded = tidy.load_results(workdir)
    table = loaded.table
    sampling = dict(zip(table.metric, table.sampling, strict=True))
    assert sampling["test_accuracy"] == "examples" and sampling["train_loss"] == "seeds"
    assert sampling["churn_clean"] == "pairwise"
    sweep = table[(table.metric == "accuracy") & (table["shift"] == "gaussian_noise")]
    assert set(sweep.sampling) == {"examples"}
    assert set(table[table.metric == "ece"].sampling) == {"seeds"}
    arrays = loaded.arrays[workdir.name]
    first, second = list(results["conditions"])[:2]
    per_example = {}
    for name in (first, second):
        values = arrays[name]["performance/per_seed/per_example/test_accuracy"]
        assert values.dims == ("seed", "example")
        np.testing.assert_allclose(values.values.mean(axis=1),
                                   results["conditions"][name]["metrics"]["test_accuracy"],
                                   atol=1e-6)
        per_example[name] = values.values
        swept = arrays[name]["robustness/per_seed/per_example/gaussian_noise"]
        assert swept.dims == ("seed", "severity", "example")
        np.testing.assert_allclose(
            swept.values.mean(axis=-1),
            results["conditions"][name]["evaluations"]["robustness"]["per_seed"]["curves"]
            ["gaussian_noise"]["accuracy"], atol=1e-6)
    compared = negres.statistics.compare_examples(per_example[first], per_example[second],
                                                  paired=False)
    assert compared["sampling"] == "examples" and compared["estimand"] == "distribution"


def test_without_pandas_one_line_says_what_to_install(study, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError) as refused:
        tidy.load_results(study[0])
    assert str(refused.value) == ("negres.load_results needs pandas: pip install pandas "
                                  "(the workdir's metrics.csv is plain CSV)")


def test_looks_divergence_pairwise_and_attributions_without_training(tmp_path, monkeypatch):
    """A hand-made condition: two looks (2 then 3 seeds), seed 11 diverged, a sweep with
    one list of severities for every shift (its rows come from the presentation's sweeps,
    saved as robustness saves them), a pairwise churn by severity, saved attributions."""
    monkeypatch.setitem(sections.PRESENTATIONS, "e", Presentation(sweeps=saved_sweeps("e")))
    rng = np.random.default_rng(0)
    attributions = rng.normal(size=(3, 2, 4)).astype(np.float32)
    (tmp_path / "attributions").mkdir()
    np.save(tmp_path / "attributions" / "c__grad.npy", attributions)
    np.save(tmp_path / "attributions" / "c__inputs.npy", np.ones((2, 4), np.float32))
    np.save(tmp_path / "attributions" / "c__labels.npy", np.array([0, 1]))
    condition = {
        "num_seeds": 3, "seed_indices": [0, 1, 11], "diverged_at_step": [-1, -1, 7],
        "metrics": {"score": [1.0, None, math.inf]},
        "metric_info": {"score": {"direction": "higher", "evaluator": "e", "units": "u",
                                  "labels": {"measure": "score"}}},
        "curves": {"step": [5, 10], "train_loss": [[1.0, 0.5], [2.0, 1.0], [3.0, math.nan]]},
        "evaluations": {
            "e": {"per_seed": {"curves": {"blur": {"score": [[1, 2], [3, 4], [5, 6]],
                                                   "gap": [[0, 1], [0, 1], [0, 1]]}}},
                  "pairwise": {"churn": {"blur": np.zeros((3, 3, 2)).tolist()}},
                  "shared": {"severities": [0.0, 0.5],
                             "curve_info": {"gap": {"direction": "lower", "units": "u"}},
                             "files": {"grad": "attributions/c__grad.npy"}}}},
    }
    condition = ConditionResults.from_json(condition)
    results = Results(config={}, task=TaskInfo(), baseline="c", conditions={"c": condition},
                      statistics=StudyStatistics(), looks=[{"c": 2}, {"c": 3}])
    rows = tidy.tidy_rows(results)
    assert len(rows) == 3 + 2 * 2 * 3
    metric = [r for r in rows if r["metric"] == "score" and not r["shift"]]
    assert [r["seed"] for r in metric] == [0, 1, 11]
    assert [r["look"] for r in metric] == [1, 1, 2]
    assert [r["diverged"] for r in metric] == [False, False, True]
    assert metric[0]["value"] == 1.0 and math.isnan(metric[1]["value"])
    assert metric[2]["value"] == math.inf
    gap = [r for r in rows if r["metric"] == "gap"]
    assert {(r["direction"], r["units"]) for r in gap} == {("lower", "u")}
    score = [r for r in rows if r["metric"] == "score" and r["shift"] == "blur"]
    assert {(r["direction"], r["units"]) for r in score} == {("higher", "u")}
    assert [r["value"] for r in score if r["severity"] == 0.5] == [2.0, 4.0, 6.0]
    with monkeypatch.context() as without:  # no presentation, no sweeps: its metrics only
        without.delitem(sections.PRESENTATIONS, "e")
        assert len(tidy.tidy_rows(results)) == 3

    tidy.write_tidy(results, tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as f:
        values = [float(r["value"]) for r in csv.DictReader(f)][:3]
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == math.inf

    arrays = tidy.condition_arrays(condition, tmp_path)
    churn = arrays["e/pairwise/churn/blur"]
    assert churn.dims == ("seed", "seed_other", "axis2")  # severities not named per set
    grad = arrays["attributions/grad"]
    assert grad.dims == ("seed", "example", "input_0")
    np.testing.assert_array_equal(grad.values, attributions)
    np.testing.assert_array_equal(grad.coords["seed"], [0, 1, 11])
    np.testing.assert_array_equal(arrays["attributions/labels"].values, [0, 1])
    assert arrays["curves/train_loss"].dims == ("seed", "step")
