"""scikit-learn's bundled 8x8 digits: real data that needs no download."""

from __future__ import annotations

import numpy as np
from ml_collections import ConfigDict
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from negres.tasks.base import Task


def make_digits(task_config: ConfigDict) -> Task:
    """Digits as ``(N, 8, 8, 1)`` images in [0, 1], stratified train/test split.

    Config fields: ``test_fraction`` (default 0.2), ``split_seed`` (default 0).
    """
    test_fraction = float(task_config.get("test_fraction", 0.2))
    split_seed = int(task_config.get("split_seed", 0))
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y
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
