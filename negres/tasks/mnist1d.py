"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package.

The data are made by ``mnist1d.data.make_dataset`` from the package's own templates, never
downloaded. Signals are standardised by the package (zero mean, unit std over the whole
set) and kept at that scale.
"""

from __future__ import annotations

import functools

import numpy as np
from ml_collections import ConfigDict
from mnist1d.data import get_dataset_args, make_dataset

from negres.errors import ConfigError
from negres.tasks.base import Task


@functools.lru_cache(maxsize=4)
def _generate(num_samples: int, train_split: float, shuffle_seq: bool, data_seed: int):
    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = train_split
    args.shuffle_seq = shuffle_seq
    args.seed = data_seed
    # make_dataset seeds NumPy's global generator; keep the caller's stream as it was.
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return (data["x"].astype(np.float32), data["y"].astype(np.int32),
            data["x_test"].astype(np.float32), data["y_test"].astype(np.int32))


def make_mnist1d(task_config: ConfigDict) -> Task:
    """MNIST-1D as ``(N, 40, 1)`` signals with 10 classes.

    Config fields: ``num_samples`` (5000, the package default: 4000 train, 1000 test),
    ``train_split`` (0.8), ``shuffle_seq`` (False; True permutes the 40 positions the same
    way for every example, a control that removes spatial structure), ``data_seed`` (42,
    the package's default, which gives the published dataset's generator settings).
    """
    num_samples = int(task_config.get("num_samples", 5000))
    if num_samples < 20:
        raise ConfigError("task.num_samples", num_samples, "an integer >= 20")
    train_split = float(task_config.get("train_split", 0.8))
    if not 0.0 < train_split < 1.0:
        raise ConfigError("task.train_split", train_split, "a number in (0, 1)")
    x_train, y_train, x_test, y_test = _generate(
        num_samples, train_split, bool(task_config.get("shuffle_seq", False)),
        int(task_config.get("data_seed", 42)),
    )
    return Task(
        name="mnist1d",
        kind="classification",
        x_train=x_train[..., None],
        y_train=y_train,
        x_test=x_test[..., None],
        y_test=y_test,
        num_outputs=10,
        feature_names=tuple(f"t{i}" for i in range(x_train.shape[1])),
    )
