"""How well a linear model reproduces each seed's decisions: an interpretability proxy.

Per seed, a linear surrogate (softmax regression for classification, least squares for
regression) is fitted to the seed's predictions on the training set; its fidelity is how
often it agrees with the seed on the test set (R^2 of the outputs for regression). A study
that sweeps capacity draws this and the attribution proxies against accuracy
(interpretability-performance frontiers, one plot per proxy and task:
:mod:`negres.reporting.sections.surrogate`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from negres.evaluators.protocol import Evaluation, EvaluationContext, Evaluator, Metric
from negres.measures.interpretability import surrogate_fidelity_over_seeds

METRIC = "linear_surrogate_fidelity"


def evaluate(context: EvaluationContext) -> Evaluation:
    """``linear_surrogate_fidelity`` ``(S,)``: higher means a linear model explains more."""
    task = context.task
    num_classes = task.num_outputs if task.kind == "classification" else 0
    fidelity = surrogate_fidelity_over_seeds(
        context.apply, context.params, jnp.asarray(task.x_train), jnp.asarray(task.x_test),
        num_classes)
    return Evaluation(metrics={METRIC: Metric(np.asarray(fidelity), "higher",
                                              {"measure": "surrogate_fidelity"})})


EVALUATOR = Evaluator(
    name="surrogate_fidelity",
    fields=(),
    evaluate=evaluate,
    doc="fidelity of a linear surrogate fitted to each seed's decisions",
    by_default=False,  # a fit per seed: the capacity study asks for it
)
