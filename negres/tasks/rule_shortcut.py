"""Tasks whose labels follow an explicit rule while an auxiliary shortcut mostly agrees with it.

They reproduce "high accuracy hides rule violations": a model can score well in
distribution by reading the shortcut instead of the rule, which shows up only on the test
examples where the shortcut conflicts with the rule (``known["test_subsets"]``) or under
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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks.base import Task
from negres.tasks.digits import make_digits

NUM_DIGIT_CLASSES = 10
# Rows and columns of the digits' shortcut patch (rows 2-5 of the blank left column).
PATCH_ROWS = slice(2, 6)
PATCH_COLS = slice(0, 1)
PATCH_FLAT_INDICES = (16, 24, 32, 40)  # r * 8 + c for the patch pixels of an (8, 8, 1) image


def _read(task_config: ConfigDict, name: str, default: Any, cast: Callable[[Any], Any],
          valid: Callable[[Any], bool], allowed: str) -> Any:
    """``task_config.<name>`` cast and checked once; a bad value raises ConfigError."""
    raw = task_config.get(name, default)
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"task.{name}", raw, allowed) from None
    if cast is int and value != raw:  # 2.5 would silently become 2
        raise ConfigError(f"task.{name}", raw, allowed)
    if not valid(value):
        raise ConfigError(f"task.{name}", raw, allowed)
    return value


def _agreement(task_config: ConfigDict) -> float:
    return _read(task_config, "shortcut_agreement", 0.95, float, lambda v: 0.0 <= v <= 1.0,
                 "a probability in [0, 1]")


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

    Config fields: ``num_train`` (2000), ``num_test`` (1000), ``num_distractors`` (3),
    ``rule_threshold`` (0.3), ``shortcut_agreement`` (0.95), ``shortcut_scale`` (1.0),
    ``shortcut_noise`` (0.1), ``data_seed`` (0).
    """
    num_train = _read(task_config, "num_train", 2000, int, lambda v: v >= 1, "an integer >= 1")
    num_test = _read(task_config, "num_test", 1000, int, lambda v: v >= 1, "an integer >= 1")
    num_distractors = _read(task_config, "num_distractors", 3, int, lambda v: v >= 0,
                            "an integer >= 0")
    # Open interval: at 0 or 1 one class would be (almost) empty.
    threshold = _read(task_config, "rule_threshold", 0.3, float, lambda v: 0.0 < v < 1.0,
                      "a number in (0, 1)")
    agreement = _agreement(task_config)
    scale = _read(task_config, "shortcut_scale", 1.0, float, lambda v: v > 0.0,
                  "a number > 0 (the shortcut's sign carries the label)")
    noise = _read(task_config, "shortcut_noise", 0.1, float, lambda v: v >= 0.0, "a number >= 0")
    data_seed = _read(task_config, "data_seed", 0, int, lambda v: True, "an integer")

    rng = np.random.default_rng(data_seed)
    n = num_train + num_test
    inputs = rng.uniform(0.0, 1.0, (n, 2 + num_distractors))
    y = np.asarray(rule_label(inputs, threshold))
    agree = rng.random(n) < agreement
    shortcut_label = np.where(agree, y, 1 - y)
    shortcut = scale * (2.0 * shortcut_label - 1.0) + noise * rng.standard_normal(n)
    x = np.concatenate([inputs, shortcut[:, None]], axis=1).astype(np.float32)
    column = x.shape[1] - 1

    # Judged from the shortcut as stored, so noise-flipped signs count as conflicts.
    test_agrees = (x[num_train:, column] > 0) == (y[num_train:] == 1)
    names = ("core_a", "core_b", *(f"distractor_{i}" for i in range(num_distractors)),
             "shortcut")
    return Task(
        name="rule_shortcut",
        kind="classification",
        x_train=x[:num_train],
        y_train=y[:num_train],
        x_test=x[num_train:],
        y_test=y[num_train:],
        num_outputs=2,
        feature_names=names,
        shortcut_features=(column,),
        known={
            "rule": f"IF core_a > {threshold:g} AND core_b > {threshold:g} THEN 1 ELSE 0",
            "shortcut_agreement": agreement,
            "test_subsets": {"shortcut_agrees": test_agrees,
                             "shortcut_conflicts": ~test_agrees},
        },
        shifts={"shortcut_reversal": functools.partial(
            shortcut_reversal, threshold=threshold, scale=scale, noise=noise, column=column)},
    )


def patch_code(classes: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """Patch intensity ``(c + 1) / 10`` of classes ``c`` (0 stays free for blank pixels)."""
    return (classes + 1) / NUM_DIGIT_CLASSES


def decode_patch(x: jax.Array | np.ndarray) -> np.ndarray:
    """The class each image's patch codes, int ``(N,)`` for images ``(N, 8, 8, 1)``."""
    values = np.asarray(x)[:, PATCH_ROWS, PATCH_COLS, 0].mean(axis=(1, 2))
    return np.rint(values * NUM_DIGIT_CLASSES).astype(np.int32) - 1


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

    Config fields: ``test_fraction`` (0.2), ``split_seed`` (0), ``shortcut_agreement``
    (0.95), ``data_seed`` (0).
    """
    _read(task_config, "test_fraction", 0.2, float, lambda v: 0.0 < v < 1.0,
          "a number in (0, 1)")
    agreement = _agreement(task_config)
    data_seed = _read(task_config, "data_seed", 0, int, lambda v: True, "an integer")
    digits = make_digits(task_config)
    train_key, test_key = np.random.SeedSequence(data_seed).spawn(2)
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
        known={
            "rule": "the digit's true class",
            "shortcut_agreement": agreement,
            "test_subsets": {"shortcut_agrees": test_agrees,
                             "shortcut_conflicts": ~test_agrees},
        },
        shifts={"patch_shuffle": patch_shuffle},
    )
