"""Coloured shapes whose shape and colour are correlated in training, with held-out pairs.

A study of "shape learned at the expense of colour": each image is one of 4 shapes in one
of 4 colours. In training the colour mostly follows the shape (``c == s`` with probability
``correlation``) and the pairs ``c == (s + 2) % 4`` never occur; the test set holds all 16
pairs equally, so a model's use of either factor shows on the held-out pairs.
"""

from __future__ import annotations

import numpy as np
from ml_collections import ConfigDict

from negres.fields import Field, choice, integer, is_int, number
from negres.tasks.base import Task
from negres.tasks.common import data_seed_field, size_field

SHAPE_NAMES = ("square", "disk", "triangle", "plus")
COLOR_NAMES = ("red", "green", "blue", "yellow")
# Saturated and well apart in RGB, so that after jitter the nearest base colour is still
# the true one; blue is lifted a little so it stands out from the dark background.
BASE_COLORS = np.array(
    [[0.90, 0.12, 0.10], [0.15, 0.80, 0.15], [0.20, 0.30, 0.95], [0.90, 0.85, 0.10]],
    dtype=np.float32,
)
NUM_FACTOR_VALUES = 4
BACKGROUND_LEVEL = 0.1
# Each pixel is sampled on a SUPERSAMPLE x SUPERSAMPLE sub-grid and the shape's coverage
# is the mean: at 12x12 a hard-edged disk is almost a square, its soft rim is what differs.
SUPERSAMPLE = 4
# Drawing an image takes 4 * SUPERSAMPLE**2 bytes a pixel (9 KB at 12x12) for its masks.
MAX_IMAGES = 1_000_000
MAX_IMAGE_SIZE = 64
NUM_PAIRS = NUM_FACTOR_VALUES**2

FIELDS: tuple[Field, ...] = (
    choice("target", "shape", "the factor to predict", ("shape", "color")),
    integer("image_size", 12, "image side in pixels", minimum=8, maximum=MAX_IMAGE_SIZE),
    size_field("num_train", 2000, "training images generated", maximum=MAX_IMAGES),
    Field("num_test", 800, "test images generated, each of the 16 shape-colour pairs "
          "equally often",
          f"a multiple of {NUM_PAIRS} from {NUM_PAIRS} to {MAX_IMAGES} (the {NUM_PAIRS} "
          "shape-colour pairs are balanced)",
          lambda v: is_int(v) and NUM_PAIRS <= v <= MAX_IMAGES and v % NUM_PAIRS == 0),
    number("correlation", 0.8, "share of training images in their shape's own colour",
           0.0, 1.0),
    number("color_jitter", 0.1, "brightness and hue noise of the shape's colour", 0.0, 0.3),
    number("background_noise", 0.05, "standard deviation of the background's pixel noise",
           0.0, 0.3),
    data_seed_field(),
)


def held_out_colors(shape: np.ndarray) -> np.ndarray:
    """The colour never seen in training with each shape: ``(s + 2) % 4``, same shape as input."""
    return (np.asarray(shape) + 2) % NUM_FACTOR_VALUES


# The (shape, colour) pairs that never occur in training.
HELD_OUT_PAIRS = tuple((s, int(held_out_colors(s))) for s in range(NUM_FACTOR_VALUES))


def _shape_coverage(shape: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Fraction of each pixel covered by the example's shape, ``(N, size, size)`` in [0, 1].

    Args:
      shape: ``(N,)`` int shape index into SHAPE_NAMES.
      size: image side in pixels.
      rng: draws the per-example centre jitter and size jitter.
    """
    n = len(shape)
    scale = size / 12.0  # jitter and extent were tuned at 12x12; keep proportions elsewhere
    centre = (size - 1) / 2 + rng.uniform(-1.5, 1.5, (2, n, 1, 1)) * scale
    half = rng.uniform(3.0, 4.0, (n, 1, 1)) * scale
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    grid = (np.arange(size)[:, None] + offsets[None, :]).reshape(-1)  # (size * SUPERSAMPLE,)
    # Coordinates relative to the centre, in units of the half-size: (N, H*ss, W*ss).
    dy = (grid[None, :, None] - centre[0]) / half
    dx = (grid[None, None, :] - centre[1]) / half
    ady, adx = np.abs(dy), np.abs(dx)
    masks = np.stack([
        np.maximum(ady, adx) <= 0.8,  # square: smaller than the disk so areas are alike
        dy**2 + dx**2 <= 1.0,  # disk
        (dy >= -1.0) & (dy <= 0.8) & (adx <= (dy + 1.0) * 0.55),  # triangle, apex up
        ((ady <= 0.3) & (adx <= 1.0)) | ((adx <= 0.3) & (ady <= 1.0)),  # plus
    ])  # (4, N, H*ss, W*ss); drawing all four and picking one keeps it loop-free
    chosen = masks[shape, np.arange(n)].astype(np.float32)
    return chosen.reshape(n, size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4))


def render(
    shape: np.ndarray, color: np.ndarray, cfg: ConfigDict, rng: np.random.Generator
) -> np.ndarray:
    """Images of the given shape-colour pairs, ``(N, S, S, 3)`` float32 in [0, 1].

    Args:
      shape, color: ``(N,)`` int factor indices.
      cfg: the task config, completed: reads ``image_size``, ``color_jitter`` and
        ``background_noise``.
      rng: the only source of randomness (jitter and noise).
    """
    n, size = len(shape), cfg.image_size
    coverage = _shape_coverage(shape, size, rng)[..., None]  # (N, S, S, 1)
    jitter = float(cfg.color_jitter)
    brightness = 1.0 + jitter * rng.uniform(-1.0, 1.0, (n, 1))
    rgb = BASE_COLORS[color] * brightness + 0.5 * jitter * rng.standard_normal((n, 3))
    rgb = np.clip(rgb, 0.0, 1.0)[:, None, None, :]
    noise = float(cfg.background_noise) * rng.standard_normal((n, size, size, 3))
    background = np.clip(BACKGROUND_LEVEL + noise, 0.0, 1.0)
    return (coverage * rgb + (1.0 - coverage) * background).astype(np.float32)


def _training_pairs(
    n: int, correlation: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(shape, color)`` each ``(n,)`` int32: colour ``s`` w.p. ``correlation``, else s±1."""
    shape = rng.integers(0, NUM_FACTOR_VALUES, n)
    paired = rng.random(n) < correlation
    step = rng.choice(np.array([1, 3]), n)  # the two seen, unpaired colours
    color = np.where(paired, shape, (shape + step) % NUM_FACTOR_VALUES)
    return shape.astype(np.int32), color.astype(np.int32)


def _test_pairs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(shape, color)`` each ``(n,)`` int32 with all 16 pairs exactly ``n / 16`` times."""
    pair = rng.permutation(np.arange(n) % NUM_FACTOR_VALUES**2)
    shape, color = np.divmod(pair, NUM_FACTOR_VALUES)
    return shape.astype(np.int32), color.astype(np.int32)


def make_shape_color(task_config: ConfigDict) -> Task:
    """4 shapes x 4 colours as ``(N, S, S, 3)`` images; the label is the ``target`` factor.

    Reads the fields of :data:`FIELDS` (``task_config`` completed with their defaults).
    Images do not depend on ``target``, only the labels do.
    """
    num_train = task_config.num_train
    rng = np.random.default_rng(task_config.data_seed)
    train_shape, train_color = _training_pairs(num_train, float(task_config.correlation), rng)
    test_shape, test_color = _test_pairs(task_config.num_test, rng)
    x = render(np.concatenate([train_shape, test_shape]),
               np.concatenate([train_color, test_color]), task_config, rng)
    by_target = task_config.target == "shape"
    held_out = test_color == held_out_colors(test_shape)
    size = task_config.image_size
    return Task(
        name="shape_color",
        kind="classification",
        x_train=x[:num_train],
        y_train=train_shape if by_target else train_color,
        x_test=x[num_train:],
        y_test=test_shape if by_target else test_color,
        num_outputs=NUM_FACTOR_VALUES,
        feature_names=tuple(f"pixel_{r}_{c}_{ch}" for r in range(size) for c in range(size)
                            for ch in "rgb"),
        test_subsets={
            "seen_combinations": ~held_out,
            "held_out_combinations": held_out,
            "paired_combinations": test_color == test_shape,
        },
    )
