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
predictions; ``stability`` how much each seed's learning curves oscillate. The study runs
the evaluators its config names (``evaluation.evaluators``); statistics, the report and
the plots are generic over what they return (:mod:`negres.evaluators.protocol`).

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
from ml_collections import ConfigDict

from negres import fields
from negres.errors import ConfigError
from negres.evaluators.protocol import (
    DIRECTIONS,
    INSTANCE_NAME,
    ApplyFn,
    Direction,
    Evaluation,
    EvaluationContext,
    Evaluator,
    MemoryUse,
    Metric,
    check_instance_name,
)
from negres.fields import Field
from negres.results import ConditionResults, MetricInfo, Saved, at_path, instance_metric
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
    "stability": "negres.evaluators.stability",
}
# Always run first: every other evaluator and the report rely on its test score.
ALWAYS = ("performance",)


# The field of an evaluator's section that makes it an instance: evaluation.<name>.evaluator
# names the registered evaluator run under <name> with that section's settings.
INSTANCE_FIELD = "evaluator"


def get_evaluator(name: str) -> Evaluator:
    """The registered evaluator ``name``."""
    if name not in REGISTRY:
        raise ConfigError("evaluation.evaluators", name, f"names in {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).EVALUATOR


def instance_kinds(settings: Mapping[str, Any] | None) -> dict[str, str]:
    """Each instance section of ``settings`` (evaluator name -> section, as a study's
    ``evaluation``): a section whose ``evaluator`` field names the registered evaluator it
    runs under its own name -> that evaluator's name.

    Raises :class:`ConfigError` naming ``evaluation.<name>.evaluator`` for a kind that is
    not registered or a section of a registered evaluator that names one, and
    ``evaluation.<name>`` for a name that cannot be a section, prefix and folder.
    """
    kinds: dict[str, str] = {}
    for name, section in dict(settings or {}).items():
        if not isinstance(section, Mapping | ConfigDict) or INSTANCE_FIELD not in section:
            continue
        kind = section[INSTANCE_FIELD]
        field = f"evaluation.{name}.{INSTANCE_FIELD}"
        if name in REGISTRY:
            raise ConfigError(field, kind, f"no such field: {name!r} is a registered evaluator; "
                              "an instance of another needs a name of its own")
        check_instance_name(name, f"evaluation.{name}")
        if not isinstance(kind, str) or kind not in REGISTRY:
            raise ConfigError(field, kind, f"a registered evaluator, one of {sorted(REGISTRY)}")
        kinds[name] = kind
    return kinds


def instance_section(evaluator: str, **settings: Any) -> ConfigDict:
    """The config section of an instance of the registered ``evaluator``: its every field
    (``settings`` or its default) and the ``evaluator`` field naming it. Set it as
    ``config.evaluation.<name>`` and list ``<name>`` in ``evaluation.evaluators`` to run
    ``evaluator`` once more under ``<name>`` with these settings; with every field present,
    ``--config.evaluation.<name>.<field>=...`` overrides any of them. Raises
    :class:`ConfigError` for an evaluator that is not registered or a setting its fields do
    not allow."""
    if evaluator not in REGISTRY:
        raise ConfigError(INSTANCE_FIELD, evaluator,
                          f"a registered evaluator, one of {sorted(REGISTRY)}")
    section = fields.completed(settings, get_evaluator(evaluator).fields,
                               f"evaluation.<{evaluator} instance>")
    section[INSTANCE_FIELD] = evaluator
    return section


def resolve(names: Iterable[str | Evaluator],
            settings: Mapping[str, Any] | None = None) -> list[Evaluator]:
    """The evaluators to run, in order: :data:`ALWAYS` first, each after what it requires.

    Items are registered names, names of instance sections of ``settings`` (a section
    ``{"evaluator": KIND, ...}`` runs the registered ``KIND`` under that name:
    :func:`instance_kinds`), or :class:`Evaluator` values of your own (an instance:
    :meth:`Evaluator.named`). Raises :class:`ConfigError` naming ``evaluation.evaluators``
    for an unknown name, a repeated one, or one whose requirement does not come before it.
    """
    kinds = instance_kinds(settings)

    def evaluator(item: str | Evaluator) -> Evaluator:
        if isinstance(item, Evaluator) and item.kind is not None and (
                item.name in REGISTRY or item.name == "evaluators"):
            raise ConfigError("evaluation.evaluators", item.name, (
                f"an instance of {item.kind!r} named other than a registered evaluator "
                "and 'evaluators' (its settings section would be theirs)"))
        if isinstance(item, Evaluator):
            return item
        if isinstance(item, str) and item in kinds:
            return get_evaluator(kinds[item]).named(item)
        if not isinstance(item, str) or item not in REGISTRY:
            raise ConfigError("evaluation.evaluators", item, (
                f"names in {sorted(REGISTRY)}, or of sections evaluation.<name> that run "
                f"one of them under their own name ({{'{INSTANCE_FIELD}': 'attributions', "
                "...}), or Evaluator values"))
        return get_evaluator(item)

    chosen = [evaluator(n) for n in names]
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


def evaluator_fields() -> dict[str, tuple[Field, ...]]:
    """Each registered evaluator that declares fields -> its fields, in registry order:
    its own section of the config's ``evaluation`` (``evaluation.<name>.<field>``), so two
    evaluators may declare fields of the same name."""
    return {name: tuple(get_evaluator(name).fields) for name in REGISTRY
            if get_evaluator(name).fields}


def field_owners(name: str, sections: Mapping[str, Sequence[Field]]) -> list[str]:
    """The sections (evaluator name -> its fields) that declare a field ``name``."""
    return [s for s, declared in sections.items() if any(f.name == name for f in declared)]


def moved_field(name: str, sections: Mapping[str, Sequence[Field]]) -> str | None:
    """What is allowed instead of a field ``name`` set directly in ``evaluation`` (the flat
    layout of earlier versions), naming the evaluator sections that declare it; None when
    no section (evaluator name -> its fields) does."""
    owners = field_owners(name, sections)
    if not owners:
        return None
    return (f"a field of {' or '.join(f'evaluation.{o}' for o in owners)} ("
            f"{' or '.join(f'evaluation.{o}.{name}' for o in owners)}); each evaluator has "
            "its own section")


def completed_sections(settings: Mapping[str, Any] | None,
                       evaluators: Sequence[Evaluator] = ()) -> ConfigDict:
    """Evaluator name -> its section, every field set (its default where ``settings`` does
    not set it), for every registered evaluator that declares fields and every one of
    ``evaluators`` that does (your own).

    ``settings``: evaluator name -> ``{field: value}`` (an ``evaluators`` entry, as a
    study's ``evaluation`` section holds, is ignored); an instance's section (one with an
    ``evaluator`` field, or one of ``evaluators`` made by :meth:`Evaluator.named`) takes
    its kind's fields and keeps its ``evaluator`` field. Raises :class:`ConfigError` for a
    section no evaluator declares, a field its evaluator does not declare (naming e.g.
    ``evaluation.attributions.ig_stepz``), a field set outside its section, or a value its
    field does not allow.
    """
    declared: dict[str, tuple[Field, ...]] = evaluator_fields()
    kinds = instance_kinds(settings)
    for name, kind in kinds.items():
        declared[name] = tuple(get_evaluator(kind).fields)
    for evaluator in evaluators:
        if evaluator.kind is not None and kinds.get(evaluator.name, evaluator.kind) != (
                evaluator.kind):
            raise ConfigError(f"evaluation.{evaluator.name}.{INSTANCE_FIELD}",
                              kinds[evaluator.name], f"{evaluator.kind!r}, the evaluator "
                              f"that {evaluator.name!r} is an instance of")
        if evaluator.kind is not None:
            kinds[evaluator.name] = evaluator.kind
        if evaluator.fields or evaluator.kind is not None:
            declared[evaluator.name] = tuple(evaluator.fields)
    given = {k: v for k, v in dict(settings or {}).items() if k != "evaluators"}
    for key, value in given.items():
        if key in declared and isinstance(value, Mapping | ConfigDict):
            continue
        allowed = moved_field(key, declared) if key not in declared else None
        raise ConfigError(f"evaluation.{key}", value, allowed or (
            f"a section {{field: value}} of an evaluator that declares fields, one of "
            f"{sorted(declared)}"))
    sections = {}
    for name, own in declared.items():
        sections[name] = fields.completed(_fields_of(given.get(name)), own,
                                          f"evaluation.{name}")
        if name in kinds:
            sections[name][INSTANCE_FIELD] = kinds[name]
    return ConfigDict(sections)


def settings_of(evaluator: Evaluator, sections: Mapping[str, Any]) -> ConfigDict:
    """What ``evaluator`` is given as its settings (``context.settings``, and ``check``'s
    and ``memory``'s first argument): a copy of its own section of ``sections`` (evaluator
    name -> section; empty without fields) and, under the name of each evaluator it
    requires that declares fields, a copy of that one's section (as ``context.earlier``
    holds their evaluations)."""
    settings = _fields_of(sections.get(evaluator.name))
    for needed in evaluator.requires:
        section = sections.get(needed)
        if section is None:
            continue
        if needed in settings:
            raise ValueError(f"evaluator {evaluator.name!r} declares a field named "
                             f"{needed!r}, the name of an evaluator it requires")
        settings[needed] = _fields_of(section)
    return ConfigDict(settings)


def _fields_of(section: Mapping[str, Any] | ConfigDict | None) -> dict[str, Any]:
    """An evaluator's section as a plain dict of its fields: an instance's ``evaluator``
    field, which says what runs rather than how, left out."""
    plain = section.to_dict() if isinstance(section, ConfigDict) else dict(section or {})
    plain.pop(INSTANCE_FIELD, None)
    return plain


def run_evaluators(evaluators: Sequence[Evaluator], context: EvaluationContext
                   ) -> dict[str, Evaluation]:
    """Run ``evaluators`` in order; each sees the results of those it requires.

    ``context.settings``: the ``evaluation`` section (evaluator name -> its section;
    other entries, such as ``evaluators``, are not read); each evaluator runs on
    :func:`settings_of` it.
    """
    # Every evaluator's per-seed work then runs on all of this process's devices.
    context = dataclasses.replace(context, params=spread_seeds(context.params),
                                  seed_keys=spread_seeds(context.seed_keys))
    sections = context.settings
    done: dict[str, Evaluation] = {}
    for evaluator in evaluators:
        earlier = {name: done[name] for name in evaluator.requires}
        evaluation = evaluator.evaluate(dataclasses.replace(
            context, earlier=earlier, settings=settings_of(evaluator, sections)))
        if evaluator.kind is not None:
            evaluation = dataclasses.replace(evaluation, kind=evaluator.kind)
        done[evaluator.name] = evaluation
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
    curves: Mapping[str, Any] | None = None,
) -> dict[str, Evaluation]:
    """Run evaluators on any model's trained seeds: the library's entry point.

    Args:
      apply: ``(params of one seed, x (N, ...)) -> outputs (N, K)`` in evaluation mode
        (:func:`negres.linen_apply`, :func:`negres.nnx_apply` or your own).
      params: ``(S, ...)`` the trained parameters, seed axis first.
      task: a :class:`negres.Task` holding the test (and training) data.
      evaluators: names in :data:`REGISTRY`, names of instance sections in ``settings``,
        or :class:`Evaluator` values of your own (or instances,
        ``get_evaluator("attributions").named("ig_blur")``), each after those it requires;
        ``performance`` always runs first. Default: :func:`default_evaluators`.
      settings: evaluator name -> ``{field: value}``, the fields to set in that
        evaluator's own section (e.g. ``{"attributions": {"ig_steps": 8}}``); the rest take
        their declared defaults, and each evaluator (yours too) reads only its own
        section. A section with an ``evaluator`` field runs that registered evaluator
        once more under the section's name (``{"ig_blur": {"evaluator": "attributions",
        "baseline": "blur"}}``, listed in ``evaluators``), as a study config does. An
        ``evaluators`` entry, as a study's ``evaluation`` section holds, is ignored.
      seed: the root seed; seed ``i`` draws its evaluation noise from
        ``fold_in(PRNGKey(seed), seed_indices[i])``'s ``evaluation`` stream.
      seed_indices: ``(S,)`` the seeds' indices (default ``0 .. S-1``).
      init: ``key -> params`` of one fresh seed, for the randomisation check (skipped
        without it).
      layers: the parameters' top-level names from input to output, for that check.
      curves: the learning curves of training, name -> ``(S, P)`` (and ``"step"`` ->
        ``(P,)``), e.g. ``{"step": r.curve_steps, **r.curves}`` of a
        :class:`negres.TrainResult` ``r`` trained without a grid, for the ``stability``
        evaluator (which gives nothing without them).

    Returns:
      Evaluator name -> :class:`Evaluation`; :func:`as_results` turns them into one
      condition's :class:`~negres.results.ConditionResults`.
    """
    chosen = resolve(default_evaluators() if evaluators is None else evaluators, settings)
    sections = completed_sections(settings, chosen)
    for evaluator in chosen:
        evaluator.check(settings_of(evaluator, sections), task)
    if seed_indices is None:
        seed_indices = np.arange(num_seeds_of(params))
    context = EvaluationContext(
        apply=apply, params=params, task=task, settings=sections,
        seed_keys=seed_keys(seed, np.asarray(seed_indices)),
        shared_key=stream_key(jax.random.PRNGKey(seed), "evaluation"), init=init,
        layers=layers, curves=None if curves is None else {
            name: np.asarray(values) for name, values in curves.items()})
    return run_evaluators(chosen, context)


def as_results(evaluations: Mapping[str, Evaluation]) -> ConditionResults:
    """Evaluations as one condition's results.

    Returns:
      A :class:`~negres.results.ConditionResults` with ``metrics`` (name -> ``(S,)``;
      an instance's as ``<instance>/<metric>``), ``metric_info`` (name ->
      :class:`~negres.results.MetricInfo`: direction, labels, sampling, the ``pairwise``
      or ``per_example`` entry it names, units, and the evaluator that returned it),
      ``evaluations`` (evaluator -> :class:`~negres.results.Saved`, with the ``kind`` of
      an instance) and the seeds ``0 .. S-1``.
    """
    metrics: dict[str, np.ndarray] = {}
    info: dict[str, MetricInfo] = {}
    saved: dict[str, Saved] = {}
    num_seeds = _num_seeds(evaluations)
    for name, evaluation in evaluations.items():
        _check_seed_axes(name, evaluation, num_seeds)
        for metric, value in evaluation.metrics.items():
            if evaluation.kind is not None and evaluation.kind != name:
                metric = instance_metric(name, metric)
            if metric in metrics:
                raise ValueError(f"evaluator {name!r} returned metric {metric!r}, which "
                                 f"{info[metric].evaluator!r} returned already")
            if value.direction not in DIRECTIONS:
                raise ValueError(f"evaluator {name!r}: metric {metric!r} has direction "
                                 f"{value.direction!r}, not one of {DIRECTIONS}")
            metrics[metric] = np.asarray(value.values)
            info[metric] = MetricInfo(
                direction=value.direction, evaluator=name, sampling=value.sampling,
                labels=dict(value.labels), pairwise=value.pairwise,
                per_example=value.per_example, units=value.units)
        saved[name] = Saved(evaluation.per_seed, evaluation.pairwise, evaluation.shared,
                            None if evaluation.kind == name else evaluation.kind)
    count = num_seeds or 0
    return ConditionResults(metrics=metrics, metric_info=info, evaluations=saved,
                            seed_indices=np.arange(count, dtype=np.int64), num_seeds=count)


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


__all__ = [
    "ALWAYS",
    "DIRECTIONS",
    "INSTANCE_FIELD",
    "INSTANCE_NAME",
    "REGISTRY",
    "Direction",
    "Evaluation",
    "EvaluationContext",
    "Evaluator",
    "MemoryUse",
    "Metric",
    "as_results",
    "completed_sections",
    "default_evaluators",
    "evaluate",
    "evaluator_fields",
    "field_owners",
    "get_evaluator",
    "instance_kinds",
    "instance_section",
    "moved_field",
    "resolve",
    "run_evaluators",
    "settings_of",
]
