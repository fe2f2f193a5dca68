"""Typed results (negres/results.py): a study's Results round-trip through results.json's
layout unchanged, a file of another layout is refused in one line, seeds left out leave
every per-seed array (a pairwise metric recomputed), and no module outside
negres/results.py reads results through their string keys."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from negres.errors import WorkdirError
from negres.files import write_json_atomic
from negres.results import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    ConditionResults,
    Diverged,
    MetricInfo,
    Results,
    Saved,
    StudyStatistics,
    TaskInfo,
    load_results_file,
)

PACKAGE = Path(__file__).resolve().parents[1] / "negres"


def assert_same(a, b, where: str = "results") -> None:
    """``a`` and ``b`` hold the same values: dataclasses field by field, mappings key by
    key, arrays element by element (NaN equal to NaN)."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for field in dataclasses.fields(a):
            assert_same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype, f"{where}: {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


# ------------------------------------------------------------------- round trip


def test_a_studys_results_round_trip_through_json_field_by_field(tiny_study):
    _, workdir, results = tiny_study
    assert isinstance(results, Results)
    assert results.schema_version == SCHEMA_VERSION
    again = Results.from_json(json.loads(json.dumps(results.to_json())))
    assert_same(results, again)
    # What the study wrote is the layout to_json gives.
    written = json.loads((workdir / RESULTS_FILE).read_text())
    assert_same(written, json.loads(json.dumps(results.to_json())), RESULTS_FILE)
    # Typed as declared: per-seed arrays, seeds as integers, declarations as MetricInfo.
    for name, condition in results.items():
        assert condition.num_seeds == 3 and condition.seed_indices.dtype == np.int64
        assert condition.seed_indices.tolist() == [0, 1, 2]
        for metric, values in condition.metrics.items():
            assert values.shape == (3,) and values.dtype == np.float64, (name, metric)
            assert isinstance(condition.info(metric), MetricInfo)
        assert condition.curves["step"].dtype == np.int64
        assert all(isinstance(s, Saved) for s in condition.evaluations.values())
        assert isinstance(condition.diverged, Diverged) and condition.diverged.count == 0
    assert results.baseline_results is results.conditions[results.baseline]
    assert isinstance(results.statistics, StudyStatistics)
    assert set(results.statistics.summaries) == set(results.conditions)


def test_the_top_level_repeats_the_baselines_numbers(tiny_study):
    _, _, results = tiny_study
    layout = results.to_json()
    baseline = layout["conditions"][results.baseline]
    for key in ("num_seeds", "seed_indices", "metrics", "curves"):
        assert_same(layout[key], baseline[key], key)


# ---------------------------------------------------------------- refused files


def _minimal() -> dict:
    return {"schema_version": SCHEMA_VERSION, "config": {}, "task": {}, "baseline": "mlp",
            "device": {}, "wall_time_s": 1.0,
            "conditions": {"mlp": {"num_seeds": 2, "metrics": {"m": [0.5, 0.25]},
                                   "evaluations": {}, "curves": {}}},
            "statistics": {"settings": {}}}


def test_a_minimal_file_loads_typed(tmp_path):
    write_json_atomic(tmp_path / RESULTS_FILE, _minimal())
    results = load_results_file(tmp_path)
    condition = results.conditions["mlp"]
    assert condition.seed_indices.tolist() == [0, 1]  # seeds 0 .. S-1 when not recorded
    np.testing.assert_array_equal(condition.metrics["m"], [0.5, 0.25])
    assert condition.direction("m") == "none"
    assert results.looks == [{"mlp": 2}]  # one look when not recorded
    assert results.statistics.sources is None and "sources" not in results.to_json()[
        "statistics"]


@pytest.mark.parametrize("change,said", [
    (lambda r: r.update(schema_version=1), "of schema version 1; this negres reports on "
                                           f"version {SCHEMA_VERSION}"),
    (lambda r: r.pop("schema_version"), "without 'schema_version'"),
    (lambda r: r.update(baseline=3), "without a valid 'baseline'"),
    (lambda r: r.update(conditions=[]), "without a valid 'conditions'"),
    (lambda r: r.update(wall_time_s="1 s"), "without a valid 'wall_time_s'"),
    (lambda r: r["conditions"]["mlp"].update(num_seeds="2"),
     "whose condition 'mlp' lacks a valid 'num_seeds'"),
    (lambda r: r["conditions"]["mlp"].update(metrics=[0.5]),
     "whose condition 'mlp' lacks a valid 'metrics'"),
])
def test_a_file_of_another_schema_or_wrong_types_is_refused_in_one_line(tmp_path, change, said):
    content = _minimal()
    change(content)
    write_json_atomic(tmp_path / RESULTS_FILE, content)
    with pytest.raises(WorkdirError) as err:
        load_results_file(tmp_path)
    message = str(err.value)
    assert said in message and "\n" not in message, message
    assert message.startswith(f"--workdir={str(tmp_path)!r} holds a {RESULTS_FILE} ")


def test_from_json_refuses_what_load_results_file_refuses():
    content = _minimal()
    content["schema_version"] = 1
    with pytest.raises(ValueError, match="schema version 1"):
        Results.from_json(content)


# ------------------------------------------------------------------ kept seeds


def _condition() -> ConditionResults:
    agreement = np.array([[1.0, 0.1, 0.2, 0.3],
                          [0.1, 1.0, 0.4, 0.5],
                          [0.2, 0.4, 1.0, 0.6],
                          [0.3, 0.5, 0.6, 1.0]])
    return ConditionResults(
        metrics={"accuracy": np.array([0.9, 0.1, 0.8, 0.7]),
                 # Row means off the diagonal: (0.1+0.2+0.3)/3, ...
                 "agreement": np.array([0.2, 1.0 / 3, 0.4, 1.4 / 3])},
        metric_info={"accuracy": MetricInfo("higher", "mine"),
                     "agreement": MetricInfo("higher", "mine", "pairwise",
                                             pairwise="agreement")},
        evaluations={"mine": Saved(per_seed={"scores": np.arange(8.0).reshape(4, 2)},
                                   pairwise={"agreement": agreement},
                                   shared={"names": ["a", "b"]})},
        seed_indices=np.array([10, 11, 12, 13]), num_seeds=4,
        curves={"step": np.array([5, 10]), "train_loss": np.ones((4, 2))},
        diverged_at_step=np.array([-1, 7, -1, -1]))


def test_kept_recomputes_a_pairwise_metric_over_the_seeds_kept():
    condition = _condition()
    np.testing.assert_allclose(condition.sample("agreement").values,
                               [0.2, 1.0 / 3, 0.4, 1.4 / 3])
    kept = condition.kept(np.array([True, False, True, True]))
    # Seeds 10, 12, 13 by hand: 10 with 12 and 13: (0.2 + 0.3) / 2; 12: (0.2 + 0.6) / 2;
    # 13: (0.3 + 0.6) / 2.
    np.testing.assert_allclose(kept.metrics["agreement"], [0.25, 0.4, 0.45])
    np.testing.assert_array_equal(kept.metrics["accuracy"], [0.9, 0.8, 0.7])
    np.testing.assert_array_equal(kept.seed_indices, [10, 12, 13])
    np.testing.assert_array_equal(kept.kept_rows, [True, False, True, True])
    saved = kept.saved_by("mine")
    np.testing.assert_array_equal(saved.per_seed["scores"], [[0, 1], [4, 5], [6, 7]])
    np.testing.assert_array_equal(saved.pairwise["agreement"],
                                  [[1.0, 0.2, 0.3], [0.2, 1.0, 0.6], [0.3, 0.6, 1.0]])
    assert saved.shared == {"names": ["a", "b"]}
    # Learning curves keep every seed (they show where a diverged one stopped).
    assert kept.curves["train_loss"].shape == (4, 2)
    sample = kept.sample("agreement")
    assert sample.sampling == "pairwise" and sample.pairwise.shape == (3, 3)
    # The condition it came from is left as it was.
    assert condition.metrics["agreement"].shape == (4,) and condition.kept_rows is None
    assert condition.saved_by("mine").pairwise["agreement"].shape == (4, 4)


def test_saved_by_an_evaluator_that_did_not_run_is_empty():
    saved = _condition().saved_by("robustness")
    assert saved == Saved() and saved.per_seed == {} and saved.shared == {}
    assert _condition().direction("undeclared") == "none"


def test_a_typed_condition_round_trips_too():
    condition = _condition()
    layout = Results(config={}, task=TaskInfo(), baseline="c", conditions={"c": condition},
                     statistics=StudyStatistics(settings={})).to_json()
    again = ConditionResults.from_json(json.loads(json.dumps(layout))["conditions"]["c"])
    np.testing.assert_array_equal(again.metrics["agreement"], condition.metrics["agreement"])
    assert again.metric_info == condition.metric_info
    np.testing.assert_array_equal(again.diverged_at_step, [-1, 7, -1, -1])
    assert again.saved_by("mine").shared == {"names": ["a", "b"]}


# ------------------------------------------- no string keys outside results.py

# The keys of results' structure (results.json's layout): read by attribute everywhere
# but negres/results.py, which defines the layout.
STRUCTURAL_KEYS = frozenset({
    "conditions", "statistics", "metrics", "metric_info", "evaluations", "curves",
    "seed_indices", "summaries", "comparisons", "within_conditions", "settings", "looks",
    "config", "task"})
# What a value holding results is called: results, result, condition(s), condition_results,
# previous (the finished study --extend reads), analysis (the statistics).
RESULTS_NAME = re.compile(r"(^|_)(results?|conditions?|previous|analysis)$")


def _keyed(node: ast.AST) -> tuple[ast.AST, object] | None:
    """``(what, key)`` of ``what["key"]`` and ``what.get("key", ...)``."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.value, node.slice.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and node.args
            and isinstance(node.args[0], ast.Constant)):
        return node.func.value, node.args[0].value
    return None


def _name_of(node: ast.AST) -> str | None:
    """The name a chain of subscripts and ``.get`` starts from: ``results`` of
    ``results["conditions"][name]``, ``results`` of ``self.results``."""
    while True:
        keyed = _keyed(node)
        if keyed is not None:
            node = keyed[0]
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            break
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def structural_reads(source: str, filename: str = "<source>") -> list[str]:
    """``line: name["key"]`` of every read of results through a structural key."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        keyed = _keyed(node)
        if keyed is None or keyed[1] not in STRUCTURAL_KEYS:
            continue
        name = _name_of(keyed[0])
        if name is not None and RESULTS_NAME.search(name):
            found.append(f"{filename}:{node.lineno}: {name}[{keyed[1]!r}]")
    return found


def test_the_check_catches_string_keys_and_passes_records():
    caught = structural_reads(
        'a = results["conditions"]\n'
        'b = condition["metrics"]\n'
        'c = results["conditions"][name]["evaluations"]["robustness"]\n'
        'd = self.results["statistics"]\n'
        'e = condition.get("metric_info") or {}\n'
        'f = finite_results[name]["seed_indices"]\n')
    assert sorted(line.split(":", 1)[1] for line in caught) == [
        "1: results['conditions']", "2: condition['metrics']", "3: results['conditions']",
        "3: results['evaluations']", "4: results['statistics']",
        "5: condition['metric_info']", "6: finite_results['seed_indices']"]
    assert structural_reads(
        'summary["mean"]\nc["verdict"]\nconfig["task"]\nper_seed["curves"]\n'
        'results.conditions[name].metrics["test_accuracy"]\n'
        'results.statistics.summaries[name]["test_accuracy"]["mean"]\n'
        'results.config["num_seeds"]\ndesign.get("metrics")\n') == []


def test_no_module_outside_results_reads_results_through_string_keys():
    modules = [p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "results.py"]
    assert len(modules) > 40
    found = [read for path in modules
             for read in structural_reads(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert not found, ("read results by attribute (negres.results.Results):\n"
                       + "\n".join(found))
