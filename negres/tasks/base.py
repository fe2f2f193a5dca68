"""The task container: arrays, what kind of prediction, and what is known to be true."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

TaskKind = Literal["classification", "regression"]
# A task-provided shift: (key, x, severity) -> x', for shifts only the task can define
# (for example flipping the shortcut feature it planted).
TaskShift = Callable[[Any, Any, Any], Any]


@dataclasses.dataclass(frozen=True)
class Task:
    """One study's data.

    Attributes:
      name: registry name of the task.
      kind: ``"classification"`` (integer labels) or ``"regression"`` (float targets).
      x_train: ``(N_train, *input_shape)`` float32 inputs.
      y_train: ``(N_train,)`` int32 labels or float32 targets.
      x_test: ``(N_test, *input_shape)`` float32 inputs.
      y_test: ``(N_test,)`` labels or targets.
      num_outputs: number of classes, or 1 for regression.
      feature_names: one name per flattened input feature, where features have names.
      shortcut_features: flat indices of features known to be shortcuts (spurious cues).
      known: what is true by construction, e.g. ``{"coefficients": array}`` or a rule.
      shifts: task-specific shifts by name, each a pure ``(key, x, severity) -> x'`` over a
        whole set ``(N, *input_shape)``; severity 0 should be the identity.
    """

    name: str
    kind: TaskKind
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_outputs: int
    feature_names: tuple[str, ...] | None = None
    shortcut_features: tuple[int, ...] = ()
    known: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    shifts: Mapping[str, TaskShift] = dataclasses.field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, without the example axis."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])
