"""Your own flax linen CNN, with BatchNorm and Dropout, and your own loss: 8 seeds in one call.

Shows:

* ``negres.linen_program`` on a user-written module whose BatchNorm statistics become each
  seed's model state and whose Dropout draws from the seed's ``dropout`` stream;
* a user-written loss (label-smoothed cross-entropy via ``optax.smooth_labels``) that
  also reports accuracy, evaluated on the test set during training;
* integrated gradients of every seed on a few test digits, and how much the seeds agree
  on which pixels matter (``negres.saliency`` and ``negres.agreement``).

Data: scikit-learn's 8x8 digits, as images ``(N, 8, 8, 1)``.

    PYTHONPATH=. python examples/linen_batchnorm.py [--steps 600] [--seeds 8]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import optax

import negres

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, curve_spacing, print_summary
from _common import digit_images as digits  # (N, 8, 8, 1) images in [0, 1]


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(16, (3, 3), use_bias=False)(x)  # BatchNorm brings the bias  (N, 8, 8, 16)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
        x = nn.Dropout(0.3, deterministic=not train)(x)
        return nn.Dense(10)(x)


def smoothed_cross_entropy(logits, batch):
    _, y = batch
    labels = optax.smooth_labels(jax.nn.one_hot(y, 10), alpha=0.1)
    loss = optax.softmax_cross_entropy(logits, labels).mean()
    return loss, {"accuracy": (logits.argmax(-1) == y).mean()}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, steps=600)
    parser.add_argument("--num-train", type=int, default=None, help="default: all 1347")
    parser.add_argument("--ig-examples", type=int, default=32, help="test digits explained")
    parser.add_argument("--ig-steps", type=int, default=32, help="integral quadrature steps")
    # Pinned: the two layouts round differently, and auto's timing probe may pick either
    # on a busy machine, so reruns would not reproduce each other's last digits.
    parser.add_argument("--layout", default="vmap", choices=["auto", "vmap", "map"],
                        help="how seeds are batched (auto: time both on this device)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = digits(args.num_train)

    # --- the core: model, loss, one train call for every seed, attributions across seeds
    model = CNN()
    program = negres.linen_program(model, smoothed_cross_entropy, optax.adam(3e-3))
    result = negres.train(program, (x_train, y_train), steps=args.steps,
                          batch_size=args.batch_size, num_seeds=args.seeds,
                          eval_data=(x_test, y_test), eval_every=curve_spacing(args.steps, 4),
                          scale=negres.Scale(layout=args.layout))
    accuracy = result.final("eval_accuracy")                       # (S,)

    variables = {"params": result.params, **result.model_state}   # every leaf (S, ...)
    x, y = x_test[:args.ig_examples], y_test[:args.ig_examples]
    attributions = negres.saliency.attribute_over_seeds(
        "integrated_gradients", negres.linen_apply(model), variables, x, y,
        steps=args.ig_steps)                                        # (S, N, 8, 8, 1)
    matrices = negres.agreement.cross_seed_agreement(attributions, top_k=10)  # name -> (S, S)
    agreement = {name: negres.agreement.summarize_agreement(m) for name, m in matrices.items()}
    # ---

    print(f"{args.seeds} seeds x {args.steps} steps in one call: "
          f"{result.train_time_s:.1f} s (layout {result.plan['layout']})")
    print("seed  test accuracy  diverged_at")
    for s, (acc, div) in enumerate(zip(accuracy, result.diverged_at, strict=True)):
        print(f"{s:4d}  {acc:13.3f}  {div:11d}")
    print_summary(negres.statistics.describe(accuracy, seed=0))
    print(f"integrated gradients of {x.shape[0]} test digits, attributions "
          f"{tuple(attributions.shape)} (seed axis first)")
    print("cross-seed agreement (mean ± std over seed pairs; 1 = identical):")
    for name, s in agreement.items():
        print(f"  {name:12s} {float(s['mean']):.3f} ± {float(s['std']):.3f}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"result": result, "accuracy": accuracy, "attributions": np.asarray(attributions),
            "matrices": {k: np.asarray(v) for k, v in matrices.items()},
            "agreement": {k: float(v["mean"]) for k, v in agreement.items()}}


if __name__ == "__main__":
    main()
