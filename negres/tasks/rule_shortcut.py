"""Tasks whose labels follow an explicit rule while an auxiliary shortcut mostly agrees with it.

They reproduce "high accuracy hides rule violations": a model can score well in
distribution by reading the shortcut instead of the rule, which shows up only on the test
examples where the shortcut conflicts with the rule (``Task.test_subsets``) or under
the task's shift that makes the shortcut contradict the rule.

``rule_shortcut`` is tabular: the label is ``core_a > t AND core_b > t`` and the last
column is a noisy signed copy of the label. ``digits_shortcut`` is real scikit-learn
digits with a 4x1 patch on the left edge whose intensity ``(c + 1) / 10`` codes a class
``c``.

The patch sits where the digits have no ink, so it adds a cue without erasing evidence:
checked on all 1797 images, pixels (2..5, 0) are nonzero in at most 0.5% of them. No 2x2
block is that blank (pixel (1, 1) of the top-left corner is inked in 41% of the digits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres.fields import Field, integer, number
from negres.tasks.base import Task
from negres.tasks.common import data_seed_field, size_field, split_rows
from negres.tasks.digits import FIELDS as DIGITS_FIELDS
from negres.tasks.digits import make_digits

NUM_DIGIT_CLASSES = 10
# Rows and columns of the digits' shortcut patch (rows 2-5 of the blank left column).
PATCH_ROWS = slice(2, 6)
PATCH_COLS = slice(0, 1)
PATCH_FLAT_INDICES = (16, 24, 32, 40)  # r * 8 + c for the patch pixels of an (8, 8, 1) image

_AGREEMENT = number("shortcut_agreement", 0.95,
                    "share of examples whose shortcut agrees with the label", 0.0, 1.0)

RULE_SHORTCUT_FIELDS: tuple[Field, ...] = (
    size_field("num_train", 2000, "training examples generated"),
    size_field("num_test", 1000, "test examples generated"),
    integer("num_distractors", 3, "uniform features that carry no information on the label",
            minimum=0, maximum=1000),
    # Open interval: at 0 or 1 one class would be (almost) empty.
    number("rule_threshold", 0.3, "t of the rule core_a > t AND core_b > t", 0.0, 1.0,
           low_open=True, high_open=True),
    _AGREEMENT,
    # Above 0: the shortcut's sign carries the label.
    number("shortcut_scale", 1.0, "size of the shortcut's signed label code", 0.0,
           low_open=True),
    number("shortcut_noise", 0.1, "standard deviation of the Gaussian noise on the shortcut",
           0.0),
    data_seed_field(),
)

DIGITS_SHORTCUT_FIELDS: tuple[Field, ...] = (
    *DIGITS_FIELDS,
    _AGREEMENT,
    data_seed_field(doc="which examples' patch agrees and the wrong classes; the same for "
                    "every seed"),
)


def rule_text(threshold: float) -> str:
    """The rule of ``rule_shortcut`` at ``threshold``, as a reader would write it."""
    return f"IF core_a > {threshold:g} AND core_b > {threshold:g} THEN 1 ELSE 0"


def rule_label(x: jax.Array | np.ndarray, threshold: float) -> jax.Array:
    """The rule ``core_a > t AND core_b > t`` as int32 ``(N,)`` for ``x`` ``(N, D)``."""
    x = jnp.asarray(x)
    return ((x[:, 0] > threshold) & (x[:, 1] > threshold)).astype(jnp.int32)


def shortcut_reversal(key: jax.Array, x: jax.Array, severity: jax.Array | float, *,
                      threshold: float, scale: float, noise: float, column: int) -> jax.Array:
    """Each example's shortcut, with probability ``severity``, re-drawn to contradict the rule.

    ``x``: ``(N, D)``; returns ``(N, D)`` with only column ``column`` changed.
    """
    choose_key, noise_key = jax.random.split(key)
    x = jnp.asarray(x)
    n = x.shape[0]
    signed_rule = 2.0 * rule_label(x, threshold).astype(x.dtype) - 1.0
    contradicting = -scale * signed_rule + noise * jax.random.normal(noise_key, (n,), x.dtype)
    # uniform in [0, 1) is never < 0 and always < 1: severity 0 and 1 are exact.
    redraw = jax.random.uniform(choose_key, (n,)) < severity
    return x.at[:, column].set(jnp.where(redraw, contradicting, x[:, column]))


def make_rule_shortcut(task_config: ConfigDict) -> Task:
    """Tabular rule task: ``(N, 3 + num_distractors)`` float32 features, binary int32 labels.

    Features: ``core_a``, ``core_b``, ``distractor_i`` ~ U(0, 1), then ``shortcut`` =
    ``shortcut_scale * (2 a - 1) + shortcut_noise * N(0, 1)``, where ``a`` is the label with
    probability ``shortcut_agreement`` and its opposite otherwise (independent per example,
    so train and test share the agreement rate).

    Reads the fields of :data:`RULE_SHORTCUT_FIELDS` (``task_config`` completed with their
    defaults).
    """
    num_train = task_config.num_train
    num_distractors = task_config.num_distractors
    threshold = float(task_config.rule_threshold)
    scale = float(task_config.shortcut_scale)
    noise = float(task_config.shortcut_noise)

    rng = np.random.default_rng(task_config.data_seed)
    n = num_train + task_config.num_test
    inputs = rng.uniform(0.0, 1.0, (n, 2 + num_distractors))
    y = np.asarray(rule_label(inputs, threshold))
    agree = rng.random(n) < float(task_config.shortcut_agreement)
    shortcut_label = np.where(agree, y, 1 - y)
    shortcut = scale * (2.0 * shortcut_label - 1.0) + noise * rng.standard_normal(n)
    x = np.concatenate([inputs, shortcut[:, None]], axis=1).astype(np.float32)
    column = x.shape[1] - 1

    # Judged from the shortcut as stored, so noise-flipped signs count as conflicts.
    test_agrees = (x[num_train:, column] > 0) == (y[num_train:] == 1)
    names = ("core_a", "core_b", *(f"distractor_{i}" for i in range(num_distractors)),
             "shortcut")
    return split_rows(
        "rule_shortcut", "classification", x, y, num_train,
        num_outputs=2,
        feature_names=names,
        shortcut_features=(column,),
        test_subsets={"shortcut_agrees": test_agrees, "shortcut_conflicts": ~test_agrees},
        shifts={"shortcut_reversal": functools.partial(
            shortcut_reversal, threshold=threshold, scale=scale, noise=noise, column=column)},
    )


def patch_code(classes: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """Patch intensity ``(c + 1) / 10`` of classes ``c`` (0 stays free for blank pixels)."""
    return (classes + 1) / NUM_DIGIT_CLASSES


def patch_shuffle(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """Each image's patch, with probability ``severity``, re-coded to a uniform random class.

    ``x``: ``(N, 8, 8, 1)``; returns the same shape with only the patch pixels changed.
    """
    choose_key, class_key = jax.random.split(key)
    x = jnp.asarray(x)
    n = x.shape[0]
    redraw = jax.random.uniform(choose_key, (n,)) < severity
    code = patch_code(jax.random.randint(class_key, (n,), 0, NUM_DIGIT_CLASSES)).astype(x.dtype)
    patch = x[:, PATCH_ROWS, PATCH_COLS, 0]
    new_patch = jnp.where(redraw[:, None, None], code[:, None, None], patch)
    return x.at[:, PATCH_ROWS, PATCH_COLS, 0].set(new_patch)


def _plant_patch(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                 agreement: float) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 8, 8, 1)`` with the patch set, and the bool ``(N,)`` agreement mask."""
    agree = rng.random(len(y)) < agreement
    # Adding 1..9 modulo 10 gives a uniformly drawn class other than the label.
    wrong = (y + rng.integers(1, NUM_DIGIT_CLASSES, len(y))) % NUM_DIGIT_CLASSES
    classes = np.where(agree, y, wrong)
    x = x.copy()
    x[:, PATCH_ROWS, PATCH_COLS, 0] = patch_code(classes)[:, None, None]
    return x, agree


def make_digits_shortcut(task_config: ConfigDict) -> Task:
    """Digits ``(N, 8, 8, 1)`` in [0, 1] with a class-coding 4x1 left-edge patch, 10 classes.

    The patch codes the true digit with probability ``shortcut_agreement``, otherwise a
    uniformly drawn wrong class; train and test are drawn independently.

    Reads the fields of :data:`DIGITS_SHORTCUT_FIELDS` (``task_config`` completed with
    their defaults).
    """
    agreement = float(task_config.shortcut_agreement)
    digits = make_digits(task_config)
    train_key, test_key = np.random.SeedSequence(task_config.data_seed).spawn(2)
    x_train, _ = _plant_patch(np.random.default_rng(train_key), digits.x_train,
                              digits.y_train, agreement)
    x_test, test_agrees = _plant_patch(np.random.default_rng(test_key), digits.x_test,
                                       digits.y_test, agreement)
    return Task(
        name="digits_shortcut",
        kind="classification",
        x_train=x_train,
        y_train=digits.y_train,
        x_test=x_test,
        y_test=digits.y_test,
        num_outputs=NUM_DIGIT_CLASSES,
        feature_names=digits.feature_names,
        shortcut_features=PATCH_FLAT_INDICES,
        test_subsets={"shortcut_agrees": test_agrees, "shortcut_conflicts": ~test_agrees},
        shifts={"patch_shuffle": patch_shuffle},
    )
