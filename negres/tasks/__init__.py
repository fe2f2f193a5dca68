"""Tasks by name: each returns arrays, shifts and what is known to be true."""

from __future__ import annotations

from collections.abc import Callable

from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks.base import Task, TaskKind, TaskShift
from negres.tasks.digits import make_digits
from negres.tasks.synthetic_regression import make_synthetic_regression

TASKS: dict[str, Callable[[ConfigDict], Task]] = {
    "digits": make_digits,
    "synthetic_regression": make_synthetic_regression,
}


def load_task(task_config: ConfigDict) -> Task:
    """Build the task named by ``task_config.name`` from the registry."""
    name = task_config.get("name")
    if name not in TASKS:
        raise ConfigError("task.name", name, f"one of {sorted(TASKS)}")
    return TASKS[name](task_config)


__all__ = ["TASKS", "Task", "TaskKind", "TaskShift", "load_task"]
