"""Tasks by name: the data of a study, its shifts, and what is true by construction.

``base`` holds the :class:`Task` container (arrays, kind, and typed facts: shortcut
features, named test subsets, the coefficients and interactions of a known target, real
shifted test sets); ``shifts`` the generic input shifts (noise, scaling, occlusion,
channel shift, contrast, blur) that any task takes by name; ``common`` what the generated
tasks share.
One module per world: ``digits`` (scikit-learn's bundled digits), ``mnist1d``,
``rule_shortcut`` (a rule and a planted shortcut, tabular or on digits), ``shape_color``,
``synthetic_regression`` (a known additive target with interactions), ``tfds_datasets``
(MNIST, Fashion-MNIST, CIFAR-10 and its corruptions). Every task declares its config fields
next to its builder (``FIELDS``) and is registered in :data:`TASKS`; :func:`load_task`
checks a task config against them, completes it with their defaults and builds the task.

Layer: measures, tasks and models. Data and what is true by construction; imports
only the foundations and its own layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.fields import Field, check_section, choice, fill_defaults, integer
from negres.tasks import (
    digits,
    mnist1d,
    rule_shortcut,
    shape_color,
    synthetic_regression,
    tfds_datasets,
)
from negres.tasks.base import ShiftSet, Task, TaskKind, TaskShift


class TaskSpec(NamedTuple):
    """A registered task: its builder and the config fields it reads besides the common ones.

    Attributes:
      build: makes the task from a task config completed with every field's default.
      fields: the task's own fields (:data:`COMMON_FIELDS` are added by :func:`task_fields`).
    """

    build: Callable[[ConfigDict], Task]
    fields: tuple[Field, ...]


TASKS: dict[str, TaskSpec] = {
    "digits": TaskSpec(digits.make_digits, digits.FIELDS),
    "digits_shortcut": TaskSpec(rule_shortcut.make_digits_shortcut,
                                rule_shortcut.DIGITS_SHORTCUT_FIELDS),
    "mnist1d": TaskSpec(mnist1d.make_mnist1d, mnist1d.FIELDS),
    "rule_shortcut": TaskSpec(rule_shortcut.make_rule_shortcut,
                              rule_shortcut.RULE_SHORTCUT_FIELDS),
    "shape_color": TaskSpec(shape_color.make_shape_color, shape_color.FIELDS),
    "synthetic_regression": TaskSpec(synthetic_regression.make_synthetic_regression,
                                     synthetic_regression.FIELDS),
    **{name: TaskSpec(tfds_datasets.make_tfds_task(name), tfds_datasets.FIELDS[name])
       for name in tfds_datasets.DATASETS},
}

# The task's name, one of the registry's (TASKS is the one place a name is written).
NAME_FIELD = choice("name", "digits", "a task of negres.tasks.TASKS", TASKS)
# The fields every task takes.
COMMON_FIELDS: tuple[Field, ...] = (
    NAME_FIELD,
    integer("train_subset", 0, "0: all training examples; else that many, drawn once with "
            "subset_seed and shared by every seed", minimum=0),
    integer("subset_seed", 0, "draws the train_subset examples", minimum=0),
)


def _spec(name: Any) -> TaskSpec:
    NAME_FIELD.check(name, "task")
    return TASKS[name]


def task_fields(name: str) -> tuple[Field, ...]:
    """Every config field of the task ``name``: the common ones, then its own."""
    return COMMON_FIELDS + _spec(name).fields


def take_train_subset(task: Task, size: int, seed: int) -> Task:
    """The task with ``size`` training examples, a fixed random subset shared by all seeds."""
    if not 1 <= size <= task.num_train:
        raise ConfigError("task.train_subset", size,
                          f"0 (all) or an integer from 1 to {task.num_train}")
    keep = np.sort(np.random.default_rng(seed).permutation(task.num_train)[:size])
    return dataclasses.replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep])


def fields_named(key: str) -> list[Field]:
    """Every task's declaration of the field ``key`` (tasks may give it other defaults and
    ranges, e.g. ``num_train``); empty when no task declares it."""
    return [f for name in TASKS for f in task_fields(name) if f.name == key]


def _at_a_default(key: str, value: Any) -> bool:
    """Whether ``value`` is the default of ``key`` for a task that declares it: a config
    built on another task's section (``configs/default.py`` holds digits') carries it
    harmlessly."""
    return any(_same(value, f.default) for f in fields_named(key))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b  # 1 and 1.0 are the same default
    return type(a) is type(b) and a == b


def load_task(task_config: ConfigDict | Mapping[str, Any],
              others: Iterable[str] = ()) -> Task:
    """Build the task named by ``task_config.name`` from the registry.

    Refuses a field the task does not declare (another task's field at that task's default
    passes: a config built on another task's section carries it) and a value its field
    does not allow (:class:`ConfigError` naming ``task.<field>``), then builds from a copy
    of the config completed with the defaults (``task_config`` is left as it is). Every task also
    takes ``train_subset`` (0: all training examples; otherwise that many, drawn once with
    ``subset_seed`` and shared by every seed) to study smaller training sets.

    Args:
      task_config: the ``task`` section.
      others: names of other tasks the same config also builds (a study that sweeps
        tasks through its conditions shares one task section): their fields are left to
        them instead of refused.
    """
    name = task_config.get("name")
    spec = _spec(name)
    fields = task_fields(name)
    declared = [field.name for field in fields]
    elsewhere = {f.name for other in others for f in task_fields(other)}
    for key in task_config:
        if key in declared or key in elsewhere or _at_a_default(key, task_config[key]):
            continue
        raise ConfigError(f"task.{key}", task_config[key],
                          f"a field of task {name!r}, which takes {sorted(declared)} (another "
                          "task's field may stay at its default, but set it would do nothing)")
    check_section(task_config, fields, "task")
    given = (task_config.to_dict() if isinstance(task_config, ConfigDict)
             else dict(task_config))
    completed = ConfigDict({k: v for k, v in given.items() if k in declared})
    fill_defaults(completed, fields)
    task = spec.build(completed)
    if completed.train_subset:
        task = take_train_subset(task, completed.train_subset, completed.subset_seed)
    return task


__all__ = [
    "COMMON_FIELDS",
    "TASKS",
    "ShiftSet",
    "Task",
    "TaskKind",
    "TaskShift",
    "TaskSpec",
    "fields_named",
    "load_task",
    "task_fields",
]
