"""A regression world whose truth is known: ``y = 3 x0 + 2 x1 - 1.5 x2 (+ c x0 x1) + noise``."""

from __future__ import annotations

import numpy as np
from ml_collections import ConfigDict

from negres.tasks.base import Task

COEFFICIENTS = np.array([3.0, 2.0, -1.5, 0.0, 0.0], dtype=np.float32)


def regression_target(x: np.ndarray, interaction: float) -> np.ndarray:
    """The noiseless target of ``x`` ``(N, 5)``: linear part plus ``interaction * x0 * x1``."""
    return x @ COEFFICIENTS + interaction * x[:, 0] * x[:, 1]


def make_synthetic_regression(task_config: ConfigDict) -> Task:
    """Five standard-normal features; only the first three matter (plus an optional interaction).

    Config fields: ``num_train`` (1000), ``num_test`` (500), ``noise_std`` (0.1),
    ``interaction`` (0.0: coefficient of ``x0 * x1``), ``data_seed`` (0).
    """
    num_train = int(task_config.get("num_train", 1000))
    num_test = int(task_config.get("num_test", 500))
    noise_std = float(task_config.get("noise_std", 0.1))
    interaction = float(task_config.get("interaction", 0.0))
    rng = np.random.default_rng(int(task_config.get("data_seed", 0)))
    x = rng.standard_normal((num_train + num_test, 5)).astype(np.float32)
    y = regression_target(x, interaction) + noise_std * rng.standard_normal(len(x))
    y = y.astype(np.float32)
    return Task(
        name="synthetic_regression",
        kind="regression",
        x_train=x[:num_train],
        y_train=y[:num_train],
        x_test=x[num_train:],
        y_test=y[num_train:],
        num_outputs=1,
        feature_names=tuple(f"x{i}" for i in range(5)),
        known={
            "coefficients": COEFFICIENTS,
            "interaction": interaction,
            # Product terms of the target as (i, j, coefficient); x0*x2 is absent from the
            # target and stays as a control whose true interaction is 0.
            "interactions": {"x0*x1": (0, 1, interaction), "x0*x2": (0, 2, 0.0)},
            "noise_std": noise_std,
        },
    )
