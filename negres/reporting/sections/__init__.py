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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from negres.evaluators.protocol import Evaluation
from negres.tasks import Task

# (results, condition names) -> markdown lines of a section of the report.
Report = Callable[[Mapping[str, Any], Sequence[str]], list[str]]
# (one condition's results) -> markdown lines shown with that condition's table.
ConditionReport = Callable[[Mapping[str, Any]], list[str]]
# (results, workdir) -> [(caption, path relative to workdir)] of the plots written.
Plots = Callable[[Mapping[str, Any], Path], list[tuple[str, str]]]
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
    """

    report: Report | None = None
    condition_report: ConditionReport | None = None
    plots: Plots | None = None
    save: Save | None = None


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


def presentations_of(results: Mapping[str, Any]) -> list[Presentation]:
    """The presentations of the evaluators that ran in a study (its ``results.json``), in
    the order they ran; evaluators without one are left out (their metrics still get the
    generic tables and statistics)."""
    names = dict.fromkeys(n for c in results["conditions"].values()
                          for n in (c.get("evaluations") or {}))
    found = (presentation_of(n) for n in names)
    return [p for p in found if p is not None]


def evaluator_plots(results: Mapping[str, Any], workdir: Path) -> list[tuple[str, str]]:
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
        presentation = presentation_of(name)
        if presentation is not None and presentation.save is not None:
            presentation.save(evaluation, workdir, condition, task, settings)


__all__ = [
    "PRESENTATIONS",
    "Presentation",
    "evaluator_plots",
    "presentation_of",
    "presentations_of",
    "register",
    "save_files",
]
