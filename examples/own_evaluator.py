"""Your own evaluator, in one file: how many predictions flip under a shift, per seed.

Shows:

* an evaluator written outside negres: one ``negres.Evaluator`` with its config field
  (in its own settings section, ``{"flips": {"flip_severity": ...}}``), its direction
  (fewer flips is better) and a dependency on negres's ``robustness`` evaluator, whose
  predictions on every shifted test set it reads through the protocol
  (``context.earlier``) instead of computing them again;
* ``negres.evaluate`` running it next to negres's own evaluators (``robustness``,
  ``multiplicity``) on a linen MLP trained with ``negres.train``, 8 seeds in one call;
* how a metric declares its sampling: the share of flips is each seed's mean over the
  test examples, so the evaluator saves each example's flip (``per_example``) and its
  interval covers the test examples' sampling too, as negres's own test accuracy does;
  churn between seeds is a mean over pairs of seeds (``pairwise``);
* the per-seed numbers with those intervals (``negres.statistics.describe_evaluations``).

Data: scikit-learn's 8x8 digits, flattened to 64 pixels.

    PYTHONPATH=. python examples/own_evaluator.py [--steps 400] [--seeds 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import flax.linen as nn
import numpy as np
import optax

import negres
from negres import fields

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, curve_spacing, digits, print_summary  # flat digits


# --- the evaluator: a config field, a direction, a dependency, one function
def prediction_flips(context: negres.EvaluationContext) -> negres.Evaluation:
    """Per seed, the share of test examples whose predicted class changes under each shift
    at severity ``flip_severity`` (or the nearest swept severity)."""
    passed = context.earlier["robustness"].passed_on           # negres's predictions
    clean = passed["predictions"]["clean"][:, 0]                # (S, N)
    out = negres.Evaluation(per_seed={"flipped": {}})
    shifts = [name for name in passed["predictions"] if name != "clean"]  # robustness's
    for shift in shifts:
        severities = np.asarray(passed["severities"][shift])   # (K,)
        level = int(np.argmin(np.abs(severities - context.settings.flip_severity)))
        flipped = (passed["predictions"][shift][:, level] != clean).astype(float)  # (S, N)
        out.per_seed["flipped"][shift] = flipped                 # each example's flip
        out.metrics[f"{shift}_flips"] = negres.Metric(
            flipped.mean(axis=1), "lower", {"set": shift, "measure": "flips"},
            per_example=f"flipped/{shift}")                      # a mean over examples
    return out


FLIPS = negres.Evaluator(
    name="flips",
    fields=(fields.number("flip_severity", 0.3, "flips: the severity compared with clean",
                          0.0),),
    evaluate=prediction_flips,
    requires=("robustness",),
    doc="share of predictions that change under a shift, per seed",
)
# ---


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.relu(nn.Dense(64)(x)))


def loss(params, model_state, batch, rngs):
    x, y = batch
    logits = MLP().apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (model_state, {})


def main(argv: list[str] | None = None) -> dict:
    args = arguments(__doc__, steps=400).parse_args(argv)
    (x_train, y_train), (x_test, y_test) = digits()
    program = negres.loss_program(
        lambda key, batch: (MLP().init(key, batch[0])["params"], {}), loss,
        optax.adam(1e-2))
    result = negres.train(program, (x_train, y_train), steps=args.steps,
                          batch_size=args.batch_size, num_seeds=args.seeds,
                          eval_every=curve_spacing(args.steps, 4))
    task = negres.Task(name="digits", kind="classification", x_train=x_train,
                       y_train=y_train, x_test=x_test, y_test=y_test, num_outputs=10)

    # --- negres's evaluators and yours, on the trained seeds
    evaluations = negres.evaluate(
        negres.linen_apply(MLP()), result.params, task,
        evaluators=("robustness", FLIPS, "multiplicity"),
        settings={"robustness": {"shifts": ("gaussian_noise",), "severities": (0.0, 0.1, 0.3)},
                  "flips": {"flip_severity": 0.3}})  # each evaluator's own section
    flips = evaluations["flips"].metrics["gaussian_noise_flips"].values       # (S,)
    accuracy = evaluations["performance"].metrics["test_accuracy"].values     # (S,)
    churn = evaluations["multiplicity"].metrics["churn_clean"].values         # (S,)
    # ---

    for s, (acc, flip) in enumerate(zip(accuracy, flips, strict=True)):
        print(f"seed {s}: test accuracy {acc:.3f}, predictions flipped by noise 0.3: "
              f"{flip:.3f}")
    # Each metric's interval as its sampling calls for: accuracy and flips over seeds and
    # test examples (the data distribution), churn as a mean over pairs of seeds.
    summaries = negres.statistics.describe_evaluations(evaluations, seed=0)
    print_summary(summaries["test_accuracy"])
    summary = summaries["gaussian_noise_flips"]
    print_summary(summary, "share of flipped predictions")
    print_summary(summaries["churn_clean"], "churn between two seeds, clean test set")
    return {"evaluations": evaluations, "flips": flips, "accuracy": accuracy,
            "churn": churn, "summary": summary, "summaries": summaries}


if __name__ == "__main__":
    main()
