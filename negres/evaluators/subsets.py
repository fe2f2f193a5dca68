"""Scores on named subsets of the test set, for every seed.

A task can declare subsets of its test examples in ``Task.test_subsets`` (name ->
boolean mask ``(N_test,)``): the examples where a planted shortcut contradicts the rule,
or the shape-colour combinations never seen in training. A whole-test-set accuracy can
hide a failure on a small subset; these per-seed numbers show it. With ``per_class`` a
classifier's score on each subset is also split by true class (the rows of the subset's
confusion matrix): a failure confined to one class shows there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres import fields
from negres.evaluators.performance import SCORE_DIRECTIONS
from negres.evaluators.protocol import (
    Evaluation,
    EvaluationContext,
    Evaluator,
    MemoryUse,
    Metric,
)
from negres.measures import metrics
from negres.measures.losses import SCORE_NAMES
from negres.seeds import over_seeds
from negres.tasks import Task

FIELDS = (
    fields.boolean("per_class", False, "classification: also each subset's accuracy per "
                   "true class (subset_<name>_class<k>_accuracy)"),
)


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
      ``{"accuracy" | "mse": (M,), "loss": (M,), "count": (M,), "per_example_score": (N,),
      "per_example_loss": (N,)}`` (the last two over the whole test set); an empty subset
      gives NaN.
    """
    weights = masks.astype(jnp.float32)
    count = weights.sum(axis=1)
    if kind == "regression":
        loss = metrics.squared_error(outputs, y)
        scores = {"mse": loss}
    else:
        loss = metrics.cross_entropy_per_example(outputs, y)
        scores = {"accuracy": metrics.correct(outputs, y).astype(jnp.float32)}
    out = {name: (weights @ v) / count for name, v in scores.items()}
    out["loss"] = (weights @ loss) / count
    out["count"] = count
    (score_per_example,) = scores.values()
    out["per_example_score"], out["per_example_loss"] = score_per_example, loss
    return out


def evaluate(context: EvaluationContext) -> Evaluation:
    """Every seed's score and loss on every test subset the task declares.

    Returns metrics ``subset_<name>_<score>`` and ``subset_<name>_loss``, each ``(S,)``,
    labelled ``{"subset", "measure"}`` and declared over the subset's examples (``per_seed``
    ``per_example/<metric>``, ``(S, n)``: the interval covers the examples' sampling too),
    and shared ``sizes``: name -> number of test examples in it. With ``per_class`` (a
    classification task) also ``subset_<name>_class<k>_accuracy`` for every true class
    ``k`` the subset holds, labelled ``{"subset", "class", "measure"}`` and declared over
    those examples, with their counts in ``sizes`` under ``<name>/class<k>``. A task that
    declares no subsets gives an empty evaluation.
    """
    task = context.task
    declared: Mapping[str, np.ndarray] = task.test_subsets
    if not declared:
        return Evaluation()
    names = list(declared)
    masks = jnp.asarray(np.stack([np.asarray(declared[n], bool) for n in names]))
    x, y = jnp.asarray(task.x_test), jnp.asarray(task.y_test)
    values = jax.jit(over_seeds(
        lambda p: subset_scores(context.apply(p, x), y, masks, task.kind)))(context.params)
    score = SCORE_NAMES[task.kind]
    out = Evaluation(shared={"sizes": {}}, per_seed={"per_example": {}})
    per_example = {score: np.asarray(values["per_example_score"]),
                   "loss": np.asarray(values["per_example_loss"])}
    for i, name in enumerate(names):
        mask = np.asarray(declared[name], bool)
        for measure, direction in ((score, SCORE_DIRECTIONS[score]), ("loss", "lower")):
            metric = f"subset_{name}_{measure}"
            out.per_seed["per_example"][metric] = per_example[measure][:, mask]
            out.metrics[metric] = Metric(
                np.asarray(values[measure][:, i]), direction,
                {"subset": name, "measure": measure},
                per_example=f"per_example/{metric}" if mask.any() else None)
        out.shared["sizes"][name] = int(mask.sum())
        if context.settings.per_class and task.kind == "classification":
            _per_class(out, name, mask, np.asarray(task.y_test), per_example[score], score)
    return out


def _per_class(out: Evaluation, name: str, mask: np.ndarray, y: np.ndarray,
               per_example: np.ndarray, score: str) -> None:
    """The subset's score per true class: each a mean over that class's examples in it."""
    for k in np.unique(y[mask]):
        in_class = mask & (y == k)
        out.add_example_mean(f"subset_{name}_class{int(k)}_{score}", per_example[:, in_class],
                             SCORE_DIRECTIONS[score],
                             {"subset": name, "class": str(int(k)), "measure": score})
        out.shared["sizes"][f"{name}/class{int(k)}"] = int(in_class.sum())


def memory(settings: Any, task: Task, num_seeds: int) -> MemoryUse:
    """Each subset example's score and loss per seed (``2 S n`` numbers per subset, ``3 S
    n`` with ``per_class``: each example's score once more, in its class), and the whole
    test set's while they are sliced."""
    sizes = sum(int(np.asarray(m, bool).sum()) for m in task.test_subsets.values())
    per_example = 3 if settings.get("per_class", False) else 2
    whole = 2 * num_seeds * int(np.shape(task.y_test)[0]) if task.test_subsets else 0
    return MemoryUse(held=8 * (whole + per_example * num_seeds * sizes),
                     saved=per_example * num_seeds * sizes)


EVALUATOR = Evaluator(
    name="subsets",
    fields=FIELDS,
    evaluate=evaluate,
    memory=memory,
    doc="every seed's score on the named test subsets a task declares (e.g. where a "
        "shortcut contradicts the rule)",
)
