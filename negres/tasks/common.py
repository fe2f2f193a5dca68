"""What the generated tasks share: their size and seed fields, and one train/test split."""

from __future__ import annotations

from typing import Any

import numpy as np

from negres.fields import Field, integer
from negres.tasks.base import Task, TaskKind

# Upper bound on a generated set's size: beyond it the arrays, not the study, fill memory.
MAX_EXAMPLES = 10_000_000


def size_field(name: str, default: int, doc: str, maximum: int = MAX_EXAMPLES) -> Field:
    """A number of examples to generate, from 1 to ``maximum``."""
    return integer(name, default, doc, minimum=1, maximum=maximum)


def data_seed_field(default: int = 0, doc: str = "the generated data; the same for every seed",
                    maximum: int | None = None) -> Field:
    """The seed of a task's data generator (>= 0)."""
    return integer("data_seed", default, doc, minimum=0, maximum=maximum)


def split_rows(name: str, kind: TaskKind, x: np.ndarray, y: np.ndarray, num_train: int,
               **facts: Any) -> Task:
    """The task whose first ``num_train`` rows of ``x`` ``(N, ...)`` and ``y`` ``(N,)`` are
    its training set and the rest its test set; ``facts`` are the other :class:`Task` fields.
    """
    return Task(name=name, kind=kind, x_train=x[:num_train], y_train=y[:num_train],
                x_test=x[num_train:], y_test=y[num_train:], **facts)
