"""Per-seed metrics of one seed's outputs: accuracy, losses, calibration, confusion.

Each function takes one seed's outputs ``(N, K)`` and targets ``(N,)``; lift with
:func:`negres.seeds.over_seeds` for ``(S, ...)`` results. The per-example forms
(:func:`correct`, :func:`cross_entropy_per_example`, :func:`squared_error`) are the one
definition of each score: the means here, the training losses of
:mod:`negres.measures.losses` and scores over subsets of examples all reduce them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

ECE_BINS = 15


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Whether each example's arg-max class is its label, ``(N,)`` bool."""
    return jnp.argmax(logits, axis=-1) == labels


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Share of examples whose arg-max class is the label, ``()``."""
    return jnp.mean(correct(logits, labels))


def cross_entropy_per_example(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy of each example against its integer label, ``(N,)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy, ``()``."""
    return cross_entropy_per_example(logits, labels).mean()


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Squared error of each example's ``outputs (N, 1)`` against ``targets (N,)``, ``(N,)``."""
    return (outputs[..., 0] - targets) ** 2


def mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error of ``outputs (N, 1)`` against ``targets (N,)``, ``()``."""
    return jnp.mean(squared_error(outputs, targets))


def expected_calibration_error(
    logits: jax.Array, labels: jax.Array, num_bins: int = ECE_BINS
) -> jax.Array:
    """Top-label expected calibration error (Guo et al. 2017), ``()``.

    Confidences (the largest softmax probability) fall into ``num_bins`` equal-width bins
    over [0, 1] (right-closed, the first also holds 0); ECE is the example-weighted mean
    over bins of ``|accuracy - mean confidence|``.
    """
    probabilities = jax.nn.softmax(logits, axis=-1)
    confidence = probabilities.max(axis=-1)
    hits = correct(logits, labels).astype(confidence.dtype)
    bins = jnp.clip(jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    confidence_sum = jnp.zeros(num_bins).at[bins].add(confidence)
    correct_sum = jnp.zeros(num_bins).at[bins].add(hits)
    return jnp.sum(jnp.abs(correct_sum - confidence_sum)) / labels.shape[0]


def confusion_matrix(logits: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """Counts ``(C, C)``: rows are true classes, columns predicted classes."""
    predicted = jnp.argmax(logits, axis=-1)
    return jnp.zeros((num_classes, num_classes), jnp.int32).at[labels, predicted].add(1)
