"""Coloured shapes: balanced test pairs, held-out pairs absent in training, both cues present."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks import load_task
from negres.tasks.shape_color import HELD_OUT_PAIRS


def make_shape_color(**fields):
    return load_task(ConfigDict({"name": "shape_color", **fields}))


def _make(**fields):
    return make_shape_color(**{"num_train": 600, "num_test": 320, **fields})


@pytest.fixture(scope="module")
def by_shape():
    return _make(target="shape")


@pytest.fixture(scope="module")
def by_color():
    return _make(target="color")


def _foreground(x: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` bool: pixels mostly covered by the shape (background sits near 0.1)."""
    return x.max(axis=-1) > 0.45


def _nearest_centroid_accuracy(features_train, y_train, features_test, y_test) -> float:
    centroids = np.stack([features_train[y_train == k].mean(axis=0) for k in range(4)])
    distances = ((features_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float(np.mean(distances.argmin(axis=1) == y_test))


def test_shapes_dtypes_and_range(by_shape):
    assert by_shape.x_train.shape == (600, 12, 12, 3)
    assert by_shape.x_test.shape == (320, 12, 12, 3)
    assert by_shape.x_train.dtype == np.float32 and by_shape.y_train.dtype == np.int32
    assert by_shape.num_outputs == 4 and by_shape.kind == "classification"
    for x in (by_shape.x_train, by_shape.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(by_shape.y_train)) == {0, 1, 2, 3}
    assert by_shape.y_test.dtype == np.int32
    assert len(by_shape.feature_names) == 12 * 12 * 3
    assert _make(image_size=16).x_train.shape == (600, 16, 16, 3)


def test_determinism(by_shape):
    again = _make(target="shape")
    np.testing.assert_array_equal(again.x_train, by_shape.x_train)
    np.testing.assert_array_equal(again.y_test, by_shape.y_test)
    other = _make(target="shape", data_seed=1)
    assert not np.allclose(other.x_train, by_shape.x_train)
    assert not np.array_equal(other.y_train, by_shape.y_train)


def test_same_images_different_labels(by_shape, by_color):
    np.testing.assert_array_equal(by_shape.x_train, by_color.x_train)
    np.testing.assert_array_equal(by_shape.x_test, by_color.x_test)
    assert not np.array_equal(by_shape.y_train, by_color.y_train)
    assert not np.array_equal(by_shape.y_test, by_color.y_test)


def test_no_held_out_pair_in_training(by_shape, by_color):
    shape, color = by_shape.y_train, by_color.y_train
    assert not np.any(color == (shape + 2) % 4)
    assert sorted(HELD_OUT_PAIRS) == [(0, 2), (1, 3), (2, 0), (3, 1)]
    # Every seen pair does occur, so "held out" is the only gap.
    seen = {(int(s), int(c)) for s, c in zip(shape, color, strict=True)}
    assert len(seen) == 12


def test_test_pairs_balanced_and_subsets_marked(by_shape, by_color):
    # The images are the same for either target: the labels are the test pairs.
    shape, color = by_shape.y_test, by_color.y_test
    counts = np.bincount(shape * 4 + color, minlength=16)
    np.testing.assert_array_equal(counts, np.full(16, 320 // 16))
    subsets = by_shape.test_subsets
    held, seen = subsets["held_out_combinations"], subsets["seen_combinations"]
    assert held.dtype == bool and held.shape == (320,)
    np.testing.assert_array_equal(held, color == (shape + 2) % 4)
    np.testing.assert_array_equal(seen, ~held)
    assert held.sum() == 4 * 20
    np.testing.assert_array_equal(subsets["paired_combinations"], color == shape)
    assert not np.any(subsets["paired_combinations"] & held)


@pytest.mark.parametrize("correlation", [0.5, 0.9])
def test_training_correlation_within_binomial_tolerance(correlation):
    shape = make_shape_color(num_train=2000, num_test=16, correlation=correlation,
                             target="shape")
    color = make_shape_color(num_train=2000, num_test=16, correlation=correlation,
                             target="color")
    paired_share = np.mean(shape.y_train == color.y_train)
    tolerance = 4 * np.sqrt(correlation * (1 - correlation) / 2000)  # 4 standard errors
    assert abs(paired_share - correlation) < tolerance
    # The unpaired rest splits evenly between s+1 and s+3.
    unpaired = shape.y_train != color.y_train
    plus_one = np.mean((color.y_train[unpaired] - shape.y_train[unpaired]) % 4 == 1)
    assert abs(plus_one - 0.5) < 4 * np.sqrt(0.25 / unpaired.sum())


def test_color_recoverable_from_foreground_mean(by_color):
    def mean_rgb(x):
        mask = _foreground(x)[..., None]
        return (x * mask).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))

    accuracy = _nearest_centroid_accuracy(
        mean_rgb(by_color.x_train), by_color.y_train, mean_rgb(by_color.x_test), by_color.y_test
    )
    assert accuracy > 0.97


def _aligned_masks(x: np.ndarray) -> np.ndarray:
    """``(N, H * W)`` foreground masks moved so each bounding box starts at the top-left."""
    mask = _foreground(x)
    n, h, w = mask.shape
    top = mask.any(axis=2).argmax(axis=1)
    left = mask.any(axis=1).argmax(axis=1)
    rows = top[:, None] + np.arange(h)[None, :]  # (N, H), past the edge reads as background
    cols = left[:, None] + np.arange(w)[None, :]
    padded = np.pad(mask, ((0, 0), (0, h), (0, w)))
    moved = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return moved.reshape(n, -1).astype(np.float32)


def test_shape_recoverable_from_foreground_mask(by_shape):
    # Aligning removes the position jitter that would blur a template matcher's centroids.
    accuracy = _nearest_centroid_accuracy(
        _aligned_masks(by_shape.x_train), by_shape.y_train,
        _aligned_masks(by_shape.x_test), by_shape.y_test,
    )
    assert accuracy > 0.8  # chance is 0.25; about 0.9 at these sizes over several seeds
    # The shapes' areas differ little, so size alone is not what tells them apart.
    area = _foreground(by_shape.x_test).sum(axis=(1, 2))
    mean_area = [area[by_shape.y_test == k].mean() for k in range(4)]
    assert max(mean_area) < 2.0 * min(mean_area)


@pytest.mark.parametrize(
    "field, value",
    [
        ("target", "texture"),
        ("image_size", 6),
        ("num_test", 100),
        ("num_test", 0),
        ("num_train", 0),
        ("correlation", 1.2),
        ("correlation", -0.1),
        ("color_jitter", -0.1),
        ("background_noise", 0.9),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"task.{field}") as info:
        make_shape_color(**{field: value})
    assert info.value.field == f"task.{field}"
