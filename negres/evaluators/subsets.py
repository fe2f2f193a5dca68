"""Scores on named subsets of the test set, for every seed.

A task can declare subsets of its test examples in ``Task.known["test_subsets"]`` (name ->
boolean mask ``(N_test,)``): the examples where a planted shortcut contradicts the rule,
or the shape-colour combinations never seen in training. A whole-test-set accuracy can
hide a failure on a small subset; these per-seed numbers show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from negres.seeds import over_seeds
from negres.tasks import Task


def subset_scores(
    outputs: jax.Array, y: jax.Array, masks: jax.Array, kind: str
) -> dict[str, jax.Array]:
    """One seed's score and loss on each subset.

    Args:
      outputs: ``(N, K)`` model outputs on the whole test set.
      y: ``(N,)`` labels or targets.
      masks: ``(M, N)`` bool, one row per subset.
      kind: ``"classification"`` (accuracy, cross-entropy) or ``"regression"`` (MSE).

    Returns:
      ``{"accuracy" | "mse": (M,), "loss": (M,), "count": (M,)}``; an empty subset gives NaN.
    """
    weights = masks.astype(jnp.float32)
    count = weights.sum(axis=1)
    if kind == "regression":
        per_example = (outputs[:, 0] - y) ** 2
        scores = {"mse": per_example}
        loss = per_example
    else:
        correct = (jnp.argmax(outputs, -1) == y).astype(jnp.float32)
        loss = -jnp.take_along_axis(jax.nn.log_softmax(outputs), y[:, None], axis=-1)[:, 0]
        scores = {"accuracy": correct}
    out = {name: (weights @ v) / count for name, v in scores.items()}
    out["loss"] = (weights @ loss) / count
    out["count"] = count
    return out


def subset_study(
    model: nn.Module, task: Task, params: Any
) -> dict[str, Any]:
    """Every seed's score and loss on every declared test subset.

    Args:
      model: the trained model.
      task: its ``known["test_subsets"]`` names the subsets; none declared gives nothing.
      params: ``(S, ...)`` trained parameters.

    Returns:
      ``metrics``: ``subset_<name>_<score>`` and ``subset_<name>_loss``, each ``(S,)``;
      ``subsets``: name -> number of test examples in it.
    """
    declared: Mapping[str, np.ndarray] = task.known.get("test_subsets", {})
    if not declared:
        return {"metrics": {}, "subsets": {}}
    names = list(declared)
    masks = jnp.asarray(np.stack([np.asarray(declared[n], bool) for n in names]))
    x, y = jnp.asarray(task.x_test), jnp.asarray(task.y_test)

    def one_seed(p: Any) -> dict[str, jax.Array]:
        outputs = model.apply({"params": p}, x, train=False)
        return subset_scores(outputs, y, masks, task.kind)

    values = jax.jit(over_seeds(one_seed))(params)
    score = "mse" if task.kind == "regression" else "accuracy"
    out: dict[str, Any] = {"metrics": {}, "subsets": {}}
    for i, name in enumerate(names):
        out["metrics"][f"subset_{name}_{score}"] = np.asarray(values[score][:, i])
        out["metrics"][f"subset_{name}_loss"] = np.asarray(values["loss"][:, i])
        out["subsets"][name] = int(np.asarray(declared[name], bool).sum())
    return out

