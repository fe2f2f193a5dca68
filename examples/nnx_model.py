"""Your own flax NNX model, with BatchNorm and Dropout: 8 seeds trained in one call.

Shows:

* ``negres.nnx_program`` on an ordinary ``nnx.Module``: each seed gets its own
  initialisation, dropout masks and batches; its BatchNorm statistics become the seed's
  model state (``result.model_state``), every array with the seed axis first;
* each seed's test accuracy, and their mean with a bootstrap interval (``negres.statistics``);
* ``negres.nnx_apply``: every seed's predictions in evaluation mode, lifted over seeds.

Data: scikit-learn's 8x8 digits, flattened to 64 pixels.

    PYTHONPATH=. python examples/nnx_model.py [--steps 500] [--seeds 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optax
from flax import nnx

import negres

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, curve_spacing, digits, print_summary  # flat digits


class MLP(nnx.Module):
    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, hidden, use_bias=False, rngs=rngs)  # BatchNorm centres
        self.norm = nnx.BatchNorm(hidden, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.norm(self.hidden(x)))))


def make_model(rngs: nnx.Rngs) -> MLP:
    return MLP(64, rngs=rngs)


def cross_entropy(logits, batch):
    """One seed's loss on a batch ``(x, y)``, and its accuracy as a metric."""
    _, y = batch
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": (logits.argmax(-1) == y).mean()}


def main(argv: list[str] | None = None) -> dict:
    args = arguments(__doc__, steps=500).parse_args(argv)
    (x_train, y_train), (x_test, y_test) = digits()

    # --- the core: the model's program, one train call for every seed
    program = negres.nnx_program(make_model, cross_entropy, optax.adam,
                                 hyperparams={"learning_rate": 1e-2})
    result = negres.train(program, (x_train, y_train), steps=args.steps,
                          batch_size=args.batch_size, num_seeds=args.seeds,
                          eval_data=(x_test, y_test), eval_every=curve_spacing(args.steps, 5))
    accuracy = result.final("eval_accuracy")                        # (S,)
    variables = {"params": result.params, "model_state": result.model_state}
    logits = negres.over_seeds(negres.nnx_apply(make_model))(variables, x_test)  # (S, N, 10)
    # ---

    print(f"{args.seeds} seeds x {args.steps} steps in one call: {result.train_time_s:.1f} s")
    for s, acc in zip(result.seed_indices, accuracy, strict=True):
        print(f"seed {s}: test accuracy {acc:.3f}")
    summary = negres.statistics.describe(accuracy, seed=0)
    print_summary(summary)
    predictions = np.asarray(logits).argmax(-1)                     # (S, N)
    agree = np.mean(np.all(predictions == predictions[0], axis=0))
    print(f"every seed predicts the same class for {agree:.1%} of the test digits")
    return {"result": result, "accuracy": accuracy, "summary": summary,
            "predictions": predictions}


if __name__ == "__main__":
    main()
