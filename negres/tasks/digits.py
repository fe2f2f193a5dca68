"""scikit-learn's bundled 8x8 digits: real data that needs no download."""

from __future__ import annotations

import numpy as np
from ml_collections import ConfigDict

from negres.fields import Field, integer, number
from negres.tasks.base import Task

FIELDS: tuple[Field, ...] = (
    number("test_fraction", 0.2, "share of examples held out for testing (stratified)",
           0.0, 1.0, low_open=True, high_open=True),
    # scikit-learn's random_state takes 0 .. 2**32 - 1.
    integer("split_seed", 0, "the train/test split; the same for every seed", minimum=0,
            maximum=2**32 - 1),
)


def make_digits(task_config: ConfigDict) -> Task:
    """Digits as ``(N, 8, 8, 1)`` images in [0, 1], stratified train/test split.

    Reads the fields of :data:`FIELDS` (``task_config`` completed with their defaults).
    """
    # scikit-learn (a second of import) loads when a digits task is built, not with negres.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split  # (the same)

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=float(task_config.test_fraction),
        random_state=task_config.split_seed, stratify=y
    )
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    return Task(
        name="digits",
        kind="classification",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_outputs=10,
        feature_names=names,
    )
