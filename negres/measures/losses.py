"""Per-batch loss and score for each task kind (cross-entropy/accuracy, MSE).

Both are the means of :mod:`negres.measures.metrics`, the one definition of each score.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from negres.measures import metrics

# (outputs (B, K), targets (B,)) -> (loss (), score ()) where score is accuracy
# for classification and mean squared error for regression.
LossFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def classification_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy and accuracy of ``logits (B, C)`` against ``labels (B,)``."""
    return metrics.cross_entropy(logits, labels), metrics.accuracy(logits, labels)


def regression_loss(outputs: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean squared error of ``outputs (B, 1)`` against ``targets (B,)``, twice (loss and score)."""
    mse = metrics.mean_squared_error(outputs, targets)
    return mse, mse


def classification_per_example(logits: jax.Array, labels: jax.Array
                               ) -> tuple[jax.Array, jax.Array]:
    """Each example's cross-entropy and correctness (1.0 or 0.0), ``(B,)`` each: the values
    whose means :func:`classification_loss` returns."""
    return (metrics.cross_entropy_per_example(logits, labels),
            metrics.correct(logits, labels).astype(logits.dtype))


def regression_per_example(outputs: jax.Array, targets: jax.Array
                           ) -> tuple[jax.Array, jax.Array]:
    """Each example's squared error, twice (loss and score), ``(B,)`` each."""
    error = metrics.squared_error(outputs, targets)
    return error, error


LOSSES: dict[str, LossFn] = {
    "classification": classification_loss,
    "regression": regression_loss,
}

# (outputs (B, K), targets (B,)) -> (loss (B,), score (B,)): each example's values, whose
# means LOSSES gives.
PER_EXAMPLE: dict[str, LossFn] = {
    "classification": classification_per_example,
    "regression": regression_per_example,
}

# What the score of each kind is called in curves and results.
SCORE_NAMES: dict[str, str] = {"classification": "accuracy", "regression": "mse"}
