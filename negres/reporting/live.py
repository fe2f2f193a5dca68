"""Learning curves from :func:`negres.train` as TensorBoard runs and a tidy CSV, live or after.

The command line writes a study's curves to ``WORKDIR/tensorboard`` and ``metrics.csv``
once the study is done; these helpers give a researcher calling :func:`negres.train`
directly the same logs, written while the seeds train. ``negres.train(..., progress=fn)``
calls ``fn(update)`` once per segment with a :class:`~negres.training.events.TrainingProgress`
holding the segment's new curve points ``(H..., S, P)`` (the grid's axes, then the seed
axis, then the points); each class here is such an ``fn``, and its ``write(result)`` writes a
finished :class:`negres.TrainResult` (curves ``(H..., S, T)``) the same way::

    import negres
    from negres.reporting.live import CurvesCsv, TensorBoardLog, fan_out

    with TensorBoardLog("logs/adam") as tensorboard:
        result = negres.train(program, data, steps=2000, batch_size=64, num_seeds=16,
                              grid={"learning_rate": [1e-3, 1e-2]}, eval_every=100,
                              progress=fan_out(negres.progress_reporter(), tensorboard,
                                               CurvesCsv("logs/adam/curves.csv")))
    # `tensorboard --logdir logs` shows the points as each segment ends. After the fact:
    TensorBoardLog("logs/again").write(result)

Every statistic is over the finite values at a step: a diverged seed's curves are NaN from
its divergence on, so it leaves the mean, min and max there (as in the command line's logs
and plots) and its own line stops.

On several hosts every process gets the same updates: pass these on process 0 only
(``jax.process_index() == 0``), or each process writes the same points again.
"""

from __future__ import annotations

import csv
import numbers
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from negres.reporting.tensorboard import (
    DEFAULT_SEED_CURVES,
    MAX_RUNS,
    _finite_points,
    _margin,
    _write_spread,
)
from negres.training.events import ProgressFn, TrainingProgress

if TYPE_CHECKING:  # only named in annotations: any object with its fields is written
    from negres.training.driver import TrainResult

# The run of a call without a grid: one run holds every seed's spread.
NO_GRID_RUN = "all"
# Columns of the curves CSV around the grid's (and, where seeds repeat, the row's) columns.
CSV_LEADING = ("step", "seed")
CSV_TRAILING = ("metric", "value", "diverged", "stopped")
_CSV_ROW = "row"
# Characters kept in a run's folder name; "=" and "," spell the grid point
# (learning_rate=0.01,weight_decay=0.0001), anything else (a "/") becomes "_".
_RUN_NAME_CHARACTERS = frozenset("-_.=,+")
_LAYOUT_TITLE = "learning curves: mean, band = min to max across seeds"


def _points(source: TrainingProgress | TrainResult) -> TrainingProgress:
    """The points of an update, or of a TrainResult (or anything with its fields) as the
    update that ends it, checked and as NumPy arrays."""
    steps = np.asarray(source.curve_steps, dtype=np.int64).reshape(-1)
    curves = {name: np.asarray(values, dtype=np.float64)
              for name, values in source.curves.items()}
    seeds = np.asarray(source.seed_indices, dtype=np.int64).reshape(-1)
    grid = {name: tuple(values) for name, values in (source.grid or {}).items()}
    shape = (*(len(values) for values in grid.values()), seeds.size)
    for name, values in curves.items():
        if values.shape != (*shape, steps.size):
            raise ValueError(
                f"curve {name!r} has shape {values.shape}; a grid of shape {shape[:-1]}, "
                f"{seeds.size} seeds and {steps.size} curve steps make {(*shape, steps.size)}")
    diverged = np.asarray(source.diverged_at, dtype=np.int64)
    # TrainResult gains stopped_at with early stopping; a result from before has none.
    stopped = getattr(source, "stopped_at", None)
    stopped = (np.full(shape, -1, dtype=np.int64) if stopped is None
               else np.asarray(stopped, dtype=np.int64))
    for name, array in (("diverged_at", diverged), ("stopped_at", stopped)):
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    end = int(steps[-1]) if steps.size else 0
    return TrainingProgress(
        step=int(getattr(source, "step", end)), steps=int(getattr(source, "steps", end)),
        num_seeds=seeds.size, elapsed_s=float(getattr(source, "elapsed_s", 0.0)),
        curve_steps=steps, curves=curves, seed_indices=seeds, grid=grid,
        diverged_at=diverged, stopped_at=stopped)


def _value_texts(values: tuple[Any, ...]) -> list[str]:
    """One grid axis's values as short texts (``0.01``, ``3e-05``), exact where short is not
    enough to tell two values apart."""
    def short(value: Any) -> str:
        if isinstance(value, numbers.Integral):
            return str(int(value))
        return f"{float(value):.6g}" if isinstance(value, numbers.Real) else str(value)

    texts = [short(v) for v in values]
    if len(set(texts)) < len(texts):
        texts = [repr(v.item() if isinstance(v, np.generic) else v) for v in values]
    return texts


def _grid_runs(grid: Mapping[str, tuple[Any, ...]]) -> list[str]:
    """``(H_1 * ... * H_k)`` run names in ``np.ndindex`` order: ``name=value,...``."""
    if not grid:
        return [NO_GRID_RUN]
    texts = [[f"{name}={text}" for text in _value_texts(values)]
             for name, values in grid.items()]
    names = []
    for cell in np.ndindex(*(len(t) for t in texts)):
        name = ",".join(texts[axis][i] for axis, i in enumerate(cell))
        names.append("".join(ch if ch.isalnum() or ch in _RUN_NAME_CHARACTERS else "_"
                             for ch in name))
    return names


def _seed_runs(seed_indices: np.ndarray, shown: int) -> list[str]:
    """The folder of each shown row's run: ``seed_0003``; ``row_0003`` where rows repeat a
    seed (``hyperparams=`` rows), as two rows of one seed would share a folder."""
    if np.unique(seed_indices).size < seed_indices.size:
        labels, prefix = list(range(shown)), "row"
    else:
        labels, prefix = [int(s) for s in seed_indices[:shown]], "seed"
    width = max(4, *(len(str(label)) for label in labels)) if labels else 4
    return [f"{prefix}_{label:0{width}d}" for label in labels]


class _EventFile:
    """One TensorBoard run's event file, written synchronously.

    tensorboardX's ``SummaryWriter`` hands events to a background thread through a queue,
    and its ``flush()`` does not wait for that queue: a flushed writer may still hold the
    segment's points. Writing the events here and flushing the file (tensorboardX's
    ``RecordWriter.flush`` fsyncs) puts every point on disk before the update returns.
    """

    def __init__(self, directory: Path):
        # tensorboardX is optional: only a TensorBoard log needs it.
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2
        from tensorboardX.summary import custom_scalars, scalar

        self._event, self._scalar, self._custom_scalars = event_pb2.Event, scalar, custom_scalars
        directory.mkdir(parents=True, exist_ok=True)
        # The file's name holds the time in whole seconds and the host: a second writer of
        # the same run in the same second (a rerun, another TensorBoardLog) would reopen
        # and truncate the first's file without a suffix of its own.
        self._file = EventsWriter(str(directory / "events"),
                                  f".{os.getpid()}.{uuid.uuid4().hex[:8]}")

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._file.write_event(self._event(wall_time=time.time(), step=int(step),
                                           summary=self._scalar(tag, float(value))))

    def add_custom_scalars(self, layout: dict[str, dict[str, list[Any]]]) -> None:
        self._file.write_event(self._event(wall_time=time.time(), step=0,
                                           summary=self._custom_scalars(layout)))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardLog:
    """A progress function that writes each seed's curves to TensorBoard as they train.

    ``LOGDIR`` gets the runs the command line's ``WORKDIR/tensorboard/CONDITION`` holds, one
    per grid point instead of one per condition:

    - ``LOGDIR/learning_rate=0.01/`` (one run per grid point, named ``name=value`` joined by
      ``,``; ``LOGDIR/all/`` without a grid): per curve ``curves/NAME/mean``, ``.../min`` and
      ``.../max`` across that grid point's seeds at every curve step, over finite values
      only (a step no seed is finite at has no point), and a Custom Scalars layout drawing
      each mean in its min-max band.
    - ``LOGDIR/learning_rate=0.01/seed_0003/``: the first ``seed_curves`` seeds (in
      ``seed_indices`` order) get a run of their own ``seed_curves/NAME`` (finite points),
      so their lines overlay on one chart. Rows of ``hyperparams=`` that repeat a seed are
      named by row (``row_0003``); their spread mixes those rows' hyperparameters, as
      :class:`~negres.training.events.TrainingProgress` does not carry them.

    Each update's events are on disk when the call returns, so ``tensorboard --logdir
    LOGDIR`` shows every finished segment while training runs. Each run keeps its event file
    open until :meth:`close` (or the end of a ``with`` block); writing again after
    :meth:`close` opens new event files in the same runs. Write each training call to a
    logdir of its own: a second call's points would join the first's at the same steps.

    Args:
      logdir: the folder of runs; created on the first write.
      seed_curves: how many seeds per grid point get a run of their own; 0 for none.
        Fewer where the log directory would hold more than ``MAX_RUNS`` runs, beyond which
        TensorBoard ticks no run by default.

    Raises:
      ImportError: tensorboardX is not installed.
      ValueError: ``seed_curves`` is negative.
    """

    def __init__(self, logdir: str | os.PathLike[str], *,
                 seed_curves: int = DEFAULT_SEED_CURVES):
        try:  # here rather than after the training call compiled
            import tensorboardX  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "TensorBoard logs need tensorboardX: pip install tensorboardX") from error
        if seed_curves < 0:
            raise ValueError(f"seed_curves must be 0 or more, got {seed_curves}")
        self.logdir = Path(logdir)
        self.seed_curves = seed_curves
        self._runs: dict[str, _EventFile] = {}

    def __call__(self, update: TrainingProgress) -> None:
        """Write one segment's new points (``update.curves`` ``(H..., S, P)``) and flush."""
        self._write(_points(update))

    def write(self, result: TrainResult) -> list[Path]:
        """Write a finished :class:`negres.TrainResult` the way the updates of its training
        would have been written (curves ``(H..., S, T)`` at ``curve_steps`` ``(T,)``).

        Returns:
          The directories of the runs written: per grid point its run, then its seeds'.
        """
        return self._write(_points(result))

    def close(self) -> None:
        """Close every run's event file."""
        runs, self._runs = self._runs, {}
        for run in runs.values():
            run.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _run(self, name: str, curves: Mapping[str, np.ndarray] | None = None) -> _EventFile:
        run = self._runs.get(name)
        if run is None:
            run = self._runs[name] = _EventFile(self.logdir / name)
            if curves:  # TensorBoard merges the runs' layouts, dropping repeated charts
                run.add_custom_scalars(
                    {_LAYOUT_TITLE: {c: _margin(f"curves/{c}") for c in curves}})
        return run

    def _write(self, points: TrainingProgress) -> list[Path]:
        grid_runs = _grid_runs(points.grid)
        # Every grid point's run, then as many seed runs per grid point as still fit.
        fit = max(0, MAX_RUNS // len(grid_runs) - 1)
        seed_runs = _seed_runs(points.seed_indices,
                               min(self.seed_curves, fit, points.seed_indices.size))
        written = []
        cells = np.ndindex(*(len(v) for v in points.grid.values()))
        for cell, grid_run in zip(cells, grid_runs, strict=True):
            run = self._run(grid_run, points.curves)
            for name, values in points.curves.items():
                _write_spread(run, f"curves/{name}", points.curve_steps, values[cell])
            run.flush()
            written.append(self.logdir / grid_run)
            for row, seed_run in enumerate(seed_runs):
                path = f"{grid_run}/{seed_run}"
                run = self._run(path)
                for name, values in points.curves.items():
                    for step, value in _finite_points(points.curve_steps, values[cell][row]):
                        run.add_scalar(f"seed_curves/{name}", value, step)
                run.flush()
                written.append(self.logdir / path)
        return written


class CurvesCsv:
    """A progress function that appends each seed's new curve points to a tidy CSV.

    Columns: ``step, seed, <grid names...>, metric, value, diverged, stopped``; one row per
    curve point of each seed, grid point and curve, in the order step, grid point, seed,
    curve. It follows the command line's ``metrics.csv`` (:mod:`negres.reporting.tidy`):
    ``seed`` is the seed index, ``metric`` the name (here a curve's, ``eval_accuracy``,
    ``train_loss``), ``value`` a float written exactly (``nan`` and ``inf`` kept: a
    diverged seed keeps its rows). It differs in that a row is one curve point, not one
    final number: ``step`` is the optimizer step the point was taken after; the grid's
    values stand in their own columns where ``metrics.csv`` names a ``condition``;
    ``diverged`` and ``stopped`` say whether the seed had diverged, or been stopped early,
    at or before that step (``metrics.csv``'s ``diverged``: ever); ``shift``, ``severity``,
    ``direction``, ``units``, ``sampling``, ``evaluator`` and ``look`` are left out, as
    curves have none. Where rows repeat a seed (``hyperparams=``), a ``row`` column after
    ``seed`` gives the row's position on the seed axis.

    Each update's rows are flushed and fsynced before the call returns, so a run killed
    later keeps every finished segment's rows (a kill during a write may leave a partial
    last line). No file stays open between updates.

    Args:
      path: the CSV file; its folder is created on the first write.
      append: False: the first write replaces any file at ``path``. True: rows are appended
        after an existing file's header (a training call resumed from a checkpoint), which
        must name the same columns.

    Raises:
      ValueError (on a write): a grid axis is named like a column, or the columns differ
        from those already written (another grid, or the existing file's with ``append``).
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False):
        self.path = Path(path)
        self.append = append
        self.columns: tuple[str, ...] | None = None  # known from the first write

    def __call__(self, update: TrainingProgress) -> None:
        """Append one segment's rows: ``(H...) * S * P * len(curves)`` of them."""
        self._write(_points(update))

    def write(self, result: TrainResult) -> Path:
        """Append the rows of a finished :class:`negres.TrainResult` (curves ``(H..., S,
        T)``): the rows its training's updates would have appended, in the same order.

        Returns:
          The CSV's path.
        """
        self._write(_points(result))
        return self.path

    def __enter__(self) -> CurvesCsv:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        pass  # nothing stays open; a context manager to be used like TensorBoardLog

    def _columns(self, points: TrainingProgress) -> tuple[str, ...]:
        repeated = np.unique(points.seed_indices).size < points.seed_indices.size
        leading = (*CSV_LEADING, *((_CSV_ROW,) if repeated else ()))
        columns = (*leading, *points.grid, *CSV_TRAILING)
        clash = sorted(set(points.grid) & {*leading, *CSV_TRAILING})
        if clash:
            raise ValueError(f"grid axes {clash} would share a column name of the curves CSV; "
                             f"its columns are {list(columns)}")
        return columns

    def _write(self, points: TrainingProgress) -> None:
        columns = self._columns(points)
        mode = "a"
        if self.columns is None:
            if self.append and self.path.is_file() and self.path.stat().st_size > 0:
                with self.path.open(newline="") as f:
                    existing = tuple(next(csv.reader(f), ()))
                if existing != columns:
                    raise ValueError(f"{self.path} has the columns {list(existing)}; this "
                                     f"training writes {list(columns)}")
            else:
                mode = "w"
        elif columns != self.columns:
            raise ValueError(f"{self.path} was started with the columns {list(self.columns)}; "
                             f"this update has {list(columns)} (another grid): write each "
                             "training call to a CSV of its own")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repeated = _CSV_ROW in columns
        grid_values = list(np.ndindex(*(len(v) for v in points.grid.values())))
        names = list(points.curves)
        with self.path.open(mode, newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            if mode == "w":
                writer.writerow(columns)
            for p, step in enumerate(points.curve_steps.tolist()):
                for cell in grid_values:
                    grid = [_scalar(values[i]) for values, i in
                            zip(points.grid.values(), cell, strict=True)]
                    for row, seed in enumerate(points.seed_indices.tolist()):
                        diverged = 0 <= points.diverged_at[cell][row] <= step
                        stopped = 0 <= points.stopped_at[cell][row] <= step
                        lead = [step, seed, *([row] if repeated else []), *grid]
                        # floats as repr (csv's str): they read back exactly, nan included
                        writer.writerows(
                            [*lead, name, float(points.curves[name][cell][row, p]),
                             bool(diverged), bool(stopped)] for name in names)
            f.flush()
            os.fsync(f.fileno())
        self.columns = columns


def _scalar(value: Any) -> Any:
    """A grid value as a plain Python value: csv writes a float subclass by its repr, which
    for a NumPy scalar is ``np.float64(0.01)``."""
    return value.item() if isinstance(value, np.generic) else value


def fan_out(*fns: ProgressFn | None) -> ProgressFn:
    """One progress function that calls several, e.g. the bar and TensorBoard::

        negres.train(..., progress=fan_out(negres.progress_reporter(), TensorBoardLog(d)))

    Args:
      *fns: progress functions, called in this order with each update; None entries are
        skipped, so an optional logger can be passed as ``tb if logdir else None``.

    Returns:
      ``progress(update)``. An exception from one function propagates at once (the later
      ones miss that update), as it would from that function alone.
    """
    kept = tuple(fn for fn in fns if fn is not None)

    def progress(update: TrainingProgress) -> None:
        for fn in kept:
            fn(update)

    return progress
