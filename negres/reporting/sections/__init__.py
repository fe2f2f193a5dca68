"""Evaluators' presentations: their sections of ``report.md``, their plots and their files.

An evaluator (:mod:`negres.evaluators`) only computes; what the study shows of its results
is its :class:`Presentation`, registered by one line in :data:`PRESENTATIONS` under the
evaluator's name. Each module here holds one ``PRESENTATION`` and reads only what its
evaluator saved in ``results.json`` (and files it saved beside it). An evaluator without a
presentation still gets the generic tables and statistics of its metrics.

A presentation of your own evaluator: a module with ``PRESENTATION = Presentation(...)``
and its path under the evaluator's name, ``PRESENTATIONS["margin"] = "my_module"``, or the
value itself, ``register("margin", Presentation(report=...))``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from ml_collections import ConfigDict

from negres.evaluators.protocol import Evaluation
from negres.results import ConditionResults, MetricInfo, Results, instance_folder
from negres.tasks import Task


class Sweep(NamedTuple):
    """One measure of one condition's seeds swept over severities of one shift.

    Attributes:
      shift: the shifted set's name.
      measure: what was measured (``accuracy``, ``loss``...).
      severities: ``(K,)``.
      values: ``(S, K)`` each seed's value at each severity.
      direction: ``"higher"``, ``"lower"`` or ``"none"``.
      units: what one unit of it is; "" for none.
      sampling: ``"examples"`` where each point is a mean over test examples whose values
        were saved, else ``"seeds"``.
    """

    shift: str
    measure: str
    severities: np.ndarray
    values: np.ndarray
    direction: str = "none"
    units: str = ""
    sampling: str = "seeds"


# (results, condition names) -> markdown lines of a section of the report.
Report = Callable[[Results, Sequence[str]], list[str]]
# (one condition's results) -> markdown lines shown with that condition's table.
ConditionReport = Callable[[ConditionResults], list[str]]
# (results, workdir) -> [(caption, path relative to workdir)] of the plots written.
Plots = Callable[[Results, Path], list[tuple[str, str]]]
# (one condition's results) -> the severity sweeps the evaluator saved: rows of the tidy
# table and charts of the TensorBoard logs.
Sweeps = Callable[[ConditionResults], Iterable[Sweep]]
# (evaluation, workdir, condition name, task, evaluation settings) -> None: writes files
# of what the evaluator computed into the workdir and records them in evaluation.shared.
Save = Callable[[Evaluation, Path, str, Task, ConfigDict], None]


@dataclasses.dataclass(frozen=True)
class Presentation:
    """What the study shows of one evaluator's results; every hook is optional.

    Attributes:
      report: ``(results, condition names) -> markdown lines``: its section of the study's
        report, read from what the evaluator saved.
      condition_report: ``(one condition's results) -> markdown lines`` shown with that
        condition's table.
      plots: ``(results, workdir) -> [(caption, path relative to workdir)]``, drawn from
        what the evaluator saved, with seeds left out as in the statistics.
      save: ``(evaluation, workdir, condition, task, settings) -> None``: writes files of
        what the evaluator computed (before its results are collected; saved
        attributions) and records their paths in ``evaluation.shared``.
      sweeps: ``(one condition's results) -> [Sweep]``: the evaluator's measures swept
        over shift severities, each seed's value at each severity (rows of the tidy table
        ``metrics.csv``, and ``EVALUATOR/SHIFT/MEASURE`` charts in the TensorBoard logs).
    """

    report: Report | None = None
    condition_report: ConditionReport | None = None
    plots: Plots | None = None
    save: Save | None = None
    sweeps: Sweeps | None = None


# Evaluator name -> the module holding its PRESENTATION (or a Presentation itself).
# A presentation of an evaluator: one file, one line here.
PRESENTATIONS: dict[str, str | Presentation] = {
    "performance": "negres.reporting.sections.performance",
    "robustness": "negres.reporting.sections.robustness",
    "attributions": "negres.reporting.sections.attributions",
    "subsets": "negres.reporting.sections.subsets",
    "truth": "negres.reporting.sections.truth",
    "surrogate_fidelity": "negres.reporting.sections.surrogate",
    "multiplicity": "negres.reporting.sections.multiplicity",
}


def register(name: str, presentation: Presentation | str) -> None:
    """Register the presentation of the evaluator ``name`` (yours or a registered one's,
    which it replaces): a :class:`Presentation`, or the module path holding one as
    ``PRESENTATION``."""
    if not isinstance(presentation, (Presentation, str)):
        raise TypeError(f"presentation of {name!r}: a Presentation or a module path, not "
                        f"{type(presentation).__name__}")
    PRESENTATIONS[name] = presentation


def presentation_of(name: str) -> Presentation | None:
    """The presentation registered for the evaluator ``name``; None if it has none."""
    entry = PRESENTATIONS.get(name)
    if isinstance(entry, str):
        return importlib.import_module(entry).PRESENTATION
    return entry


def presentations_of(results: Results) -> list[Presentation]:
    """The presentations of the evaluators that ran in a study, in the order they ran;
    evaluators without one are left out (their metrics still get the generic tables and
    statistics). An instance (an evaluator run under a name of its own) gets its kind's,
    reading its own results (:func:`instance_presentation`)."""
    names = dict.fromkeys(n for c in results.conditions.values() for n in c.evaluations)
    found = (instance_presentation(n, results.kind_of(n)) for n in names)
    return [p for p in found if p is not None]


def instance_presentation(name: str, kind: str | None) -> Presentation | None:
    """The presentation of the evaluator ``name``: the one registered for it, or, for an
    instance of ``kind`` (:attr:`negres.results.Saved.kind`), ``kind``'s with every hook
    reading the instance's results as its kind's
    (:meth:`~negres.results.Results.instance_view`), writing and reading its files in its
    own folder (:func:`~negres.results.instance_folder`) and its headings naming it."""
    if kind is None or kind == name:
        return presentation_of(name)
    shown = presentation_of(kind)
    if shown is None:
        return None

    def titled(lines: list[str]) -> list[str]:
        return [f"{line} (`{name}`, {kind})" if line.startswith("## ") else line
                for line in lines]

    def report(results: Results, names: Sequence[str]) -> list[str]:
        return titled(shown.report(results.instance_view(name), names))

    def condition_report(condition: ConditionResults) -> list[str]:
        return titled(shown.condition_report(condition.instance_view(name, kind)))

    def plots(results: Results, workdir: Path) -> list[tuple[str, str]]:
        folder = _folder(workdir, name)
        return [(f"{caption} ({name})", str((folder / path).relative_to(workdir)))
                for caption, path in shown.plots(results.instance_view(name), folder)]

    def save(evaluation: Evaluation, workdir: Path, condition: str, task: Task,
             settings: ConfigDict) -> None:
        own = ConfigDict({**settings.to_dict(), kind: settings[name].to_dict()})
        shown.save(evaluation, _folder(workdir, name), condition, task, own)

    def sweeps(condition: ConditionResults) -> Iterable[Sweep]:
        return shown.sweeps(condition.instance_view(name, kind))

    def given(hook: Any, bound: Any) -> Any:
        return None if hook is None else bound

    return Presentation(
        report=given(shown.report, report),
        condition_report=given(shown.condition_report, condition_report),
        plots=given(shown.plots, plots), save=given(shown.save, save),
        sweeps=given(shown.sweeps, sweeps))


def _folder(workdir: Path, name: str) -> Path:
    folder = instance_folder(workdir, name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweeps_of(condition: ConditionResults) -> Iterator[tuple[str, Sweep]]:
    """``(evaluator, sweep)`` of every severity sweep of one condition, from the
    presentations of the evaluators that ran (their ``sweeps``), in the order they ran."""
    for name, saved in condition.evaluations.items():
        presentation = instance_presentation(name, saved.kind)
        if presentation is not None and presentation.sweeps is not None:
            for sweep in presentation.sweeps(condition):
                yield name, sweep


def _declared(metric_info: Mapping[str, MetricInfo], evaluator: str, measure: str,
              shared: Mapping[str, Any]) -> tuple[str, str]:
    """``(direction, units)`` of a swept ``measure``: the evaluator's own declaration
    (``shared.curve_info``) if it saved one, else that of the metric with the same
    ``labels.measure`` (the evaluator's own first, then a test or clean one), else
    ``("none", "")``."""
    own = (shared.get("curve_info") or {}).get(measure)
    if isinstance(own, Mapping):
        return str(own.get("direction", "none")), str(own.get("units", ""))
    candidates = [info for info in metric_info.values() if info.labels.get("measure") == measure]

    def preference(info: MetricInfo) -> int:
        return (0 if info.evaluator == evaluator
                else 1 if info.labels.get("split") == "test" or info.labels.get("set") == "clean"
                else 2)

    if not candidates:
        return "none", ""
    best = min(candidates, key=preference)  # min is stable: ties keep results.json's order
    return best.direction, best.units


def saved_sweeps(evaluator: str) -> Sweeps:
    """The ``sweeps`` hook of an evaluator that saves its sweeps as robustness does: each
    seed's values ``per_seed.curves`` SHIFT -> MEASURE -> ``(S, K)`` at the severities
    ``shared.severities`` (SHIFT -> ``(K,)``, or one ``(K,)`` for every shift), each
    measure declared by ``shared.curve_info`` MEASURE -> ``{direction, units, sampling}``
    (else as the metric with the same ``labels.measure``); a point is a mean over test
    examples (``sampling`` ``"examples"``) where so declared and the shift's per-example
    values ``per_seed.per_example.SHIFT`` ``(S, K, N)`` were saved."""

    def sweeps(condition: ConditionResults) -> Iterator[Sweep]:
        saved = condition.saved_by(evaluator)
        curves, shared = saved.per_seed.get("curves"), saved.shared
        severities = shared.get("severities")
        if not isinstance(curves, Mapping) or severities is None:
            return
        per_example = saved.per_seed.get("per_example") or {}
        for shift, measures in curves.items():
            # One sweep per shift, or one list of severities for all of them.
            levels = severities.get(shift) if isinstance(severities, Mapping) else severities
            if levels is None or not isinstance(measures, Mapping):
                continue
            levels = np.asarray(levels, dtype=np.float64).reshape(-1)
            for measure, values in measures.items():
                array = np.asarray(values, dtype=object)
                if array.ndim != 2 or array.shape[1] != levels.size:
                    continue
                direction, units = _declared(condition.metric_info, evaluator, measure, shared)
                own = (shared.get("curve_info") or {}).get(measure)
                examples = (isinstance(own, Mapping) and own.get("sampling") == "examples"
                            and isinstance(per_example, Mapping)
                            and per_example.get(shift) is not None
                            and np.ndim(per_example[shift]) == 3)
                yield Sweep(shift, measure, levels, array, direction, units,
                            "examples" if examples else "seeds")

    return sweeps


def evaluator_plots(results: Results, workdir: Path) -> list[tuple[str, str]]:
    """Every evaluator's plots, in the order the evaluators ran: ``(caption, path relative
    to workdir)``."""
    written: list[tuple[str, str]] = []
    for presentation in presentations_of(results):
        if presentation.plots is not None:
            written += presentation.plots(results, workdir)
    return written


def save_files(evaluations: Mapping[str, Evaluation], workdir: Path, condition: str,
               task: Task, settings: ConfigDict) -> None:
    """Write the files the evaluators' presentations save of one condition's evaluations
    (the attributions' ``.npy``) into ``workdir``, recording them in each evaluation's
    ``shared``; call it between :func:`negres.evaluators.run_evaluators` and
    :func:`negres.evaluators.as_results`, in the process that writes the workdir."""
    for name, evaluation in evaluations.items():
        presentation = instance_presentation(name, evaluation.kind)
        if presentation is not None and presentation.save is not None:
            presentation.save(evaluation, workdir, condition, task, settings)


__all__ = [
    "PRESENTATIONS",
    "Presentation",
    "Sweep",
    "evaluator_plots",
    "instance_presentation",
    "presentation_of",
    "presentations_of",
    "register",
    "save_files",
    "saved_sweeps",
    "sweeps_of",
]
