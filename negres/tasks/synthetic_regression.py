"""A regression world whose truth is known: ``y = 3 x0 + 2 x1 - 1.5 x2 (+ c x0 x1) + noise``."""

from __future__ import annotations

import numpy as np
from ml_collections import ConfigDict

from negres.fields import Field, number
from negres.tasks.base import Task
from negres.tasks.common import data_seed_field, size_field, split_rows

COEFFICIENTS = np.array([3.0, 2.0, -1.5, 0.0, 0.0], dtype=np.float32)
COEFFICIENTS.setflags(write=False)  # shared by every task built: read-only

FIELDS: tuple[Field, ...] = (
    size_field("num_train", 1000, "training examples generated"),
    size_field("num_test", 500, "test examples generated"),
    number("noise_std", 0.1, "standard deviation of the Gaussian noise added to the target",
           0.0),
    number("interaction", 0.0, "coefficient of x0 * x1 in the target"),
    data_seed_field(),
)


def regression_target(x: np.ndarray, interaction: float) -> np.ndarray:
    """The noiseless target of ``x`` ``(N, 5)``: linear part plus ``interaction * x0 * x1``."""
    return x @ COEFFICIENTS + interaction * x[:, 0] * x[:, 1]


def make_synthetic_regression(task_config: ConfigDict) -> Task:
    """Five standard-normal features; only the first three matter (plus an optional interaction).

    Reads the fields of :data:`FIELDS` (``task_config`` completed with their defaults).
    """
    num_train = task_config.num_train
    interaction = float(task_config.interaction)
    rng = np.random.default_rng(task_config.data_seed)
    x = rng.standard_normal((num_train + task_config.num_test, 5)).astype(np.float32)
    noise_std = float(task_config.noise_std)
    y = regression_target(x, interaction) + noise_std * rng.standard_normal(len(x))
    return split_rows(
        "synthetic_regression", "regression", x, y.astype(np.float32), num_train,
        num_outputs=1,
        feature_names=tuple(f"x{i}" for i in range(5)),
        coefficients=COEFFICIENTS,
        # Product terms of the target as (i, j, coefficient); x0*x2 is absent from the
        # target and stays as a control whose true interaction is 0.
        interactions={"x0*x1": (0, 1, interaction), "x0*x2": (0, 2, 0.0)},
    )
