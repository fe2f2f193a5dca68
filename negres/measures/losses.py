"""Per-batch loss and score for each task kind (cross-entropy/accuracy, MSE)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

# (outputs (B, K), targets (B,)) -> (loss (), score ()) where score is accuracy
# for classification and mean squared error for regression.
LossFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def classification_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy and accuracy of ``logits (B, C)`` against ``labels (B,)``."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = (jnp.argmax(logits, axis=-1) == labels).mean()
    return loss, accuracy


def regression_loss(outputs: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean squared error of ``outputs (B, 1)`` against ``targets (B,)``, twice (loss and score)."""
    mse = jnp.mean((outputs[..., 0] - targets) ** 2)
    return mse, mse


LOSSES: dict[str, LossFn] = {
    "classification": classification_loss,
    "regression": regression_loss,
}

# What the score of each kind is called in curves and results.
SCORE_NAMES: dict[str, str] = {"classification": "accuracy", "regression": "mse"}
