"""The evaluator protocol: what an evaluator declares, what it runs on, what it returns.

An evaluator is one module holding one :class:`Evaluator`: its name, the config fields it
reads from its own section of the study's config (``evaluation.<name>``, with defaults),
the evaluators it needs
before it, a check of its settings against the task (run before anything compiles), the
evaluation itself, and optionally paired comparisons within a condition. It computes
only: what the report shows of it is its presentation (:mod:`negres.reporting.sections`).
It runs on an :class:`EvaluationContext` (an apply function, the stacked parameters,
the task's data and per-seed keys), so it works on any model, negres's own or one
trained through the open training contract, and returns an :class:`Evaluation`:

* ``metrics``: per-seed numbers ``(S,)``, each with its declared direction
  (``"higher"`` or ``"lower"`` is better, or ``"none"``: described, never given an
  improved/worse verdict) and how it was sampled: independent per seed (the default),
  the seeds' means over test examples they all share (``per_example`` names the
  ``(S, N)`` values in ``per_seed``), or row means of a seed x seed matrix (``pairwise``
  names it). The statistics choose each metric's interval from that declaration
  (:mod:`negres.statistics.sampling`);
* ``per_seed`` and ``pairwise``: arrays to save whose leading axis is the seed axis
  (``(S, ...)``) or whose two leading axes are (``(S, S, ...)``), so that seeds can be
  left out generically (a diverged seed leaves its rows, and its rows and columns);
* ``shared``: anything else to save (names, counts, true values);
* ``passed_on``: what evaluators that require this one may read, not saved.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.fields import Field
from negres.results import ConditionResults, sampling_kind
from negres.tasks import Task

Direction = Literal["higher", "lower", "none"]
DIRECTIONS: tuple[Direction, ...] = ("higher", "lower", "none")

# (params of one seed, inputs (N, *input_shape)) -> outputs (N, K).
ApplyFn = Callable[[Any, jax.Array], jax.Array]


# (x, y of the same seeds, each (S,) values or a negres.results.Sample, direction) -> the
# statistics' comparison dict (negres.statistics.compare's keys), chosen by the samples' kind.
Compare = Callable[[Any, Any, "Direction"], dict[str, Any]]


class Metric(NamedTuple):
    """One per-seed number and which way is better.

    Attributes:
      values: ``(S,)`` one value per seed.
      direction: ``"higher"``, ``"lower"`` or ``"none"`` (no verdict).
      labels: what the metric is about, e.g. ``{"method": "gradient", "measure":
        "sparsity"}``; statistics group metrics by these, never by parsing names.
      pairwise: the ``pairwise`` entry (a ``/``-joined path) whose off-diagonal row means
        are ``values``; with seeds left out, the values are recomputed from it. Such a
        metric's rows are not independent: its interval is the U-statistic's.
      per_example: the ``per_seed`` entry (a ``/``-joined path) holding ``(S, N)`` values
        on the test examples that every seed shares, whose row means are ``values``; its
        interval covers the examples' sampling too where the study's estimand is the
        data distribution.
      units: what one unit of ``values`` is, e.g. ``"fraction of examples"``; ``""`` for
        a number without units (a correlation). Goes into ``metrics.csv``.
    """

    values: np.ndarray
    direction: Direction
    labels: Mapping[str, str] = MappingProxyType({})  # read-only: one default for all
    pairwise: str | None = None
    units: str = ""
    per_example: str | None = None

    @property
    def sampling(self) -> str:
        """``"pairwise"``, ``"examples"`` or ``"seeds"``: how ``values`` were sampled."""
        return sampling_kind(self.pairwise, self.per_example)


@dataclasses.dataclass
class Evaluation:
    """What one evaluator returns for one condition's seeds (see the module docstring)."""

    metrics: dict[str, Metric] = dataclasses.field(default_factory=dict)
    per_seed: dict[str, Any] = dataclasses.field(default_factory=dict)
    pairwise: dict[str, Any] = dataclasses.field(default_factory=dict)
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)
    passed_on: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Set by negres.evaluators.run_evaluators for an evaluator run under a name of its own
    # (Evaluator.named): the registered evaluator it is an instance of.
    kind: str | None = None

    def add_example_mean(self, name: str, per_example: np.ndarray, direction: Direction,
                         labels: Mapping[str, str], units: str = "") -> None:
        """Metric ``name``: the row means of ``per_example`` ``(S, n)``, each seed's values
        on ``n`` test examples every seed shares, kept as ``per_seed["per_example"][name]``
        and declared over them (its interval covers the examples' sampling too)."""
        self.per_seed.setdefault("per_example", {})[name] = per_example
        self.metrics[name] = Metric(per_example.mean(axis=1), direction, labels, units=units,
                                    per_example=f"per_example/{name}")


@dataclasses.dataclass(frozen=True)
class EvaluationContext:
    """What every evaluator runs on.

    Attributes:
      apply: ``(params of one seed, x (N, ...)) -> outputs (N, K)`` in evaluation mode.
      params: ``(S, ...)`` the trained parameters, seed axis first.
      task: the data and what is true by construction.
      settings: the evaluator's own section (``evaluation.<name>``), completed with every
        field's default, and, under the name of each evaluator it requires that declares
        fields, that one's section (read-only by convention; what that one computed is in
        ``earlier``). :func:`negres.evaluators.run_evaluators` receives the whole
        ``evaluation`` section here and hands each evaluator its own.
      seed_keys: ``(S, 2)`` each seed's key; evaluators draw their noise from its
        ``evaluation`` stream (:func:`negres.seeds.stream_key`).
      shared_key: one key for noise that every seed shares (paired comparisons).
      init: ``key -> params`` of one freshly initialised seed, for checks that re-initialise
        layers; None when the model cannot be re-initialised (those checks are skipped).
      layers: the parameter collection's top-level names from input to output (the
        randomisation check re-initialises them from the top); None: their stored order.
      earlier: name -> :class:`Evaluation` of the evaluators this one requires.
      kept: ``(S,)`` bool, the seeds whose training stayed finite; numbers that pool seeds
        (a majority vote) use only these. None: all.
      curves: the learning curves of training, name -> ``(S, P)`` and ``"step"`` -> ``(P,)``
        (``TrainResult.curves``, ``eval_*`` named ``test_*``); None: not given (evaluators
        that read them give nothing).
    """

    apply: ApplyFn
    params: Any
    task: Task
    settings: ConfigDict
    seed_keys: jax.Array
    shared_key: jax.Array
    init: Callable[[jax.Array], Any] | None = None
    layers: Sequence[str] | None = None
    earlier: Mapping[str, Evaluation] = dataclasses.field(default_factory=dict)
    kept: np.ndarray | None = None
    curves: Mapping[str, np.ndarray] | None = None

    @property
    def num_seeds(self) -> int:
        return int(self.seed_keys.shape[0])


class MemoryUse(NamedTuple):
    """What an evaluator's arrays take for a given number of seeds (:attr:`Evaluator.memory`).

    Attributes:
      held: bytes of the arrays it holds at once while it runs: what it computes, its
        temporaries, and what it returns and passes on.
      saved: how many numbers its ``metrics``, ``per_seed``, ``pairwise`` and ``shared``
        hold: a study writes them to ``results.json``, where each costs far more memory
        than in an array while the file is written and read back.
    """

    held: int
    saved: int


def _no_check(settings: ConfigDict, task: Task) -> None:
    del settings, task


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One evaluator, registered by name in :data:`negres.evaluators.REGISTRY`.

    It computes only: its part of the report, its plots and the files it saves are its
    presentation, registered under the same name in
    :data:`negres.reporting.sections.PRESENTATIONS`.

    Attributes:
      name: its name in ``evaluation.evaluators`` and in results.
      fields: the fields of its own config section ``evaluation.<name>``, with defaults
        (another evaluator may declare a field of the same name: each has its section).
      evaluate: ``context -> Evaluation``.
      check: ``(settings, task) -> None``; raises :class:`negres.errors.ConfigError` for a
        setting the task cannot take. Runs before anything compiles. ``settings`` is what
        ``context.settings`` will be: its own section, with the section of each evaluator
        it requires under that one's name (``settings.robustness.shifts``).
      requires: evaluators that must run before this one; their results arrive in
        ``context.earlier``.
      statistics: ``(one condition's results, compare) -> {family: {label: comparison}}``:
        paired comparisons within a condition (a shift against the clean test set, one
        attribution method against another) on its
        :class:`~negres.results.ConditionResults`; ``compare(x, y, direction)`` compares
        two ``(S,)`` arrays of the same seeds, or two :class:`~negres.results.Sample`
        (:meth:`~negres.results.ConditionResults.sample`),
        with the study's settings and the interval their sampling calls for, and the
        study Holm-adjusts each family.
      doc: one line on what it measures.
      by_default: whether a study that does not name its evaluators runs this one.
      memory: ``(settings, task, num_seeds) -> MemoryUse`` (``settings`` as ``check``'s):
        what its largest arrays take
        for ``num_seeds`` seeds, so that a study refuses a seed count that cannot fit
        before anything compiles (:func:`negres.study.memory.check_memory`). Only what
        grows with the seeds matters (``(S, S, ...)``, ``(S, N, ...)``). None: nothing
        worth counting.
      kind: the evaluator this one is an instance of (:meth:`named`): it runs that one
        under its own name and settings; None: it is itself.
    """

    name: str
    fields: tuple[Field, ...]
    evaluate: Callable[[EvaluationContext], Evaluation]
    check: Callable[[ConfigDict, Task], None] = _no_check
    requires: tuple[str, ...] = ()
    statistics: Callable[[ConditionResults, Compare], dict[str, dict[str, Any]]] | None = None
    doc: str = ""
    by_default: bool = True
    memory: Callable[[ConfigDict, Task, int], MemoryUse] | None = None
    kind: str | None = None

    def named(self, name: str) -> Evaluator:
        """This evaluator under another name: an instance that runs beside it (and beside
        other instances) with settings of its own, from its own section
        (``evaluation.<name>``; in a study config, a section whose ``evaluator`` field
        names this one). Its metrics are reported as ``<name>/<metric>``, its paired
        comparisons and report section under ``name``; its presentation and statistics are
        this one's. What it requires is met by the evaluators of those names."""
        check_instance_name(name)
        return dataclasses.replace(self, name=name, kind=self.kind or self.name)


INSTANCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_instance_name(name: Any, field: str = "name") -> None:
    """Refuse an instance name that cannot be a config section, a metric prefix and a
    folder name: letters, digits and ``_``, not starting with a digit."""
    if not isinstance(name, str) or INSTANCE_NAME.fullmatch(name) is None:
        raise ConfigError(field, name, "letters, digits and '_', not starting with a digit "
                          "(it names a config section, a metric prefix and a folder)")
