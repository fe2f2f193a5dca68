"""config -> conditions -> one training call per group -> evaluators -> statistics -> report.

The command line's study, built on the public library like any other user: negres's own
models and losses become a :class:`negres.SeedProgram` (:func:`negres.builtin_program`),
:func:`negres.train` trains every seed of a group of conditions in one call, and the
evaluators the config names (:mod:`negres.evaluators`) run on the trained parameters
through an apply function.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
from ml_collections import ConfigDict

from negres.files import write_json_atomic
from negres.reporting import write as report
from negres.results import (
    RESULTS_FILE,
    ConditionResults,
    Results,
    StudyStatistics,
    TaskInfo,
)
from negres.sharding import is_main_process
from negres.statistics.claims import finding
from negres.study.analysis import analyze_study
from negres.study.evaluation import evaluate_condition
from negres.study.group_training import train_looks
from negres.study.lifecycle import claim_workdir, complete_report
from negres.study.memory import check_memory
from negres.study.prepare import (
    Study,
    group_conditions,
    prepare_study,
)
from negres.study.workdir import CHECKPOINTS_DIR, disk_full_explained, workdir_lock

# What to do when the disk fills after training: the final checkpoint holds every seed.
RERUN_RESUMES = ("free some space and rerun the same command: it resumes from the final "
                 "checkpoint and nothing is retrained")


def device_description() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "kind": devices[0].device_kind,
        "count": len(devices),
        "host": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
    }


def run(
    config: ConfigDict, workdir: str, *, overwrite: bool = False, extend: bool = False
) -> Results:
    """Run the study that ``config`` describes and write its results into ``workdir``.

    Every check on the config and the workdir happens before anything is compiled.
    Training saves checkpoints under ``workdir/checkpoints`` and a run of the same config
    into the same workdir resumes from them; ``results.json`` is written once the results
    exist. With ``overwrite``, the earlier run's outputs are set aside and deleted only
    when this run has written its own (:mod:`negres.study.workdir`). A run whose results
    are written but whose report is not (disk full) is completed by running it again:
    the report is written, nothing is retrained. With ``extend``, the workdir's finished
    study gets the seeds past its ``num_seeds`` (``config`` may differ from it in
    ``num_seeds`` alone): only they are trained, and the statistics are those of the
    study's next look (:mod:`negres.statistics.sequential`). On several hosts every
    process trains its share of seeds and evaluates the gathered parameters; process 0
    alone writes.

    Returns:
      The study's :class:`~negres.results.Results`, as ``results.json`` holds them.
    """
    start = time.perf_counter()
    study = prepare_study(config)
    check_memory(study.conditions)
    # The workdir is this process's from here on: nothing was written before, and a second
    # run into it is refused until this one ends (on several hosts, process 0 holds it).
    held = (workdir_lock(workdir, doing="this run", create=not extend) if is_main_process()
            else contextlib.nullcontext())
    with held:
        path, looks, report_missing = claim_workdir(workdir, study, overwrite=overwrite,
                                                    extend=extend)
        if report_missing:
            return complete_report(path)
        condition_results, train_time_s = train_and_evaluate(study, path, looks)
        analysis = analyze_study(study, condition_results, looks)
        results, written = assemble_results(study, condition_results, analysis, looks,
                                            train_time_s=train_time_s,
                                            wall_time_s=time.perf_counter() - start)
        if not is_main_process():
            return results
        with disk_full_explained(path, f"writing {RESULTS_FILE}", RERUN_RESUMES,
                                 needed=lambda: len(json.dumps(written, indent=1))):
            write_json_atomic(path / RESULTS_FILE, written)
        return complete_report(path)


def train_and_evaluate(study: Study, path: Path, looks: list[dict[str, int]]
                       ) -> tuple[dict[str, ConditionResults], float]:
    """Train each group of conditions in one call per look, then run each condition's
    evaluators. Returns every condition's results, in the config's order, and the training
    time."""
    condition_results = {}
    train_time_s = 0.0
    for number, group in enumerate(group_conditions(study.conditions)):
        names = [c.name for c in group]
        group_dir = path / CHECKPOINTS_DIR / f"{number}_{report.safe_name(names[0])}"
        parts = train_looks(group, group_dir, looks)
        train_time_s += parts[0].train_time_s
        for condition, trained in zip(group, parts, strict=True):
            # An evaluator may write files of its own (saved attributions).
            with disk_full_explained(path, f"evaluating condition {condition.name!r}",
                                     RERUN_RESUMES):
                condition_results[condition.name] = evaluate_condition(
                    condition, trained, path, [n for n in names if n != condition.name])
    return {c.name: condition_results[c.name] for c in study.conditions}, train_time_s


def assemble_results(study: Study, condition_results: dict[str, ConditionResults],
                     analysis: StudyStatistics, looks: list[dict[str, int]], *,
                     train_time_s: float, wall_time_s: float) -> tuple[Results, dict[str, Any]]:
    """The study's results, its finding (the verdicts of its claims) included, and their
    ``results.json`` form."""
    task = study.conditions[0].task
    results = Results(
        config=study.config.to_dict(),
        task=TaskInfo(name=task.name, kind=task.kind, num_train=task.num_train,
                      num_test=task.num_test, input_shape=tuple(task.input_shape)),
        baseline=study.baseline,
        conditions=condition_results,
        statistics=analysis,
        # Every condition's seed count at each look (the first run, then each --extend).
        looks=looks,
        train_time_s=train_time_s,
        wall_time_s=wall_time_s,
        device=device_description(),
    )
    results.finding = finding(analysis.claims)
    return results, results.to_json()
