"""GrainFeed: examples at (seeds, steps, batch) indices read from random-access sources."""

import pickle

import grain
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python.array_record_module import ArrayRecordWriter

from negres.training.pipeline import ArraySource, GrainFeed, is_random_access

S, T, B = 3, 4, 5


def _memmaps(tmp_path, n=50):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((n, 6, 2), dtype=np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 10, n).astype(np.int32))
    return (np.load(tmp_path / "x.npy", mmap_mode="r"),
            np.load(tmp_path / "y.npy", mmap_mode="r"))


def _indices(n, seed=1):
    return np.random.default_rng(seed).integers(0, n, (S, T, B))


def decode(record: bytes) -> dict:
    """An ArrayRecord record (pickled dict) -> its arrays; module level so it pickles."""
    return pickle.loads(record)


@pytest.fixture
def array_record_file(tmp_path):
    rng = np.random.default_rng(2)
    path = str(tmp_path / "data.array_record")
    writer = ArrayRecordWriter(path, "group_size:1")
    for i in range(30):
        writer.write(pickle.dumps({"image": rng.integers(0, 256, (4, 4, 1), dtype=np.uint8),
                                   "label": np.int64(i % 10)}))
    writer.close()
    return path


def test_load_over_memmaps_equals_fancy_indexing_every_leaf(tmp_path):
    x, y = _memmaps(tmp_path)
    idx = _indices(len(y))
    feed = GrainFeed(ArraySource({"x": x, "y": y}))
    assert feed.mode == "take" and feed.num_examples == len(y)
    out = feed.load(idx)
    assert out["x"].shape == (S, T, B, 6, 2) and out["y"].shape == (S, T, B)
    assert out["x"].dtype == np.float32 and out["y"].dtype == np.int32
    np.testing.assert_array_equal(out["x"], x[idx])
    np.testing.assert_array_equal(out["y"], y[idx])
    # Record by record through the same pipeline gives the same examples.
    slow = GrainFeed(ArraySource({"x": x, "y": y}), batch_reads=False, read_threads=0)
    assert slow.mode == "__getitem__"
    np.testing.assert_array_equal(slow.load(idx)["x"], x[idx])
    example = feed.example(7)
    np.testing.assert_array_equal(example["x"], x[:7])
    assert feed.load(np.zeros((S, 0), int))["x"].shape == (S, 0, 6, 2)


def test_a_pytree_of_arrays_is_wrapped_in_an_array_source():
    x = np.arange(40.0).reshape(20, 2)
    feed = GrainFeed((x, jnp.arange(20)))
    idx = _indices(20)
    out = feed.load(idx)
    np.testing.assert_array_equal(out[0], x[idx])
    np.testing.assert_array_equal(out[1], idx)


def test_worker_processes_keep_the_order_and_reopen_memmaps_by_name(tmp_path):
    x, y = _memmaps(tmp_path)
    source = ArraySource((x, y))
    # The memmap travels as its file name, not as its data.
    assert len(pickle.dumps(source)) < x.nbytes
    reopened = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(reopened[3][0], x[3])
    idx = _indices(len(y), seed=3)
    out = GrainFeed(source, worker_count=2).load(idx)
    np.testing.assert_array_equal(out[0], x[idx])
    np.testing.assert_array_equal(out[1], y[idx])


def test_load_over_a_mocked_tfds_data_source_equals_reading_records_one_by_one():
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        source = tfds.data_source("mnist", split="train")
        assert is_random_access(source)
        # tfds's mock replaces __getitems__ with a broken stand-in: read one by one.
        feed = GrainFeed(source, batch_reads=False)
        idx = _indices(len(source))
        out = feed.load(idx)
        assert out["image"].shape == (S, T, B, 28, 28, 1) and out["image"].dtype == np.uint8
        for s, t, b in np.ndindex(S, T, B):
            record = source[int(idx[s, t, b])]
            np.testing.assert_array_equal(out["image"][s, t, b], record["image"])
            assert out["label"][s, t, b] == record["label"]


def test_load_over_array_record_uses_its_batch_read_and_equals_records_one_by_one(
        array_record_file):
    source = grain.sources.ArrayRecordDataSource(array_record_file)
    feed = GrainFeed(source, decode=decode)
    assert feed.mode == "__getitems__"
    idx = _indices(len(source))
    out = feed.load(idx)
    for s, t, b in np.ndindex(S, T, B):
        record = decode(source[int(idx[s, t, b])])
        np.testing.assert_array_equal(out["image"][s, t, b], record["image"])
        assert out["label"][s, t, b] == record["label"]


def test_is_random_access(tmp_path, array_record_file):
    x, y = _memmaps(tmp_path)

    class MemmapRows:
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i]

    assert is_random_access(ArraySource((x, y)))
    assert is_random_access(grain.sources.ArrayRecordDataSource(array_record_file))
    assert is_random_access(MemmapRows())
    for data in (x, np.zeros(3), jnp.zeros(3), [x, y], (x, y), {"x": x}, "abc",
                 (i for i in range(3)), ArraySource, None, 3):
        assert not is_random_access(data), type(data)


class _Ragged:
    """Records of shape (4,), except record 5 of shape (3,)."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"x": np.zeros(3 if i == 5 else 4, np.float32), "y": np.int64(i)}


def test_records_that_disagree_in_shape_raise_naming_the_index():
    feed = GrainFeed(_Ragged())
    with pytest.raises(ValueError, match=r"record 5 of the source has a leaf of shape \(3,\)"):
        feed.load(np.array([[0, 1], [2, 5]]))
    np.testing.assert_array_equal(feed.load(np.array([[1, 2]]))["y"], [[1, 2]])


def test_indices_outside_the_source_raise():
    feed = GrainFeed(np.arange(10))
    with pytest.raises(IndexError, match="index 10 at position"):
        feed.load(np.array([[0, 10]]))
    with pytest.raises(IndexError, match="index -1"):
        feed.load(np.array([-1]))
