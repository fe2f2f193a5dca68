"""Every condition of a study built and checked before anything compiles, and grouped
into the training calls it can share.

:func:`prepare_conditions` turns a completed config into :class:`Condition` values (task,
model, optimizer, evaluators): every config error surfaces here. Conditions that differ
only in what rides in the per-seed state (learning rate, weight decay) share one compiled
call (:func:`group_conditions`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import flax.linen as nn
import optax
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.evaluators import (
    INSTANCE_FIELD,
    Evaluator,
    evaluator_fields,
    field_owners,
    resolve,
    settings_of,
)
from negres.files import to_jsonable
from negres.models import DENSE_CHAIN_MODELS, build_model, check_model_input
from negres.statistics.claims import Claim, check_claims
from negres.study.conditions import expand_conditions, references_of
from negres.study.config import (
    TRAIN_FIELDS,
    as_config_fields,
    claims_of,
    complete,
    validate_config,
)
from negres.tasks import Task, load_task
from negres.training.builtin import (
    builtin_program,
    check_input_noise,
    check_label_noise,
)
from negres.training.checks import check_scale_arguments, check_training_arguments
from negres.training.contract import SeedProgram
from negres.training.optimizers import VMAPPABLE_HYPERPARAMS, build_optimizer
from negres.training.plan import Scale


class Condition(NamedTuple):
    """Everything one condition needs, built and checked before anything compiles."""

    name: str
    config: ConfigDict
    task: Task
    model: nn.Module
    optimizer: optax.GradientTransformation
    evaluators: list[Evaluator]
    overrides: dict[str, Any]
    reference: str | None  # the condition it is compared with; None: none


class Study(NamedTuple):
    """A study ready to train: its config, checked and completed once, and its conditions."""

    config: ConfigDict
    conditions: list[Condition]
    baseline: str  # the condition the others are compared with by default
    claims: tuple[Claim, ...] = ()  # what the study tests (config.claims)


def _check_deeplift_model(variant: ConfigDict, evaluators: list) -> None:
    """Refuse DeepLIFT on a model it cannot read (convolutions, attention) before training:
    the method itself would refuse it only when the attributions are computed."""
    if variant.model.name in DENSE_CHAIN_MODELS:
        return
    for evaluator in evaluators:
        methods = settings_of(evaluator, variant.evaluation).get("attribution_methods", ())
        if (evaluator.kind or evaluator.name) == "attributions" and "deeplift" in methods:
            raise ConfigError(
                f"evaluation.{evaluator.name}.attribution_methods", tuple(methods),
                f"methods without 'deeplift' for model.name={variant.model.name!r}: DeepLIFT's "
                f"rescale rule takes chains of Dense layers and elementwise activations "
                f"(model.name in {DENSE_CHAIN_MODELS})")


def prepare_study(config: ConfigDict) -> Study:
    """Validate and complete ``config``, then expand and build every condition: all config
    errors surface here, before anything compiles or is written."""
    config = validate_config(config)
    expanded, baseline = expand_conditions(config)
    references = references_of(config, baseline)
    base_overrides = {c["name"]: {k: v for k, v in c.items() if k != "name"}
                      for c in (config.get("conditions") or ())}
    tasks: dict[str, Task] = {}
    # Tasks the conditions switch between share one task section: each reads its fields.
    swept = {variant.task.name for _, variant in expanded}
    prepared = []
    for name, variant in expanded:
        try:
            validate_config(variant)
        except ConfigError as e:  # the base passed: the condition's override is at fault
            if len(expanded) == 1 and not config.get("conditions"):
                raise
            raise ConfigError(f"conditions[{name!r}].{e.field}", e.value, e.allowed) from None
        task_key = json.dumps(variant.task.to_dict(), sort_keys=True, default=str)
        if task_key not in tasks:
            tasks[task_key] = load_task(variant.task, others=swept - {variant.task.name})
        task = tasks[task_key]
        with as_config_fields():
            check_training_arguments(
                num_seeds=variant.num_seeds, steps=variant.train.steps,
                batch_size=variant.train.batch_size, eval_every=variant.train.eval_every,
                num_train=task.num_train,
            )
            check_label_noise(variant.train.label_noise, task.kind, task.num_outputs)
            check_input_noise(variant.train.input_noise)
            check_scale_arguments(**scale_settings(variant))
        evaluators = resolve(variant.evaluation.evaluators, variant.evaluation)
        for evaluator in evaluators:
            evaluator.check(settings_of(evaluator, variant.evaluation), task)
        check_model_input(variant.model, task.input_shape)
        _check_deeplift_model(variant, evaluators)
        prepared.append(Condition(
            name=name, config=variant, task=task,
            model=build_model(variant.model, task.num_outputs),
            optimizer=build_optimizer(variant.optimizer), evaluators=evaluators,
            overrides=base_overrides.get(name, {}), reference=references[name],
        ))
    kinds = {c.task.kind for c in prepared}
    if len(kinds) > 1:
        mixed = {c.name: c.task.kind for c in prepared}
        raise ConfigError("conditions", mixed, "conditions whose tasks are all classification "
                          "or all regression (their scores, accuracy or MSE, are compared)")
    check_pairing(prepared)
    claims = tuple(claims_of(config))
    with as_config_fields():
        check_claims(claims, [c.name for c in prepared])
    return Study(config, prepared, baseline, claims)


def check_pairing(conditions: list[Condition]) -> None:
    """Paired conditions compare seed ``i`` of one with seed ``i`` of its reference: refuse
    ``stats.paired_conditions`` when a condition and its reference have different seed
    counts (the comparison would silently fall back to an unpaired one)."""
    if not conditions or not conditions[0].config.stats.get("paired_conditions", False):
        return
    counts = {c.name: int(c.config.num_seeds) for c in conditions}
    for c in conditions:
        if c.reference is not None and counts[c.name] != counts[c.reference]:
            raise ConfigError(
                "stats.paired_conditions", True,
                f"False while a condition and its reference have different seed counts "
                f"({c.name!r}: {counts[c.name]}, {c.reference!r}: {counts[c.reference]}): "
                "paired conditions compare seed i of one with seed i of the other; give them "
                "the same num_seeds, or compare them unpaired (Welch)")


def scale_settings(config: ConfigDict) -> dict[str, Any]:
    """The layout, chunking and checkpoint knobs of ``config.train``, with their defaults."""
    return {knob: config.train[knob] for knob in SCHEDULING_KNOBS}


# The train fields that set negres.Scale's fields of their names, and the checkpoint
# interval: they change how seeds are scheduled, not what they compute, so a run may resume
# under other values (for example smaller chunks after running out of memory).
SCHEDULING_KNOBS = (*(f.name for f in dataclasses.fields(Scale) if f.name in
                      {t.name for t in TRAIN_FIELDS}), "checkpoint_every")


def what_is_computed(config: dict[str, Any]) -> dict[str, Any]:
    """A config as a dict, less its scheduling knobs: what a resumed run must match. Fields
    it lacks take their defaults: a study written before a field existed (``config.json``
    of an earlier version) computed what the default computes."""
    config = json.loads(json.dumps(to_jsonable(config)))
    _nest_evaluation_fields(config)
    # What a study claims is judged from what it computed, and computes nothing itself: a
    # resumed or extended study may declare claims anew (before claims, a config named a
    # finding function, which computed nothing either).
    config.pop("finding", None)
    config.pop("claims", None)
    config = json.loads(json.dumps(to_jsonable(complete(ConfigDict(config)).to_dict())))
    for knob in SCHEDULING_KNOBS:
        config.get("train", {}).pop(knob, None)
    return config


def _nest_evaluation_fields(config: dict[str, Any]) -> None:
    """Move the fields of a ``config.json`` of the flat ``evaluation`` layout (before each
    evaluator had its own section) into their evaluators' sections, in place: such a study
    computed what the same values in sections compute."""
    evaluation = config.get("evaluation")
    if not isinstance(evaluation, dict):
        return
    sections = evaluator_fields()
    for name in [k for k, v in evaluation.items() if k != "evaluators" and k not in sections
                 and not (isinstance(v, dict) and INSTANCE_FIELD in v)]:
        owners = field_owners(name, sections)
        value = evaluation.pop(name) if owners else None
        for owner in owners:
            evaluation.setdefault(owner, {}).setdefault(name, value)


def graph_signature(config: ConfigDict) -> str:
    """What decides the compiled training graph: the config less seed count and hyperparameters."""
    as_dict = config.to_dict()
    as_dict.pop("num_seeds")
    for name in VMAPPABLE_HYPERPARAMS:
        as_dict["optimizer"].pop(name, None)
    return json.dumps(as_dict, sort_keys=True, default=str)


def group_conditions(conditions: list[Condition]) -> list[list[Condition]]:
    """Conditions that can share one compiled call, in order of first appearance."""
    groups: dict[str, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(graph_signature(condition.config), []).append(condition)
    return list(groups.values())


def condition_program(condition: Condition) -> SeedProgram:
    """negres's own model and loss for ``condition`` as a program: the same public path a
    library user takes."""
    config, task = condition.config, condition.task
    return builtin_program(
        condition.model, condition.optimizer, kind=task.kind,
        label_noise=config.train.label_noise, input_noise=config.train.input_noise,
        num_classes=task.num_outputs if task.kind == "classification" else None)
