"""MNIST-1D generated locally by the mnist1d package; the shuffled control; train subsets."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks import load_task


@pytest.fixture(scope="module")
def mnist1d():
    return load_task(ConfigDict({"name": "mnist1d"}))


def test_shapes_balance_and_determinism(mnist1d):
    assert mnist1d.x_train.shape == (4000, 40, 1) and mnist1d.x_test.shape == (1000, 40, 1)
    assert mnist1d.x_train.dtype == np.float32 and mnist1d.y_train.dtype == np.int32
    counts = np.bincount(mnist1d.y_train, minlength=10)
    assert counts.min() > 350 and counts.max() < 450  # 400 per class on average
    again = load_task(ConfigDict({"name": "mnist1d"}))
    np.testing.assert_array_equal(again.x_train, mnist1d.x_train)
    other = load_task(ConfigDict({"name": "mnist1d", "data_seed": 7, "num_samples": 500}))
    assert other.x_train.shape == (400, 40, 1)


def test_shuffle_seq_permutes_positions_the_same_way_for_every_example(mnist1d):
    shuffled = load_task(ConfigDict({"name": "mnist1d", "shuffle_seq": True}))
    np.testing.assert_array_equal(shuffled.y_train, mnist1d.y_train)
    a, b = mnist1d.x_train[:, :, 0], shuffled.x_train[:, :, 0]
    assert not np.allclose(a, b)
    # One permutation explains every example: recover it from the first, apply it to all.
    permutation = [int(np.argmin(np.abs(a[0] - b[0, j]))) for j in range(40)]
    np.testing.assert_allclose(a[:, permutation], b, atol=1e-5)


def test_train_subset_is_shared_and_validated(mnist1d):
    subset = load_task(ConfigDict({"name": "mnist1d", "train_subset": 100}))
    assert subset.num_train == 100 and subset.num_test == mnist1d.num_test
    rows = {tuple(np.round(r, 5)) for r in mnist1d.x_train[:, :, 0]}
    assert all(tuple(np.round(r, 5)) in rows for r in subset.x_train[:, :, 0])
    with pytest.raises(ConfigError, match="train_subset"):
        load_task(ConfigDict({"name": "mnist1d", "train_subset": 5000}))
