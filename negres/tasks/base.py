"""The task container: arrays, what kind of prediction, and what is true by construction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import numpy as np

TaskKind = Literal["classification", "regression"]
# A task-provided shift: (key, x, severity) -> x', for shifts only the task can define
# (for example flipping the shortcut feature it planted).
TaskShift = Callable[[Any, Any, Any], Any]


class ShiftSet(NamedTuple):
    """A real shifted test set at several levels (e.g. CIFAR-10-C), kept as ``uint8``.

    Attributes:
      severities: ``(K,)`` the levels.
      x: ``(K, N, *input_shape)`` uint8 images, scaled to [0, 1] on the device.
      y: ``(K, N)`` labels.
    """

    severities: tuple[float, ...]
    x: np.ndarray
    y: np.ndarray


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
      test_subsets: named subsets of the test set, name -> ``(N_test,)`` bool mask (e.g.
        the examples where a shortcut contradicts the rule).
      coefficients: ``(D,)`` the linear coefficients ``c`` of a target known to be
        ``sum_j c_j x_j + sum a_ij x_i x_j``; None when the target is not known.
      interactions: the product terms of that target, name -> ``(i, j, a_ij)``.
      shift_sets: real shifted test sets by name.
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
    test_subsets: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    coefficients: np.ndarray | None = None
    interactions: Mapping[str, tuple[int, int, float]] = dataclasses.field(default_factory=dict)
    shift_sets: Mapping[str, ShiftSet] = dataclasses.field(default_factory=dict)
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
