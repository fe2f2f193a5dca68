"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package.

The data are made by ``mnist1d.data.make_dataset`` from the package's own templates, never
downloaded. Signals are standardised by the package (zero mean, unit std over the whole
set) and kept at that scale.
"""

from __future__ import annotations

import functools

import numpy as np
from ml_collections import ConfigDict

from negres.fields import Field, boolean, integer, number
from negres.tasks.base import Task
from negres.tasks.common import MAX_EXAMPLES, data_seed_field

FIELDS: tuple[Field, ...] = (
    # At least 2 signals per class (10 classes).
    integer("num_samples", 5000, "signals generated, train and test together (the package "
            "default: 4000 train, 1000 test)", minimum=20, maximum=MAX_EXAMPLES),
    number("train_split", 0.8, "share of the signals used for training", 0.0, 1.0,
           low_open=True, high_open=True),
    boolean("shuffle_seq", False, "True: the 40 positions permuted the same way for every "
            "example (the spatially shuffled control)"),
    # The package seeds NumPy's global generator, which takes 0 .. 2**32 - 1.
    data_seed_field(42, "the package's generator seed (42, its default, gives the published "
                    "dataset's settings)", maximum=2**32 - 1),
)


@functools.lru_cache(maxsize=4)
def _generate(num_samples: int, train_split: float, shuffle_seq: bool, data_seed: int):
    from mnist1d.data import get_dataset_args, make_dataset  # loads with the first MNIST-1D

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

    Reads the fields of :data:`FIELDS` (``task_config`` completed with their defaults).
    """
    x_train, y_train, x_test, y_test = _generate(
        task_config.num_samples, float(task_config.train_split), task_config.shuffle_seq,
        task_config.data_seed,
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
