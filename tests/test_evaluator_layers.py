"""Evaluators compute only: no module under negres/evaluators imports the layers above it
(reporting, statistics, the study), and what a study shows of an evaluator is its
presentation, registered beside the evaluator's name in reporting's registry, for
negres's evaluators and a user's own alike."""

import ast
import importlib
from pathlib import Path

import pytest

from negres import evaluators
from negres.evaluators.protocol import Evaluation, Evaluator
from negres.reporting import sections
from negres.reporting.markdown import build_report
from negres.reporting.sections import Presentation
from negres.results import SCHEMA_VERSION, Results

EVALUATORS_DIR = Path(evaluators.__file__).parent
# The layers above the evaluators: an evaluator may import none of them.
ABOVE = ("negres.reporting", "negres.statistics", "negres.study")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a file, inside functions too; a relative
    import resolved against ``negres.evaluators``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = ["negres", "evaluators"][: 2 - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module))
            # `from negres import reporting` names the layer in the alias.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_imports_are_found_inside_functions_too(tmp_path):
    """The check below can fail: an import hidden in a function is seen."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from negres.reporting.write import plot_path\n"
                      "    from negres import statistics\n    from . import protocol\n")
    modules = [m for _, m in imported_modules(module)]
    assert "negres.reporting.write" in modules
    assert "negres.statistics" in modules
    assert "negres.evaluators.protocol" in modules


def test_no_evaluator_imports_reporting_statistics_or_the_study():
    files = sorted(EVALUATORS_DIR.glob("*.py"))
    assert {f.stem for f in files} >= {"__init__", "protocol", "robustness", "attributions"}
    upward = [f"{f.name}:{line} imports {module}" for f in files
              for line, module in imported_modules(f)
              if any(module == layer or module.startswith(layer + ".") for layer in ABOVE)]
    assert not upward, "evaluators compute only; move presentation to negres.reporting:\n" \
        + "\n".join(upward)


def test_an_evaluator_has_no_presentation_hooks():
    names = {f.name for f in Evaluator.__dataclass_fields__.values()}
    assert not names & {"report", "condition_report", "plots"}


@pytest.mark.parametrize("name", list(sections.PRESENTATIONS))
def test_every_presentation_is_of_a_registered_evaluator(name):
    assert name in evaluators.REGISTRY
    presentation = sections.presentation_of(name)
    assert isinstance(presentation, Presentation)
    assert importlib.import_module(sections.PRESENTATIONS[name]).PRESENTATION is presentation
    assert any(hook is not None for hook in (presentation.report, presentation.condition_report,
                                             presentation.plots, presentation.save))


def _results() -> Results:
    """The least of a results.json that the report is built from: two conditions whose
    evaluations include one of a user's own evaluator, ``flips``."""
    conditions = {
        name: {"num_seeds": 2, "seed_indices": [0, 1], "metrics": {}, "curves": {},
               "evaluations": {"flips": {"per_seed": {}, "pairwise": {},
                                         "shared": {"flipped": count}}}}
        for name, count in (("a", 3), ("b", 5))}
    settings = {"level": 0.95, "num_resamples": 10, "baseline": "a",
                "verdict_rule": "a rule", "paired_conditions": False}
    return Results.from_json({
        "schema_version": SCHEMA_VERSION, "baseline": "a", "conditions": conditions,
        "config": {"train": {"steps": 1}},
        "task": {"name": "toy", "kind": "classification", "num_train": 1, "num_test": 1},
        "wall_time_s": 0.0, "device": {"platform": "cpu", "kind": "cpu"},
        "statistics": {"settings": settings, "summaries": {"a": {}, "b": {}},
                       "comparisons": {}}})


def _flipped(condition) -> int:
    return condition.saved_by("flips").shared["flipped"]


def _flips_report(results, names):
    return ["## Flips", "",
            *[f"{n}: {_flipped(results.conditions[n])} flipped" for n in names], ""]


def _flips_condition(condition):
    return [f"*{_flipped(condition)} flips here*", ""]


@pytest.fixture
def flips_presented(monkeypatch):
    """A presentation of a user's own evaluator, registered; removed again afterwards."""
    monkeypatch.setitem(sections.PRESENTATIONS, "flips", Presentation())
    sections.register("flips", Presentation(report=_flips_report,
                                            condition_report=_flips_condition))
    yield
    assert "flips" not in evaluators.REGISTRY  # its evaluator is the user's own


def test_a_user_presentation_shows_up_in_the_report(flips_presented):
    report = build_report(_results(), [])
    assert "## Flips" in report and "a: 3 flipped" in report and "b: 5 flipped" in report
    # Its condition lines sit under their condition's heading.
    a_section = report[report.index("### `a`"):report.index("### `b`")]
    assert "*3 flips here*" in a_section and "*5 flips here*" not in a_section


def test_without_a_presentation_a_user_evaluator_adds_no_section():
    assert "flips" not in sections.PRESENTATIONS
    report = build_report(_results(), [])
    assert "Flips" not in report and "flips here" not in report


def test_a_user_presentation_plots_and_saves(flips_presented, tmp_path):
    def plots(results, workdir):
        (workdir / "flips.txt").write_text("drawn")
        return [("Flips", "flips.txt")]

    def save(evaluation, workdir, condition, task, settings):
        evaluation.shared["files"] = {"flips": f"{condition}.npy"}

    sections.register("flips", Presentation(plots=plots, save=save))
    assert sections.evaluator_plots(_results(), tmp_path) == [("Flips", "flips.txt")]
    evaluation = Evaluation()
    sections.save_files({"flips": evaluation, "performance": Evaluation()}, tmp_path, "a",
                        task=None, settings=None)
    assert evaluation.shared == {"files": {"flips": "a.npy"}}
    with pytest.raises(TypeError):
        sections.register("flips", _flips_report)
