"""Tasks by name: each returns arrays, shifts and what is known to be true."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks.base import Task, TaskKind, TaskShift
from negres.tasks.digits import make_digits
from negres.tasks.mnist1d import make_mnist1d
from negres.tasks.rule_shortcut import make_digits_shortcut, make_rule_shortcut
from negres.tasks.shape_color import make_shape_color
from negres.tasks.synthetic_regression import make_synthetic_regression
from negres.tasks.tfds_datasets import DATASETS, make_tfds_task

TASKS: dict[str, Callable[[ConfigDict], Task]] = {
    "digits": make_digits,
    "digits_shortcut": make_digits_shortcut,
    "mnist1d": make_mnist1d,
    "rule_shortcut": make_rule_shortcut,
    "shape_color": make_shape_color,
    "synthetic_regression": make_synthetic_regression,
    **{name: make_tfds_task(name) for name in DATASETS},
}


def take_train_subset(task: Task, size: int, seed: int) -> Task:
    """The task with ``size`` training examples, a fixed random subset shared by all seeds."""
    if not 1 <= size <= task.num_train:
        raise ConfigError("task.train_subset", size,
                          f"0 (all) or an integer from 1 to {task.num_train}")
    keep = np.sort(np.random.default_rng(seed).permutation(task.num_train)[:size])
    return dataclasses.replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep])


def load_task(task_config: ConfigDict) -> Task:
    """Build the task named by ``task_config.name`` from the registry.

    Every task also takes ``train_subset`` (0: all training examples; otherwise that many,
    drawn once with ``subset_seed`` and shared by every seed) to study smaller training sets.
    """
    name = task_config.get("name")
    if name not in TASKS:
        raise ConfigError("task.name", name, f"one of {sorted(TASKS)}")
    task = TASKS[name](task_config)
    subset = int(task_config.get("train_subset", 0))
    if subset:
        task = take_train_subset(task, subset, int(task_config.get("subset_seed", 0)))
    return task


__all__ = ["TASKS", "Task", "TaskKind", "TaskShift", "load_task"]
