"""How steadily each seed trained, from its learning curves.

Reads the curves recorded during training (``EvaluationContext.curves``: name -> ``(S,
P)``, ``TrainResult.curves`` with ``eval_*`` named ``test_*``) and gives per seed the
oscillation of each (:func:`negres.measures.curves.oscillation`): movement late in
training that makes no net progress. Whether an ablation stabilises training is then a
comparison of these numbers between conditions, paired or not, like any metric.
"""

from __future__ import annotations

import numpy as np

from negres import fields
from negres.evaluators.protocol import Evaluation, EvaluationContext, Evaluator, Metric
from negres.measures.curves import oscillation, points_measured

FIELDS = (
    fields.number("last_share", 0.5, "share of the evaluation points, from the end of "
                  "training, whose oscillation is measured", 0.0, 1.0, low_open=True),
)


def evaluate(context: EvaluationContext) -> Evaluation:
    """``<curve>_oscillation`` ``(S,)`` for every curve with at least 3 points (lower is
    steadier), labelled ``{"curve", "measure": "oscillation"}``; shared ``points``: the
    evaluation points measured. Without curves (a library call that passes none), nothing.
    """
    curves = {name: np.asarray(values) for name, values in (context.curves or {}).items()
              if name != "step" and np.ndim(values) == 2 and np.shape(values)[1] >= 3}
    if not curves:
        return Evaluation()
    share = float(context.settings.last_share)
    out = Evaluation()
    for name, values in curves.items():
        out.metrics[f"{name}_oscillation"] = Metric(
            oscillation(values, share), "lower", {"curve": name, "measure": "oscillation"})
    out.shared["points"] = points_measured(next(iter(curves.values())).shape[1], share)
    return out


EVALUATOR = Evaluator(
    name="stability",
    fields=FIELDS,
    evaluate=evaluate,
    doc="how steadily each seed trained: the oscillation of its learning curves late in "
        "training",
    by_default=False,  # reads the curves of training: a study asks for it
)
