"""What a study writes for people and programs: :class:`Results`, typed, and its
``results.json`` form, with the layout's version and its check when read back.

Every layer reads results by attribute: a study's :class:`Results` holds each
condition's :class:`ConditionResults` (per-seed metrics with their :class:`MetricInfo`,
what each evaluator saved as :class:`Saved`, learning curves, divergence) and the
:class:`StudyStatistics`. ``Results.to_json()`` is the ``results.json`` layout of schema
version 2 (unchanged), and :meth:`Results.from_json` reads it back; the per-seed arrays
are NumPy arrays in memory and lists in the file. What the statistics compute for one
metric (a summary, a comparison) stays a record of named numbers (a dict), as
:mod:`negres.statistics` returns it.

A foundation: what every layer may read (evaluators' statistics, the report, tidy
tables, TensorBoard logs and a library user's :func:`negres.load_results`) without
importing the study that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from negres.errors import WorkdirError
from negres.files import read_json, to_jsonable

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# An evaluator run under a name of its own (an instance) writes its files (plots, saved
# arrays) under INSTANCES_DIR/<name>/, which its presentation sees as the workdir.
INSTANCES_DIR = "instances"
# The version of results.json's layout; --report_only refuses another.
SCHEMA_VERSION = 2


def sampling_kind(pairwise: Any, per_example: Any) -> str:
    """How a metric's per-seed values were sampled, from what it names (or holds):
    ``"pairwise"`` with a seed x seed matrix, ``"examples"`` with per-example values, else
    ``"seeds"``."""
    if pairwise is not None:
        return "pairwise"
    return "examples" if per_example is not None else "seeds"


class Sample(NamedTuple):
    """A metric's per-seed values with what they were computed from, for the statistics.

    Attributes:
      values: ``(S,)`` one value per seed.
      per_example: ``(S, N)`` each seed's value on each of the ``N`` test examples that
        all seeds share, whose row means are ``values``; None when not over examples.
      pairwise: ``(S, S)`` the seed x seed matrix whose off-diagonal row means are
        ``values``; None when not pairwise.
    """

    values: np.ndarray
    per_example: np.ndarray | None = None
    pairwise: np.ndarray | None = None

    @property
    def sampling(self) -> str:
        """``"pairwise"``, ``"examples"`` or ``"seeds"``."""
        return sampling_kind(self.pairwise, self.per_example)


def at_path(tree: Mapping[str, Any], path: str) -> Any:
    """The entry of a nested mapping at a ``/``-joined path (a ``Metric.pairwise``);
    None when there is none."""
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def pairwise_row_means(matrix: Any) -> np.ndarray:
    """Each seed's mean over the other seeds of a ``(S, S, ...)`` matrix: what a metric that
    names a ``pairwise`` entry holds. NaN entries are left out; NaN with fewer than two
    seeds.

    Returns:
      ``(S, ...)``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    num_seeds = matrix.shape[0]
    if num_seeds == 0:
        return np.zeros(matrix.shape[1:])
    off_diagonal = ~np.eye(num_seeds, dtype=bool).reshape(
        (num_seeds, num_seeds) + (1,) * (matrix.ndim - 2))
    with warnings.catch_warnings():  # one seed: no other to average over, NaN as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.where(off_diagonal, matrix, np.nan), axis=1)


@dataclasses.dataclass
class MetricInfo:
    """What a metric declares (:class:`negres.Metric`) and which evaluator returned it.

    Attributes:
      direction: ``"higher"``, ``"lower"`` or ``"none"`` (no verdict).
      evaluator: the evaluator that returned it ("" when unknown).
      sampling: ``"seeds"``, ``"examples"`` or ``"pairwise"``.
      labels: what the metric is about, e.g. ``{"method": "gradient"}``.
      pairwise: the ``/``-joined path of its seed x seed matrix in the evaluator's
        ``pairwise`` entries; None: not pairwise.
      per_example: the path of its ``(S, N)`` values in the evaluator's ``per_seed``
        entries; None: not over examples.
      units: what one unit of it is; "" for none.
    """

    direction: str = "none"
    evaluator: str = ""
    sampling: str = "seeds"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    pairwise: str | None = None
    per_example: str | None = None
    units: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"direction": self.direction, "labels": dict(self.labels),
                               "evaluator": self.evaluator, "sampling": self.sampling}
        if self.pairwise is not None:
            out["pairwise"] = self.pairwise
        if self.per_example is not None:
            out["per_example"] = self.per_example
        if self.units:
            out["units"] = self.units
        return out

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> MetricInfo:
        return cls(direction=str(entry.get("direction", "none")),
                   evaluator=str(entry.get("evaluator", "")),
                   sampling=str(entry.get("sampling") or sampling_kind(
                       entry.get("pairwise"), entry.get("per_example"))),
                   labels={str(k): str(v) for k, v in (entry.get("labels") or {}).items()},
                   pairwise=entry.get("pairwise"), per_example=entry.get("per_example"),
                   units=str(entry.get("units", "")))


@dataclasses.dataclass
class Saved:
    """What one evaluator saved for one condition.

    Attributes:
      per_seed: nested name -> array whose leading axis is the seed axis ``(S, ...)``.
      pairwise: nested name -> array whose two leading axes are ``(S, S, ...)``.
      shared: anything else (names, counts, true values, the files it wrote).
      kind: the registered evaluator it is an instance of, when it ran under a name of
        its own (:meth:`negres.Evaluator.named`): its metrics are named
        ``<name>/<metric>`` (:func:`instance_metric`), its files lie under
        ``instances/<name>/`` and its kind's presentation reads it through
        :meth:`ConditionResults.instance_view`; None: it ran under its own name.
    """

    per_seed: dict[str, Any] = dataclasses.field(default_factory=dict)
    pairwise: dict[str, Any] = dataclasses.field(default_factory=dict)
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"per_seed": self.per_seed, "pairwise": self.pairwise, "shared": self.shared}
        return out if self.kind is None else out | {"kind": self.kind}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any] | None) -> Saved:
        entry = entry or {}
        kind = entry.get("kind")
        return cls(dict(entry.get("per_seed") or {}), dict(entry.get("pairwise") or {}),
                   dict(entry.get("shared") or {}), None if kind is None else str(kind))


def instance_metric(name: str, metric: str) -> str:
    """The name under which the evaluator instance ``name`` (one run under a name other
    than its kind's) reports its kind's ``metric``: ``<name>/<metric>``, so that two
    instances of one evaluator never return the same metric."""
    return f"{name}/{metric}"


def instance_folder(workdir: Path, name: str) -> Path:
    """Where the evaluator instance ``name`` writes its files: ``workdir/instances/name``."""
    return Path(workdir) / INSTANCES_DIR / name


@dataclasses.dataclass
class Diverged:
    """The seeds whose training stopped being finite: how many, which, at which step."""

    count: int = 0
    seed_indices: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64))
    steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "seed_indices": self.seed_indices, "steps": self.steps}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any] | None) -> Diverged:
        entry = entry or {}
        return cls(int(entry.get("count") or 0), _ints(entry.get("seed_indices", ())),
                   _ints(entry.get("steps", ())))


@dataclasses.dataclass
class ConditionResults:
    """One condition's seeds: every per-seed number, seed axis first.

    Attributes:
      metrics: name -> ``(S,)``.
      metric_info: name -> its :class:`MetricInfo`.
      evaluations: evaluator -> what it saved (:class:`Saved`).
      seed_indices: ``(S,)`` each row's seed index.
      num_seeds: ``S``.
      curves: ``"step"`` -> ``(P,)`` and each learning curve -> ``(S, P)``.
      diverged_at_step: ``(S,)`` the step each seed stopped being finite (-1: never).
      diverged: the diverged seeds, counted.
      task, overrides, hyperparams: what the condition trained (its task's name, its
        overrides of the base config, its optimizer's hyperparameters).
      train_time_s, evaluation_time_s: seconds.
      trained_in_one_call_with: the conditions that shared its training call.
      training_plan: how its seeds were laid out and chunked.
      kept_rows: ``(S_total,)`` bool, set when seeds were left out
        (:func:`negres.statistics.study.without_diverged`): which rows of files saved per
        seed remain; None: every row.
    """

    metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    metric_info: dict[str, MetricInfo] = dataclasses.field(default_factory=dict)
    evaluations: dict[str, Saved] = dataclasses.field(default_factory=dict)
    seed_indices: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64))
    num_seeds: int = 0
    curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    diverged_at_step: np.ndarray | None = None
    diverged: Diverged = dataclasses.field(default_factory=Diverged)
    task: str = ""
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    hyperparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_time_s: float = 0.0
    evaluation_time_s: float = 0.0
    trained_in_one_call_with: list[str] = dataclasses.field(default_factory=list)
    training_plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    kept_rows: np.ndarray | None = None

    def saved_by(self, evaluator: str) -> Saved:
        """What ``evaluator`` saved (empty when it did not run)."""
        return self.evaluations.get(evaluator) or Saved()

    def info(self, metric: str) -> MetricInfo:
        """``metric``'s declaration; direction ``"none"`` when it has none."""
        return self.metric_info.get(metric) or MetricInfo()

    def direction(self, metric: str) -> str:
        """``metric``'s declared direction (``"none"``: described, never given a verdict)."""
        return self.info(metric).direction

    def sample(self, metric: str) -> Sample:
        """``metric``'s values with what its declaration says they were computed from: its
        per-example values or its pairwise matrix (over the seeds kept)."""
        info = self.info(metric)
        values = np.asarray(self.metrics[metric], dtype=float)
        saved = self.saved_by(info.evaluator)
        pairwise = at_path(saved.pairwise, info.pairwise) if info.pairwise else None
        per_example = at_path(saved.per_seed, info.per_example) if info.per_example else None
        return Sample(values,
                      None if per_example is None else np.asarray(per_example, dtype=float),
                      None if pairwise is None else np.asarray(pairwise, dtype=float))

    def kept(self, keep: np.ndarray) -> ConditionResults:
        """These results with only the seeds ``keep`` (``(S,)`` bool) in every per-seed
        array: the rows of ``metrics`` and of every evaluator's ``per_seed`` arrays, the
        rows and columns of its ``pairwise`` arrays; a metric declared as the row means of
        a pairwise array is recomputed over the kept seeds. Learning curves keep every
        seed: they show where the diverged ones stopped."""
        keep = np.asarray(keep, dtype=bool)
        evaluations = {name: dataclasses.replace(
            saved, per_seed=_rows(saved.per_seed, keep, False),
            pairwise=_rows(saved.pairwise, keep, True))
            for name, saved in self.evaluations.items()}
        metrics = {m: np.asarray(v, dtype=float)[keep] for m, v in self.metrics.items()}
        for metric, info in self.metric_info.items():
            if info.pairwise and metric in metrics and info.evaluator in evaluations:
                metrics[metric] = pairwise_row_means(
                    at_path(evaluations[info.evaluator].pairwise, info.pairwise))
        return dataclasses.replace(self, metrics=metrics, evaluations=evaluations,
                                   seed_indices=np.asarray(self.seed_indices)[keep],
                                   kept_rows=keep)

    def instance_view(self, name: str, kind: str | None = None) -> ConditionResults:
        """These results as the evaluator instance ``name`` shows them to its kind's hooks
        (its presentation, its statistics): its saved evaluation and its metrics under its
        kind's names, in place of the kind's own (which the view leaves out; all of them
        where ``name`` did not run here). ``kind``: the evaluator it is an instance of
        (default: what it saved says). The results themselves for an evaluator that ran
        under its own name."""
        kind = kind or self.saved_by(name).kind
        if kind is None or kind == name:
            return self
        prefix = instance_metric(name, "")
        metrics: dict[str, np.ndarray] = {}
        info: dict[str, MetricInfo] = {}
        for metric, values in self.metrics.items():
            declared = self.info(metric)
            if declared.evaluator == kind:
                continue
            if declared.evaluator == name and metric.startswith(prefix):
                metric = metric[len(prefix):]
                declared = dataclasses.replace(declared, evaluator=kind)
            metrics[metric], info[metric] = values, declared
        evaluations = {e: s for e, s in self.evaluations.items() if e not in (kind, name)}
        if name in self.evaluations:
            evaluations[kind] = dataclasses.replace(self.evaluations[name], kind=None)
        return dataclasses.replace(self, metrics=metrics, metric_info=info,
                                   evaluations=evaluations)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "overrides": self.overrides,
            "num_seeds": self.num_seeds,
            "seed_indices": self.seed_indices,
            "metrics": self.metrics,
            "metric_info": {m: i.to_json() for m, i in self.metric_info.items()},
            "evaluations": {e: s.to_json() for e, s in self.evaluations.items()},
            "curves": self.curves,
            "train_time_s": self.train_time_s,
            "trained_in_one_call_with": self.trained_in_one_call_with,
            "training_plan": self.training_plan,
            "diverged_at_step": self.diverged_at_step,
            "diverged": self.diverged.to_json(),
            "hyperparams": self.hyperparams,
            "evaluation_time_s": self.evaluation_time_s,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> ConditionResults:
        seeds = _ints(entry.get("seed_indices", range(int(entry.get("num_seeds") or 0))))
        steps = entry.get("diverged_at_step")
        return cls(
            metrics={m: np.asarray(v, dtype=float) for m, v in
                     (entry.get("metrics") or {}).items()},
            metric_info={m: MetricInfo.from_json(i) for m, i in
                         (entry.get("metric_info") or {}).items()},
            evaluations={e: Saved.from_json(s) for e, s in
                         (entry.get("evaluations") or {}).items()},
            seed_indices=seeds, num_seeds=int(entry.get("num_seeds", seeds.size)),
            curves={k: np.asarray(v, dtype=np.int64 if k == "step" else float)
                    for k, v in (entry.get("curves") or {}).items()},
            diverged_at_step=None if steps is None else _ints(steps),
            diverged=Diverged.from_json(entry.get("diverged")),
            task=str(entry.get("task", "")), overrides=dict(entry.get("overrides") or {}),
            hyperparams=dict(entry.get("hyperparams") or {}),
            train_time_s=float(entry.get("train_time_s") or 0.0),
            evaluation_time_s=float(entry.get("evaluation_time_s") or 0.0),
            trained_in_one_call_with=list(entry.get("trained_in_one_call_with") or ()),
            training_plan=dict(entry.get("training_plan") or {}),
        )


@dataclasses.dataclass
class TaskInfo:
    """The task a study ran on (the first condition's, when conditions switch tasks)."""

    name: str = ""
    kind: str = "classification"
    num_train: int = 0
    num_test: int = 0
    input_shape: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "num_train": self.num_train,
                "num_test": self.num_test, "input_shape": list(self.input_shape)}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> TaskInfo:
        return cls(str(entry.get("name", "")), str(entry.get("kind", "classification")),
                   int(entry.get("num_train") or 0), int(entry.get("num_test") or 0),
                   tuple(int(d) for d in entry.get("input_shape") or ()))


# A statistic of one metric: negres.statistics' summary or comparison, a record of named
# numbers (mean, ci_low, ci_high, verdict, ...).
Record = dict[str, Any]


@dataclasses.dataclass
class StudyStatistics:
    """A study's statistics (:func:`negres.statistics.study.analyze`).

    Attributes:
      summaries: condition -> metric -> summary.
      comparisons: metric -> condition -> its comparison with its reference.
      within_conditions: evaluator -> condition -> family -> label -> comparison (paired
        comparisons inside one condition, e.g. a shift against the clean test set).
      directions: metric -> its declared direction.
      settings: how they were computed (level, resamples, estimand, sequential looks...).
      notes: sentences for the report on what too few seeds cannot tell.
      excluded_diverged_seeds: ``{"count", "seed_indices", "own"}`` per condition and the
        ``"rule"`` that left them out.
      sources: the variance of each metric by source of randomness; None without a design.
      claims: one verdict record per claim the study tests
        (:func:`negres.statistics.claims.judge`); empty without claims.
    """

    summaries: dict[str, dict[str, Record]] = dataclasses.field(default_factory=dict)
    comparisons: dict[str, dict[str, Record]] = dataclasses.field(default_factory=dict)
    within_conditions: dict[str, dict[str, dict[str, dict[str, Record]]]] = (
        dataclasses.field(default_factory=dict))
    directions: dict[str, str] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    excluded_diverged_seeds: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: dict[str, Any] | None = None
    claims: list[Record] = dataclasses.field(default_factory=list)

    def within(self, evaluator: str, condition: str) -> dict[str, dict[str, Record]]:
        """The families of paired comparisons ``evaluator`` made inside ``condition``."""
        return (self.within_conditions.get(evaluator) or {}).get(condition) or {}

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.sources is None:
            del out["sources"]
        if not self.claims:  # results.json of a study without claims is unchanged
            del out["claims"]
        return out

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> StudyStatistics:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in entry.items() if k in known})


@dataclasses.dataclass
class Results:
    """A whole study: what ``results.json`` holds.

    Attributes:
      config: the completed config, as a dict.
      task: the task.
      baseline: the condition the others are compared with by default.
      conditions: name -> :class:`ConditionResults`, in the config's order.
      statistics: the study's statistics.
      looks: every condition's seed count at each look (the first run, then each
        ``--extend``).
      finding: the study's one-sentence finding ("" for none).
      train_time_s, wall_time_s: seconds.
      device: the devices it ran on.
      schema_version: the layout's version.
    """

    config: dict[str, Any]
    task: TaskInfo
    baseline: str
    conditions: dict[str, ConditionResults]
    statistics: StudyStatistics
    looks: list[dict[str, int]] = dataclasses.field(default_factory=list)
    finding: str = ""
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    device: dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def baseline_results(self) -> ConditionResults:
        return self.conditions[self.baseline]

    def items(self) -> Iterator[tuple[str, ConditionResults]]:
        """``(name, results)`` of every condition, in order."""
        return iter(self.conditions.items())

    def kind_of(self, evaluator: str) -> str | None:
        """The registered evaluator that ``evaluator`` is an instance of (:attr:`Saved.kind`);
        None when it ran under its own name (or did not run)."""
        for condition in self.conditions.values():
            if evaluator in condition.evaluations:
                return condition.evaluations[evaluator].kind
        return None

    def instance_view(self, name: str) -> Results:
        """The study as the evaluator instance ``name`` shows it to its kind's presentation:
        each condition's :meth:`ConditionResults.instance_view`, and the statistics of its
        metrics and its paired comparisons under its kind's names. The results themselves
        for an evaluator that ran under its own name."""
        kind = self.kind_of(name)
        if kind is None:
            return self
        prefix = instance_metric(name, "")
        theirs = {m for c in self.conditions.values() for m, i in c.metric_info.items()
                  if i.evaluator == kind}  # the kind's own metrics, which the view hides

        def renamed(by_metric: Mapping[str, Any]) -> dict[str, Any]:
            owned = {m: v for m, v in by_metric.items() if m.startswith(prefix)}
            kept = {m: v for m, v in by_metric.items() if m not in theirs and m not in owned}
            return kept | {m[len(prefix):]: v for m, v in owned.items()}

        statistics = self.statistics
        within = {e: f for e, f in statistics.within_conditions.items() if e not in (kind, name)}
        if name in statistics.within_conditions:
            within[kind] = statistics.within_conditions[name]
        statistics = dataclasses.replace(
            statistics, summaries={c: renamed(s) for c, s in statistics.summaries.items()},
            comparisons=renamed(statistics.comparisons), directions=renamed(
                statistics.directions), within_conditions=within)
        return dataclasses.replace(
            self, conditions={c: r.instance_view(name, kind) for c, r in self.items()},
            statistics=statistics)

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` layout: plain lists and numbers. The baseline's numbers
        also sit at the top level, for studies with one condition."""
        first = self.baseline_results
        return to_jsonable({
            "schema_version": self.schema_version,
            "config": self.config,
            "task": self.task.to_json(),
            "baseline": self.baseline,
            "num_seeds": first.num_seeds,
            "seed_indices": first.seed_indices,
            "metrics": first.metrics,
            "curves": first.curves,
            "conditions": {n: c.to_json() for n, c in self.conditions.items()},
            "looks": self.looks,
            "statistics": self.statistics.to_json(),
            "train_time_s": self.train_time_s,
            "wall_time_s": self.wall_time_s,
            "device": self.device,
            "finding": self.finding,
        })

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Results:
        """Results from their ``results.json`` form (checked: :func:`results_problem`)."""
        problem = results_problem(entry)
        if problem is not None:
            raise ValueError(f"results {problem}")
        return cls._from_checked(entry)

    @classmethod
    def _from_checked(cls, entry: Mapping[str, Any]) -> Results:
        """:meth:`from_json` of an entry :func:`results_problem` passed."""
        conditions = {n: ConditionResults.from_json(c) for n, c in entry["conditions"].items()}
        looks = entry.get("looks") or [{n: c.num_seeds for n, c in conditions.items()}]
        return cls(config=dict(entry["config"]), task=TaskInfo.from_json(entry["task"]),
                   baseline=entry["baseline"], conditions=conditions,
                   statistics=StudyStatistics.from_json(entry["statistics"]),
                   looks=[{str(k): int(v) for k, v in look.items()} for look in looks],
                   finding=str(entry.get("finding") or ""),
                   train_time_s=float(entry.get("train_time_s") or 0.0),
                   wall_time_s=float(entry["wall_time_s"]), device=dict(entry["device"]),
                   schema_version=int(entry["schema_version"]))


def _ints(values: Any) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64).reshape(-1)


def _rows(tree: Any, keep: np.ndarray, pairwise: bool) -> Any:
    if isinstance(tree, Mapping):
        return {k: _rows(v, keep, pairwise) for k, v in tree.items()}
    values = np.asarray(tree, dtype=float)
    return values[np.ix_(keep, keep)] if pairwise else values[keep]


# What --report_only needs of results.json, and the type each holds.
_REQUIRED = {"config": dict, "task": dict, "baseline": str, "conditions": dict,
             "statistics": dict, "device": dict, "wall_time_s": (int, float)}
_REQUIRED_PER_CONDITION = {"num_seeds": int, "metrics": dict, "evaluations": dict,
                           "curves": dict}


def results_problem(results: Any) -> str | None:
    """What makes ``results`` (a parsed results.json) unfit to report on; ``None``: nothing."""
    if not isinstance(results, dict):
        return f"that is a JSON {type(results).__name__}, not an object"
    if "schema_version" not in results:  # results of negres before version 2, or not negres's
        return "without 'schema_version'"
    version = results["schema_version"]
    if version != SCHEMA_VERSION:
        return (f"of schema version {version}; this negres reports on version "
                f"{SCHEMA_VERSION}")
    for key, kind in _REQUIRED.items():
        if not isinstance(results.get(key), kind):
            return f"without a valid {key!r}" if key in results else f"without {key!r}"
    if results["baseline"] not in results["conditions"]:
        return f"whose baseline {results['baseline']!r} is not among its conditions"
    for name, condition in results["conditions"].items():
        if not isinstance(condition, dict):
            return f"whose condition {name!r} is not an object"
        for key, kind in _REQUIRED_PER_CONDITION.items():
            if not isinstance(condition.get(key), kind):
                return f"whose condition {name!r} lacks a valid {key!r}"
    if not isinstance(results["statistics"].get("settings"), dict):
        return "without statistics settings"
    return None


def load_results_file(path: Path) -> Results:
    """``path``'s results.json, checked and typed; anything wrong with it is one line."""
    file = path / RESULTS_FILE
    if not file.is_file():
        raise WorkdirError(f"--workdir={str(path)!r} holds no {RESULTS_FILE} to report on")
    try:
        results = read_json(file)
    except UnicodeDecodeError:
        problem = "that is not text"
    except json.JSONDecodeError as e:
        problem = f"that is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
    else:
        problem = results_problem(results)
    if problem is not None:
        raise WorkdirError(
            f"--workdir={str(path)!r} holds a {RESULTS_FILE} {problem}: it cannot be reported "
            "on (rerun the study with --overwrite)")
    return Results._from_checked(results)


__all__ = [
    "INSTANCES_DIR", "PLOTS_DIR", "REPORT_FILE", "RESULTS_FILE", "SCHEMA_VERSION",
    "ConditionResults", "Diverged", "MetricInfo", "Record", "Results", "Sample", "Saved",
    "StudyStatistics", "TaskInfo", "at_path", "instance_folder", "instance_metric",
    "load_results_file", "pairwise_row_means", "results_problem", "sampling_kind",
]
