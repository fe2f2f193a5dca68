"""A study's per-seed numbers as one tidy table, and several workdirs loaded together.

Tidy here means one row per observation and one column per variable: a row is one number
of one seed, ``(condition, seed, metric, shift, severity) -> value``, with what is needed
to read it alone (the metric's declared ``direction``, ``units`` and ``sampling``, the
``evaluator`` that computed it, whether the seed ``diverged``, the ``look`` of the study
that added the seed). Every per-seed metric of ``results.json`` gives one row per seed
(``shift`` ``""``, ``severity`` NaN); every severity sweep an evaluator's presentation
yields (its ``sweeps``: robustness's) gives one row per seed, shift, severity and
measure.
Nothing is averaged or left out: diverged seeds keep their rows, NaN and inf values stay.
A run writes the table as ``metrics.csv`` (and ``metrics.parquet`` where pyarrow is
installed); :func:`load_results` builds it from ``results.json`` for any number of
workdirs, with a leading ``run`` column, plus the seed-by-step, seed-by-seed, per-example
and saved attribution arrays with named axes.

``sampling`` says which interval a metric's numbers call for: ``seeds`` (independent per
seed: :func:`negres.statistics.compare` of the values), ``examples`` (each seed's mean over the
same test examples, whose per-example values load as ``EVALUATOR/per_seed/per_example/NAME``
``(S, N)``) or ``pairwise`` (row means of a seed x seed matrix). Two studies' test accuracy,
compared over seeds and test examples (different seeds, hence unpaired)::

    import negres
    loaded = negres.load_results(["runs/adam", "runs/sgd"])
    x, y = (loaded.arrays[run]["mlp"]["performance/per_seed/per_example/test_accuracy"].values
            for run in ("adam", "sgd"))
    print(negres.statistics.compare_examples(x, y, paired=False)["verdict"])
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from negres.files import write_atomic, write_text_atomic
from negres.reporting.sections import sweeps_of
from negres.results import (
    ConditionResults,
    Results,
    Saved,
    instance_folder,
    load_results_file,
)

# The tidy table's columns, in this order in metrics.csv, metrics.parquet and the table.
COLUMNS = ("condition", "seed", "metric", "shift", "severity", "value", "direction", "units",
           "sampling", "evaluator", "diverged", "look")
CSV_FILE = "metrics.csv"
PARQUET_FILE = "metrics.parquet"
PANDAS_MISSING = ("negres.load_results needs pandas: pip install pandas (the workdir's "
                  "metrics.csv is plain CSV)")


class LabelledArray(NamedTuple):
    """An array with named axes, in the spirit of ``xarray.DataArray`` without needing it.

    Attributes:
      values: the array, e.g. ``(S, T)`` for a learning curve; attributions are
        memory-mapped from their ``.npy`` file, read when indexed.
      dims: one name per axis of ``values``, e.g. ``("seed", "step")``.
      coords: dim name -> its labels (``(S,)`` seed indices, ``(T,)`` steps, ``(K,)``
        severities); a dim without labels has no entry.
    """

    values: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]


class LoadedResults(NamedTuple):
    """What :func:`load_results` returns.

    Attributes:
      table: a pandas DataFrame: ``run`` then :data:`COLUMNS`, one row per number.
      arrays: run -> condition -> name -> :class:`LabelledArray`. Names: ``curves/NAME``
        ``(S, T)`` with dims ``("seed", "step")``; ``EVALUATOR/pairwise/PATH`` ``(S, S,
        ...)`` with dims ``("seed", "seed_other", ...)``, a trailing axis of a shift's
        severities named ``"severity"``; ``EVALUATOR/per_seed/PATH`` ``(S, ...)``;
        ``attributions/METHOD`` ``(S, N, *input_shape)`` with dims ``("seed", "example",
        "input_0", ...)`` and ``attributions/inputs`` ``(N, *input_shape)``,
        ``attributions/labels`` ``(N,)`` (of an evaluator instance ``NAME``:
        ``NAME/attributions/...``).
      results: run -> its :class:`negres.results.Results`, read from ``results.json``.
    """

    table: Any
    arrays: dict[str, dict[str, dict[str, LabelledArray]]]
    results: dict[str, Results]


# ------------------------------------------------------------------------- the table


def _float(value: Any) -> float:
    # JSON null stands for a number that could not be computed; the table keeps it as NaN.
    return math.nan if value is None else float(value)


def _looks(results: Results, condition: str, num_seeds: int) -> list[int]:
    """``(S,)`` the look (1, 2, ...) that added each of ``condition``'s seeds, in row order.

    ``looks`` holds every condition's cumulative seed count at each look and an extension
    appends its seeds after the earlier ones; a results.json written before looks existed
    had one look.
    """
    counts = [look.get(condition) for look in results.looks if isinstance(look, Mapping)]
    out = []
    for row in range(num_seeds):
        number = next((k for k, n in enumerate(counts, 1) if isinstance(n, int) and row < n),
                      max(len(counts), 1))
        out.append(number)
    return out


def _seeds(condition: ConditionResults) -> tuple[list[int], list[bool]]:
    """Each row's seed index and whether that seed diverged, ``(S,)`` each."""
    seeds = [int(s) for s in condition.seed_indices]
    steps = condition.diverged_at_step
    diverged = ([False] * len(seeds) if steps is None
                else [bool(s is not None and s >= 0) for s in steps])
    return seeds, diverged


def tidy_rows(results: Results) -> list[dict[str, Any]]:
    """One dict per number of one seed, with the keys :data:`COLUMNS` in order.

    Args:
      results: a study's results (:func:`negres.results.load_results_file`).

    Returns:
      Per condition, in results.json's order: for each metric, ``(S,)`` rows (``shift``
      ``""``, ``severity`` NaN); then for each severity sweep ``(S, K)`` of the
      evaluators' presentations (:attr:`~negres.reporting.sections.Presentation.sweeps`),
      per shift and measure, ``K * S`` rows. ``seed`` is the seed index, ``diverged``
      whether its training stopped being finite, ``look`` the look of the study that
      added it.
    """
    return [row for name, condition in results.items()
            for row in _condition_rows(results, name, condition)]


def _condition_rows(results: Results, name: str,
                    condition: ConditionResults) -> list[dict[str, Any]]:
    seeds, diverged = _seeds(condition)
    looks = _looks(results, name, len(seeds))

    def row(i: int, metric: str, shift: str, severity: float, value: Any, direction: str,
            units: str, evaluator: str, sampling: str) -> dict[str, Any]:
        return {"condition": name, "seed": seeds[i], "metric": metric, "shift": shift,
                "severity": severity, "value": _float(value), "direction": direction,
                "units": units, "sampling": sampling, "evaluator": evaluator,
                "diverged": diverged[i], "look": looks[i]}

    rows = []
    for metric, values in condition.metrics.items():
        values = np.asarray(values).reshape(-1)
        if len(values) != len(seeds):
            raise ValueError(f"condition {name!r}'s metric {metric!r} holds {len(values)} "
                             f"values for its {len(seeds)} seeds: results.json is damaged")
        info = condition.info(metric)
        rows += [row(i, metric, "", math.nan, value, info.direction, info.units,
                     info.evaluator, info.sampling)
                 for i, value in enumerate(values.tolist())]
    for evaluator, sweep in sweeps_of(condition):
        values = np.asarray(sweep.values)
        if values.shape[0] != len(seeds):  # not one row per seed: not a per-seed sweep
            continue
        rows += [row(i, sweep.measure, sweep.shift, severity, values[i, k], sweep.direction,
                     sweep.units, evaluator, sweep.sampling)
                 for k, severity in enumerate(np.asarray(sweep.severities).tolist())
                 for i in range(values.shape[0])]
    return rows


def write_tidy(results: Results, workdir: str | os.PathLike[str]) -> list[Path]:
    """Write ``workdir/metrics.csv`` and, if pyarrow imports, ``workdir/metrics.parquet``.

    Each file is written whole or not at all (a temporary file renamed into place).

    Args:
      results: the study's results.
      workdir: the study's workdir.

    Returns:
      The paths written, the CSV first.
    """
    workdir = Path(workdir)
    rows = tidy_rows(results)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # floats as repr: they read back exactly, nan and inf included
    written = [workdir / CSV_FILE]
    write_text_atomic(written[0], text.getvalue())
    try:  # pyarrow is optional: metrics.parquet is written only where it is installed
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pyarrow is optional: the CSV holds the same table
        return written
    schema = pa.schema([("condition", pa.string()), ("seed", pa.int64()),
                        ("metric", pa.string()), ("shift", pa.string()),
                        ("severity", pa.float64()), ("value", pa.float64()),
                        ("direction", pa.string()), ("units", pa.string()),
                        ("sampling", pa.string()), ("evaluator", pa.string()),
                        ("diverged", pa.bool_()), ("look", pa.int64())])
    path = workdir / PARQUET_FILE
    table = pa.Table.from_pylist(rows, schema=schema)
    write_atomic(path, lambda f: pq.write_table(table, f), binary=True)
    written.append(path)
    return written


# ------------------------------------------------------------------------ the arrays


def _leaves(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _leaves(value, (*path, str(key)))
    else:
        yield path, tree


def _numeric(value: Any) -> np.ndarray | None:
    try:
        array = np.asarray(value)
    except ValueError:  # ragged lists
        return None
    if array.dtype.kind not in "biuf":
        return None
    return array


def _severities_by_set(evaluations: Mapping[str, Saved]) -> dict[str, np.ndarray]:
    """Set name -> ``(K,)`` its severities, from every evaluator's ``shared.severities``
    and ``shared.sets.NAME.severities`` (multiplicity's)."""
    out: dict[str, np.ndarray] = {}
    for saved in evaluations.values():
        shared = saved.shared
        severities = shared.get("severities")
        if isinstance(severities, Mapping):
            out.update({k: np.asarray(v, float).reshape(-1) for k, v in severities.items()})
        for name, entry in (shared.get("sets") or {}).items():
            if isinstance(entry, Mapping) and "severities" in entry:
                out.setdefault(name, np.asarray(entry["severities"], float).reshape(-1))
    return out


def _trailing(array: np.ndarray, first: int, path: tuple[str, ...],
              severities: Mapping[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Names (and labels) of ``array``'s axes after the ``first`` seed axes: ``severity``
    for a last axis as long as the severities of a set the path names, else ``axisN``."""
    dims = [f"axis{d}" for d in range(first, array.ndim)]
    coords: dict[str, np.ndarray] = {}
    if array.ndim == first + 1:
        levels = next((severities[p] for p in reversed(path) if p in severities), None)
        if levels is not None and levels.size == array.shape[-1]:
            dims, coords = ["severity"], {"severity": levels}
    return dims, coords


def _per_example_axes(array: np.ndarray, path: tuple[str, ...],
                      severities: Mapping[str, np.ndarray]
                      ) -> tuple[list[str], dict[str, np.ndarray]]:
    """Axes after the seed axis of a per-example array: ``(S, N)`` ``["example"]``, ``(S,
    K, N)`` ``["severity", "example"]`` (labelled where the shift's severities are saved)."""
    if array.ndim != 3:
        return [f"axis{d}" for d in range(1, array.ndim - 1)] + ["example"], {}
    levels = severities.get(path[-1])
    coords = ({"severity": levels} if levels is not None and levels.size == array.shape[1]
              else {})
    return ["severity", "example"], coords


def _attribution_arrays(workdir: Path, evaluations: Mapping[str, Saved],
                        seeds: np.ndarray) -> dict[str, LabelledArray]:
    """Saved attributions (``shared.files``: method -> ``.npy`` relative to the workdir)
    memory-mapped, with the inputs and labels saved beside them. Missing files (a workdir
    copied without ``attributions/``) are left out."""
    out: dict[str, LabelledArray] = {}
    for evaluator, saved in evaluations.items():
        files = saved.shared.get("files")
        if not isinstance(files, Mapping):
            continue
        # An instance's files are relative to its own folder, and named after it.
        folder = workdir if saved.kind is None else instance_folder(workdir, evaluator)
        group = "attributions" if saved.kind is None else f"{evaluator}/attributions"
        for method, relative in files.items():
            file = folder / str(relative)
            if not file.is_file():
                continue
            values = np.load(file, mmap_mode="r")
            if values.ndim < 2:
                continue
            example = np.arange(values.shape[1])
            dims = ("seed", "example", *(f"input_{d}" for d in range(values.ndim - 2)))
            out[f"{group}/{method}"] = LabelledArray(
                values, dims, {"seed": seeds, "example": example})
            # CONDITION__METHOD.npy sits beside CONDITION__inputs.npy and __labels.npy.
            suffix = f"__{method}.npy"
            if not file.name.endswith(suffix):
                continue
            prefix = file.name[: -len(suffix)]
            for part in ("inputs", "labels"):
                beside = file.with_name(f"{prefix}__{part}.npy")
                if f"{group}/{part}" in out or not beside.is_file():
                    continue
                array = np.load(beside, mmap_mode="r")
                out[f"{group}/{part}"] = LabelledArray(
                    array, ("example", *(f"input_{d}" for d in range(array.ndim - 1))),
                    {"example": np.arange(array.shape[0])})
    return out


def condition_arrays(condition: ConditionResults,
                     workdir: str | os.PathLike[str] | None = None) -> dict[str, LabelledArray]:
    """One condition's arrays with named axes (see :class:`LoadedResults` for the names).

    Args:
      condition: one condition's results (``results.conditions[NAME]``).
      workdir: where its attributions were saved; None: no attributions.

    Returns:
      name -> :class:`LabelledArray`; curves ``(S, T)``, per-seed ``(S, ...)``, pairwise
      ``(S, S, ...)``, attributions ``(S, N, *input_shape)``.
    """
    seeds = np.asarray(_seeds(condition)[0], dtype=np.int64)
    num_seeds = seeds.size
    out: dict[str, LabelledArray] = {}
    curves = condition.curves
    steps = np.asarray(curves.get("step", []), dtype=np.int64).reshape(-1)
    for name, values in curves.items():
        array = _numeric(values)
        if name == "step" or array is None:
            continue
        if array.size == 0:  # no seed left: [] stands for (0, T)
            array = array.reshape(num_seeds, steps.size)
        if array.shape == (num_seeds, steps.size):
            out[f"curves/{name}"] = LabelledArray(array.astype(np.float64), ("seed", "step"),
                                                  {"seed": seeds, "step": steps})
    evaluations = condition.evaluations
    severities = _severities_by_set(evaluations)
    for evaluator, saved in evaluations.items():
        for kind, leading in (("per_seed", ("seed",)), ("pairwise", ("seed", "seed_other"))):
            for path, value in _leaves(getattr(saved, kind)):
                array = _numeric(value)
                if (array is None or array.ndim < len(leading)
                        or array.shape[: len(leading)] != (num_seeds,) * len(leading)):
                    continue
                if kind == "per_seed" and path[:1] == ("per_example",):
                    dims, coords = _per_example_axes(array, path, severities)
                else:
                    dims, coords = _trailing(array, len(leading), path, severities)
                out["/".join((evaluator, kind, *path))] = LabelledArray(
                    array, (*leading, *dims), dict.fromkeys(leading, seeds) | coords)
    if workdir is not None:
        out.update(_attribution_arrays(Path(workdir), evaluations, seeds))
    return out


# ----------------------------------------------------------------------- loading runs


def load_results(workdirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                 runs: Sequence[str] | None = None) -> LoadedResults:
    """Load one or several workdirs' results as one tidy table and labelled arrays.

    The table is built from each ``results.json`` (not from ``metrics.csv``), so a
    workdir written before ``metrics.csv`` existed loads the same.

    Args:
      workdirs: a workdir, or a sequence of them.
      runs: each workdir's name in the ``run`` column and as the key of ``arrays`` and
        ``results``; by default its directory's name. Must be unique.

    Returns:
      :class:`LoadedResults` ``(table, arrays, results)``.

    Raises:
      ImportError: pandas is not installed.
      ValueError: run names repeat, or ``runs`` and ``workdirs`` differ in length.
      negres.errors.WorkdirError: a workdir holds no valid ``results.json``.
    """
    try:  # pandas is optional: only load_results needs it
        import pandas as pd
    except ImportError:
        raise ImportError(PANDAS_MISSING) from None
    paths = ([Path(workdirs)] if isinstance(workdirs, (str, os.PathLike))
             else [Path(w) for w in workdirs])
    if runs is None:
        names = [Path(os.path.abspath(p)).name for p in paths]
    else:
        names = [runs] if isinstance(runs, str) else [str(r) for r in runs]
        if len(names) != len(paths):
            raise ValueError(f"runs={names!r} names {len(names)} runs for {len(paths)} "
                             "workdirs: give one name per workdir")
    repeated = [n for n, count in Counter(names).items() if count > 1]
    if repeated:
        which = "; ".join(
            f"{n!r} names " + " and ".join(
                str(p) for p, m in zip(paths, names, strict=True) if m == n)
            for n in repeated)
        raise ValueError(f"run names must be unique: {which}; pass runs=[...] with one name "
                         "per workdir")
    loaded = {name: load_results_file(path) for name, path in zip(names, paths, strict=True)}
    records = [{"run": name, **row} for name, results in loaded.items()
               for row in tidy_rows(results)]
    table = pd.DataFrame.from_records(records, columns=["run", *COLUMNS])
    table = table.astype({"seed": "int64", "severity": "float64", "value": "float64",
                          "diverged": "bool", "look": "int64"})
    arrays = {name: {condition: condition_arrays(values, path)
                     for condition, values in results.items()}
              for (name, results), path in zip(loaded.items(), paths, strict=True)}
    return LoadedResults(table, arrays, loaded)
