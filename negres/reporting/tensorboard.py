"""A study's results as a TensorBoard log directory, written with tensorboardX (no TensorFlow).

``WORKDIR/tensorboard/`` holds one TensorBoard run per condition, one per shown seed and
one for the whole study, so that ``tensorboard --logdir WORKDIR`` (or ``--logdir`` on a
folder of workdirs) overlays the conditions on every chart:

- ``tensorboard/CONDITION/``: per curve of ``curves`` (``test_accuracy``, ``train_loss``,
  ...) the scalars ``curves/NAME/mean``, ``.../min`` and ``.../max`` across seeds at every
  curve step; per shift and measure of an evaluator's severity sweep (its presentation's
  ``sweeps``: robustness's) ``EVALUATOR/SHIFT/MEASURE/mean|min|max`` with ``1000 x
  severity`` as the step (the severity index where that is not a whole number); a text
  ``condition/summary`` (seeds, diverged seeds, what the band is) and
  ``EVALUATOR/severities`` (step -> severity).
- ``tensorboard/CONDITION/seed_0003/``: for the first ``seed_curves`` seeds of the
  condition, that seed's own ``seed_curves/NAME`` and ``seed_EVALUATOR/SHIFT/MEASURE``;
  one run per seed puts every shown seed's line on one chart instead of one chart per seed.
  At most ``MAX_RUNS`` runs in all, as TensorBoard shows no run by default beyond them.
- ``tensorboard/_study/``: the report's plots as images (``plots/FILE_STEM``), the report's
  heading and finding (``study/report``), the plots' captions (``study/plots``), the
  resolved config as a JSON code block (``study/config``), and a Custom Scalars layout that
  draws each ``mean`` between its ``min`` and ``max`` as a band ("Margin" charts).

Every statistic is over the finite values at that step: a diverged seed's curves are NaN
from its divergence on, so it leaves the statistics there (as in the report's plots) and
its own line stops.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from negres.reporting.sections import sweeps_of
from negres.results import ConditionResults, Results

# The workdir's folder of TensorBoard runs. A folder of its own lets a condition be named
# like any other workdir entry (`plots`, `checkpoints`), and `--logdir WORKDIR/tensorboard`
# gives short run names without TensorBoard walking the checkpoints' many files.
TENSORBOARD_DIR = "tensorboard"
# The run of study-wide things (config, report text, plots); the underscore keeps it apart
# from condition names, which are checked against it.
STUDY_RUN = "_study"
# Eight lines per condition stay apart in TensorBoard's palette and cost well under a
# second to write; every seed's spread is in the min-max band anyway.
DEFAULT_SEED_CURVES = 8
# TensorBoard 2.21's dashboards tick every run only while there are at most 500; beyond,
# none is ticked and every chart opens empty. Seed runs are cut to stay within it.
MAX_RUNS = 500
# Siblings of TENSORBOARD_DIR that exist only while one call runs (or after it was killed).
_STAGING_PREFIX = ".tensorboard-staging-"
_OLD_PREFIX = ".tensorboard-old-"
# Events are written when a run's writer closes; the queue only has to avoid a flush per
# event.
_MAX_QUEUE = 100_000
_FLUSH_SECS = 3600
# Steps are integers: the sweep's step is this times the severity when that is whole.
_SEVERITY_SCALE = 1000


def write_tensorboard(
    results: Results,
    workdir: Path,
    plots: Sequence[tuple[str, str]] = (),
    *,
    seed_curves: int = DEFAULT_SEED_CURVES,
) -> list[Path]:
    """Write ``WORKDIR/tensorboard/`` from a study's results, replacing any earlier one.

    The new log directory is written beside the old one and swapped in once complete, so a
    rebuild (``--report_only``) never leaves duplicated events and a failure leaves the
    earlier logs as they were.

    Args:
      results: the study's results. Conditions are shown with the seeds they hold: pass
        the results the report shows to leave the same diverged seeds out.
      workdir: the study's workdir; nothing is written outside ``workdir/tensorboard``
        except its staging folder while this runs.
      plots: ``(caption, path relative to workdir)`` of the report's PNGs; a missing file
        is listed as missing rather than failing the logs.
      seed_curves: how many seeds per condition (the first, in ``seed_indices`` order) get
        a run of their own curves; 0 for none. Fewer where the log directory would hold
        more than ``MAX_RUNS`` runs (the condition's ``condition/summary`` text says so).

    Returns:
      The directories of the runs written (study, then per condition its run and its seeds'
      runs), under ``workdir/tensorboard``.

    Raises:
      ImportError: tensorboardX is not installed.
      ValueError: ``seed_curves`` is negative, or two conditions map to the same run.
    """
    try:  # tensorboardX is optional: only the TensorBoard logs need it
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "TensorBoard logs need tensorboardX: pip install tensorboardX") from error
    if seed_curves < 0:
        raise ValueError(f"seed_curves must be 0 or more, got {seed_curves}")
    workdir = Path(workdir)
    conditions = results.conditions
    runs = _run_names(conditions, seed_curves)
    root = workdir / TENSORBOARD_DIR
    for leftover in [*workdir.glob(_STAGING_PREFIX + "*"), *workdir.glob(_OLD_PREFIX + "*")]:
        shutil.rmtree(leftover, ignore_errors=True)  # of a call that was killed

    staging = workdir / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    staging.mkdir()  # mode from the umask, as the workdir's other files

    @contextmanager
    def writer(run: str) -> Iterator[Any]:
        w = SummaryWriter(str(staging / run), max_queue=_MAX_QUEUE, flush_secs=_FLUSH_SECS)
        try:
            yield w
        finally:
            w.close()

    try:
        with writer(STUDY_RUN) as w:
            _write_study(w, results, workdir, plots, conditions)
        for name, condition in conditions.items():
            with writer(runs[name][0]) as w:
                _write_condition(w, condition, len(runs[name]) - 1, seed_curves)
            for row, run in enumerate(runs[name][1:]):
                with writer(run) as w:
                    _write_seed(w, condition, row)
        if root.exists():
            old = workdir / f"{_OLD_PREFIX}{uuid.uuid4().hex[:12]}"
            root.rename(old)
            staging.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return [root / STUDY_RUN] + [root / run for name in conditions for run in runs[name]]


def _run_names(conditions: Mapping[str, ConditionResults],
               seed_curves: int) -> dict[str, list[str]]:
    """Per condition: its run's path, then its shown seeds' runs, relative to the root."""
    # One run for the study, one per condition, then as many seed runs as still fit.
    fit = max(0, (MAX_RUNS - 1) // max(1, len(conditions)) - 1)
    runs: dict[str, list[str]] = {}
    owner: dict[str, str] = {STUDY_RUN: "the study"}
    for name, condition in conditions.items():
        run = _run_path(name)
        seeds = [int(s) for s in condition.seed_indices][:min(seed_curves, fit)]
        width = max(4, *(len(str(s)) for s in seeds)) if seeds else 4
        runs[name] = [run] + [f"{run}/seed_{s:0{width}d}" for s in seeds]
        for path in runs[name]:
            if path in owner:
                raise ValueError(
                    f"condition {name!r} and {owner[path]} would both write the TensorBoard "
                    f"run {path!r}; rename one of them")
            owner[path] = f"condition {name!r}"
    return runs


def _run_path(name: str) -> str:
    # A "/" in a condition name ("digits/linear") nests runs, which TensorBoard shows as
    # the same name; every part is made a safe folder name, never "." or "..".
    parts = []
    for part in str(name).split("/"):
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in part)
        parts.append("_" if safe in ("", ".", "..") else safe)
    return "/".join(parts)


def _finite_points(steps: np.ndarray, values: np.ndarray) -> Iterator[tuple[int, float]]:
    for step, value in zip(steps, values, strict=True):
        if np.isfinite(value):
            yield int(step), float(value)


def _write_spread(w: Any, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
    """``tag/mean``, ``tag/min`` and ``tag/max`` over axis 0 at each step, finite values only."""
    finite = np.isfinite(values)
    kept = finite.any(axis=0)
    if values.shape[0] == 0 or not kept.any():
        return
    masked = np.where(finite, values, np.nan)[:, kept]
    for stat, reduce in (("mean", np.nanmean), ("min", np.nanmin), ("max", np.nanmax)):
        for step, value in zip(steps[kept], reduce(masked, axis=0), strict=True):
            w.add_scalar(f"{tag}/{stat}", float(value), int(step))


def _curves(condition: ConditionResults) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    curves = condition.curves
    if "step" not in curves:
        return np.zeros(0, dtype=int), {}
    steps = np.asarray(curves["step"], dtype=np.int64)
    return steps, {
        name: np.asarray(values, dtype=float).reshape(-1, steps.size)
        for name, values in curves.items() if name != "step"
    }


def _sweeps(
    condition: ConditionResults,
) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(evaluator, shift, measure, steps, severities, S x K values)`` of every severity
    sweep of the evaluators' presentations (their ``sweeps``)."""
    for evaluator, sweep in sweeps_of(condition):
        levels = np.asarray(sweep.severities, dtype=np.float64).reshape(-1)
        yield (evaluator, sweep.shift, sweep.measure, _severity_steps(levels), levels,
               np.asarray(sweep.values).astype(float))


def _severity_steps(severities: np.ndarray) -> np.ndarray:
    # 1000 x severity spaces the points as the severities are spaced (0, .1, .2, .3, .5);
    # where that is not a whole, increasing, non-negative number, the index is the step.
    scaled = severities * _SEVERITY_SCALE
    steps = np.rint(scaled).astype(np.int64)
    if (np.all(np.isfinite(scaled)) and np.allclose(scaled, steps, rtol=0, atol=1e-6)
            and np.all(steps >= 0) and np.all(np.diff(steps) > 0)):
        return steps
    return np.arange(severities.size, dtype=np.int64)


def _write_condition(
    w: Any, condition: ConditionResults, seeds_shown: int, seed_curves: int,
) -> None:
    steps, curves = _curves(condition)
    for name, values in curves.items():
        _write_spread(w, f"curves/{name}", steps, values)
    rows: dict[str, list[str]] = {}
    for evaluator, shift, measure, sweep_steps, levels, values in _sweeps(condition):
        _write_spread(w, f"{evaluator}/{shift}/{measure}", sweep_steps, values)
        rows.setdefault(evaluator, []).extend(
            f"| {shift} | {s} | {v:g} |" for s, v in zip(sweep_steps, levels, strict=True))
    for evaluator, lines in rows.items():
        w.add_text(f"{evaluator}/severities", "\n".join(
            [f"Step of each severity in the `{evaluator}/` charts.", "",
             "| shift | step | severity |", "|---|---:|---:|", *dict.fromkeys(lines)]), 0)
    w.add_text("condition/summary", _condition_text(condition, seeds_shown, seed_curves), 0)


def _condition_text(condition: ConditionResults, seeds_shown: int, seed_curves: int) -> str:
    seeds = [int(s) for s in condition.seed_indices]
    steps = () if condition.diverged_at_step is None else condition.diverged_at_step
    diverged = [s for s, step in zip(seeds, steps, strict=False) if step >= 0]
    lines = [
        f"{len(seeds)} seeds" + (f" (indices {seeds[0]}–{seeds[-1]})" if seeds else "") + ".",
        "`mean`, `min` and `max` are across the seeds' finite values at each step "
        "(a diverged seed's curves are NaN from its divergence on).",
        f"Runs of single seeds: the first {seeds_shown}." if seeds_shown else
        "No runs of single seeds.",
    ]
    if seeds_shown < min(len(seeds), seed_curves):
        lines.append(f"`seed_curves` asked for {seed_curves}: TensorBoard ticks no run by "
                     f"default once a log directory holds more than {MAX_RUNS}.")
    if diverged:
        lines.append(f"Diverged seeds: {', '.join(map(str, diverged))}.")
    return "\n\n".join(lines)


def _write_seed(w: Any, condition: ConditionResults, row: int) -> None:
    steps, curves = _curves(condition)
    for name, values in curves.items():
        for step, value in _finite_points(steps, values[row]):
            w.add_scalar(f"seed_curves/{name}", value, step)
    for evaluator, shift, measure, sweep_steps, _, values in _sweeps(condition):
        for step, value in _finite_points(sweep_steps, values[row]):
            w.add_scalar(f"seed_{evaluator}/{shift}/{measure}", value, step)


def _write_study(
    w: Any, results: Results, workdir: Path, plots: Sequence[tuple[str, str]],
    conditions: Mapping[str, ConditionResults],
) -> None:
    config = results.config
    title = config.get("title") or f"negres study: {results.task.name}"
    heading = [f"# {title}"]
    if results.finding:
        heading.append(f"**Finding.** {results.finding}")
    heading.append("Conditions: " + ", ".join(f"`{n}`" for n in conditions) + ".")
    w.add_text("study/report", "\n\n".join(heading), 0)
    w.add_text("study/config", "```json\n" + config_json(config) + "\n```", 0)
    captions = ["| image | caption |", "|---|---|"]
    for caption, relative in plots:
        tag = f"plots/{Path(relative).stem}"
        image = _read_png(workdir / relative)
        if image is None:
            captions.append(f"| {tag} | {caption} (file missing: {relative}) |")
            continue
        w.add_image(tag, image, 0, dataformats="HWC")
        captions.append(f"| {tag} | {caption} |")
    if plots:
        w.add_text("study/plots", "\n".join(captions), 0)
    layout = _margin_layout(conditions)
    if layout:
        w.add_custom_scalars(layout)


def config_json(config: Mapping[str, Any]) -> str:
    """The resolved config as the indented JSON the ``study/config`` text holds."""
    return json.dumps(config, indent=2, default=str)


def _read_png(path: Path) -> np.ndarray | None:
    from PIL import Image  # a dependency of matplotlib

    if not path.is_file():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _margin_layout(conditions: Mapping[str, ConditionResults]
                   ) -> dict[str, dict[str, list[Any]]]:
    """Custom Scalars "Margin" charts: each mean with its min–max band, per curve and sweep."""
    curves: dict[str, list[Any]] = {}
    sweeps: dict[str, dict[str, list[Any]]] = {}
    for condition in conditions.values():
        for name in _curves(condition)[1]:
            curves.setdefault(name, _margin(f"curves/{name}"))
        for evaluator, shift, measure, *_ in _sweeps(condition):
            sweeps.setdefault(evaluator, {}).setdefault(
                f"{shift}: {measure}", _margin(f"{evaluator}/{shift}/{measure}"))
    layout: dict[str, dict[str, list[Any]]] = {}
    if curves:
        layout["learning curves: mean, band = min to max across seeds"] = curves
    for evaluator, charts in sweeps.items():
        layout[f"{evaluator}: mean, band = min to max across seeds"] = charts
    return layout


def _margin(tag: str) -> list[Any]:
    return ["Margin", [f"{tag}/mean", f"{tag}/min", f"{tag}/max"]]
