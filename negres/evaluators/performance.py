"""Each seed's score and loss on the test and the training set.

The score is accuracy for classification and mean squared error for regression; the loss
is the task kind's training loss (:mod:`negres.measures.losses`). Every study runs this
evaluator first: the report's headline numbers and the robustness sweep's clean point
are these.
"""

from __future__ import annotations

import jax

from negres.evaluators.protocol import Evaluation, EvaluationContext, Evaluator, Metric
from negres.measures.losses import LOSSES, SCORE_NAMES
from negres.seeds import over_seeds

# Which way each score is better.
SCORE_DIRECTIONS = {"accuracy": "higher", "mse": "lower"}


def evaluate(context: EvaluationContext) -> Evaluation:
    """``test_<score>``, ``test_loss``, ``train_<score>``, ``train_loss``, each ``(S,)``."""
    task = context.task
    score = SCORE_NAMES[task.kind]
    loss_fn = LOSSES[task.kind]
    scored = jax.jit(over_seeds(lambda p, x, y: loss_fn(context.apply(p, x), y)))
    out = Evaluation()
    for split, x, y in (("test", task.x_test, task.y_test),
                        ("train", task.x_train, task.y_train)):
        loss, value = scored(context.params, x, y)
        out.metrics[f"{split}_{score}"] = Metric(
            jax.device_get(value), SCORE_DIRECTIONS[score], {"split": split, "measure": score})
        out.metrics[f"{split}_loss"] = Metric(
            jax.device_get(loss), "lower", {"split": split, "measure": "loss"})
    return out


EVALUATOR = Evaluator(
    name="performance",
    fields=(),
    evaluate=evaluate,
    doc="each seed's score (accuracy or MSE) and loss on the test and the training set",
)
