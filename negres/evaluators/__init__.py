"""Evaluators: what is measured on every trained seed, one module each, built by name.

``protocol`` defines what an evaluator is and returns. Each other module here holds one
:class:`~negres.evaluators.protocol.Evaluator` (its config fields and defaults, a check
run before anything compiles, the evaluation on an apply function and stacked parameters,
and optionally paired comparisons within a condition) and is registered by one line in
:data:`REGISTRY`. Evaluators compute only: what a study shows of one (its part of the
report, its plots, the files it saves) is its presentation, one module and one line in
:data:`negres.reporting.sections.PRESENTATIONS`.
``performance`` scores every seed on the test and training sets; ``robustness`` sweeps
shifts by severity; ``attributions`` computes saliency maps and their cross-seed agreement
and sanity checks; ``subsets`` scores named test subsets; ``truth`` compares attributions
with a known generating function; ``surrogate_fidelity`` fits a linear surrogate to each
seed; ``multiplicity`` measures how often seeds of equal accuracy disagree on single
predictions. The study runs the evaluators its config names (``evaluation.evaluators``);
statistics, the report and the plots are generic over what they return
(:mod:`negres.evaluators.protocol`).

Layer: evaluators. Computing only; imports training, measures, tasks, models and the
foundations, never statistics, reporting or the study (``tests/test_evaluator_layers.py``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from negres import fields
from negres.errors import ConfigError
from negres.evaluators.protocol import (
    DIRECTIONS,
    ApplyFn,
    Direction,
    Evaluation,
    EvaluationContext,
    Evaluator,
    MemoryUse,
    Metric,
    at_path,
)
from negres.fields import Field
from negres.seeds import num_seeds_of, seed_keys, stream_key
from negres.sharding import spread_seeds
from negres.tasks import Task

# Name -> the module holding its EVALUATOR. Adding an evaluator: one file, one line here.
REGISTRY: dict[str, str] = {
    "performance": "negres.evaluators.performance",
    "robustness": "negres.evaluators.robustness",
    "attributions": "negres.evaluators.attributions",
    "subsets": "negres.evaluators.subsets",
    "truth": "negres.evaluators.truth",
    "surrogate_fidelity": "negres.evaluators.surrogate",
    "multiplicity": "negres.evaluators.multiplicity",
}
# Always run first: every other evaluator and the report rely on its test score.
ALWAYS = ("performance",)


def get_evaluator(name: str) -> Evaluator:
    """The registered evaluator ``name``."""
    if name not in REGISTRY:
        raise ConfigError("evaluation.evaluators", name, f"names in {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).EVALUATOR


def resolve(names: Iterable[str | Evaluator]) -> list[Evaluator]:
    """The evaluators to run, in order: :data:`ALWAYS` first, each after what it requires.

    Items are registered names or :class:`Evaluator` values of your own. Raises
    :class:`ConfigError` naming ``evaluation.evaluators`` for an unknown name, a repeated
    one, or one whose requirement does not come before it.
    """
    chosen = [n if isinstance(n, Evaluator) else get_evaluator(n) for n in names]
    listed = tuple(e.name for e in chosen)
    if len(set(listed)) != len(listed):
        raise ConfigError("evaluation.evaluators", listed, "names without repeats")
    ordered = [get_evaluator(n) for n in ALWAYS if n not in listed] + chosen
    for position, evaluator in enumerate(ordered):
        before = {e.name for e in ordered[:position]}
        for needed in evaluator.requires:
            if needed not in before:
                raise ConfigError("evaluation.evaluators", listed,
                                  f"a tuple in which {needed!r} comes before "
                                  f"{evaluator.name!r} (which needs it)")
    return ordered


def default_evaluators() -> tuple[str, ...]:
    """The evaluators a study runs when its config does not name them: every registered
    one that runs by default, in registry order, less :data:`ALWAYS` (which runs anyway)."""
    return tuple(n for n in REGISTRY if n not in ALWAYS and get_evaluator(n).by_default)


def all_fields() -> list[Field]:
    """Every registered evaluator's fields, in registry order, each name once."""
    seen: dict[str, Any] = {}
    for name in REGISTRY:
        for field in get_evaluator(name).fields:
            seen.setdefault(field.name, field)
    return list(seen.values())


def run_evaluators(evaluators: Sequence[Evaluator], context: EvaluationContext
                   ) -> dict[str, Evaluation]:
    """Run ``evaluators`` in order; each sees the results of those it requires."""
    # Every evaluator's per-seed work then runs on all of this process's devices.
    context = dataclasses.replace(context, params=spread_seeds(context.params),
                                  seed_keys=spread_seeds(context.seed_keys))
    done: dict[str, Evaluation] = {}
    for evaluator in evaluators:
        earlier = {name: done[name] for name in evaluator.requires}
        done[evaluator.name] = evaluator.evaluate(dataclasses.replace(context, earlier=earlier))
    return done


def evaluate(
    apply: ApplyFn,
    params: Any,
    task: Task,
    *,
    evaluators: Sequence[str | Evaluator] | None = None,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    seed_indices: Sequence[int] | np.ndarray | None = None,
    init: Callable[[Any], Any] | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, Evaluation]:
    """Run evaluators on any model's trained seeds: the library's entry point.

    Args:
      apply: ``(params of one seed, x (N, ...)) -> outputs (N, K)`` in evaluation mode
        (:func:`negres.linen_apply`, :func:`negres.nnx_apply` or your own).
      params: ``(S, ...)`` the trained parameters, seed axis first.
      task: a :class:`negres.Task` holding the test (and training) data.
      evaluators: names in :data:`REGISTRY` or :class:`Evaluator` values of your own, each
        after those it requires; ``performance`` always runs first. Default:
        :func:`default_evaluators`.
      settings: ``evaluation`` fields to set; the rest take their declared defaults (an
        ``evaluators`` entry, as a study's ``evaluation`` section holds, is ignored).
      seed: the root seed; seed ``i`` draws its evaluation noise from
        ``fold_in(PRNGKey(seed), seed_indices[i])``'s ``evaluation`` stream.
      seed_indices: ``(S,)`` the seeds' indices (default ``0 .. S-1``).
      init: ``key -> params`` of one fresh seed, for the randomisation check (skipped
        without it).
      layers: the parameters' top-level names from input to output, for that check.

    Returns:
      Evaluator name -> :class:`Evaluation`; :func:`as_results` turns them into the
      ``metrics``/``metric_info``/``evaluations`` entries of a study's results.
    """
    chosen = resolve(default_evaluators() if evaluators is None else evaluators)
    own = [f for e in chosen for f in e.fields if e.name not in REGISTRY]
    config = fields.completed(
        {k: v for k, v in dict(settings or {}).items() if k != "evaluators"},
        [*all_fields(), *own], "evaluation")
    for evaluator in chosen:
        evaluator.check(config, task)
    if seed_indices is None:
        seed_indices = np.arange(num_seeds_of(params))
    context = EvaluationContext(
        apply=apply, params=params, task=task, settings=config,
        seed_keys=seed_keys(seed, np.asarray(seed_indices)),
        shared_key=stream_key(jax.random.PRNGKey(seed), "evaluation"), init=init,
        layers=layers)
    return run_evaluators(chosen, context)


def as_results(evaluations: Mapping[str, Evaluation]) -> dict[str, Any]:
    """Evaluations as a condition's entries of ``results.json``.

    Returns:
      ``metrics`` (name -> ``(S,)``), ``metric_info`` (name -> ``{"direction", "labels",
      "sampling", ["pairwise" | "per_example"], "evaluator"}``) and ``evaluations``
      (evaluator -> ``{"per_seed", "pairwise", "shared"}``).
    """
    metrics: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    saved: dict[str, dict[str, Any]] = {}
    num_seeds = _num_seeds(evaluations)
    for name, evaluation in evaluations.items():
        _check_seed_axes(name, evaluation, num_seeds)
        for metric, value in evaluation.metrics.items():
            if metric in metrics:
                raise ValueError(f"evaluator {name!r} returned metric {metric!r}, which "
                                 f"{info[metric]['evaluator']!r} returned already")
            if value.direction not in DIRECTIONS:
                raise ValueError(f"evaluator {name!r}: metric {metric!r} has direction "
                                 f"{value.direction!r}, not one of {DIRECTIONS}")
            metrics[metric] = np.asarray(value.values)
            info[metric] = {"direction": value.direction, "labels": dict(value.labels),
                            "evaluator": name, "sampling": value.sampling}
            if value.pairwise is not None:
                info[metric]["pairwise"] = value.pairwise
            if value.per_example is not None:
                info[metric]["per_example"] = value.per_example
            if value.units:
                info[metric]["units"] = value.units
        saved[name] = {"per_seed": evaluation.per_seed, "pairwise": evaluation.pairwise,
                       "shared": evaluation.shared}
    return {"metrics": metrics, "metric_info": info, "evaluations": saved}


def evaluators_of(results: Mapping[str, Any]) -> list[Evaluator]:
    """The evaluators that ran in a study (its ``results.json``), in the order they ran."""
    names = dict.fromkeys(n for c in results["conditions"].values()
                          for n in (c.get("evaluations") or {}))
    # An evaluator of the caller's own (not registered) has no Evaluator to find here.
    return [get_evaluator(n) for n in names if n in REGISTRY]


def _num_seeds(evaluations: Mapping[str, Evaluation]) -> int | None:
    for evaluation in evaluations.values():
        for value in evaluation.metrics.values():
            return int(np.shape(value.values)[0]) if np.ndim(value.values) else None
    return None


def _leaves(tree: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _leaves(value, f"{path}/{key}" if path else str(key))
    else:
        yield path, tree


def _check_seed_axes(name: str, evaluation: Evaluation, num_seeds: int | None) -> None:
    """Refuse an evaluation whose per-seed numbers lack the seed axis: leaving seeds out
    later would fail, or silently drop the wrong rows."""
    if num_seeds is None:
        return
    for metric, value in evaluation.metrics.items():
        if np.shape(value.values) != (num_seeds,):
            raise ValueError(f"evaluator {name!r}: metric {metric!r} has shape "
                             f"{np.shape(value.values)}, not ({num_seeds},) (one per seed)")
        if value.pairwise is not None and at_path(evaluation.pairwise, value.pairwise) is None:
            raise ValueError(f"evaluator {name!r}: metric {metric!r} names pairwise "
                             f"{value.pairwise!r}, which it did not return")
        if value.pairwise is not None and value.per_example is not None:
            raise ValueError(f"evaluator {name!r}: metric {metric!r} names both pairwise "
                             f"{value.pairwise!r} and per_example {value.per_example!r}; a "
                             "metric is sampled one way")
        if value.per_example is not None:
            per_example = at_path(evaluation.per_seed, value.per_example)
            if per_example is None or np.ndim(per_example) != 2:
                raise ValueError(
                    f"evaluator {name!r}: metric {metric!r} names per_example "
                    f"{value.per_example!r}, which is not an (S, N) entry of its per_seed "
                    f"(got shape {None if per_example is None else np.shape(per_example)})")
    for part, leading in (("per_seed", (num_seeds,)), ("pairwise", (num_seeds, num_seeds))):
        for path, leaf in _leaves(getattr(evaluation, part)):
            if np.shape(leaf)[:len(leading)] != leading:
                raise ValueError(f"evaluator {name!r}: {part} {path!r} has shape "
                                 f"{np.shape(leaf)}, not {leading} first")


def direction_of(condition: Mapping[str, Any], metric: str) -> Direction:
    """The declared direction of ``metric`` in a condition's results (``"none"`` if
    undeclared: a metric nobody said how to read gets no verdict)."""
    return (condition.get("metric_info") or {}).get(metric, {}).get("direction", "none")


__all__ = [
    "ALWAYS",
    "DIRECTIONS",
    "REGISTRY",
    "Direction",
    "Evaluation",
    "EvaluationContext",
    "Evaluator",
    "MemoryUse",
    "Metric",
    "all_fields",
    "as_results",
    "default_evaluators",
    "direction_of",
    "evaluate",
    "evaluators_of",
    "get_evaluator",
    "resolve",
    "run_evaluators",
]
