"""4 learning rates x 8 seeds in one compiled call, compared with honest statistics.

``linen_program(model, loss, optax.adam, hyperparams={"learning_rate": 1e-3})`` passes
the optimizer *factory*, so its learning rate lives in each seed's optimizer state;
``negres.train(..., grid={"learning_rate": [...]})`` then trains every seed at every
grid point in the same call, and every result gets the grid's axis first: curves
``(4, 8, T)``, parameters ``(4, 8, ...)``. Each grid point trains the *same* seeds (same
initialisation, same batches), so grid points compare seed by seed (paired).

``negres.statistics`` gives a bootstrap interval of the mean validation accuracy at each
learning rate, and compares the best with the runner-up: a verdict of "improved" needs
the interval of the difference and both tests to agree, else "inconclusive". (The two
were picked on these same numbers, which flatters the winner: confirm on fresh seeds,
``seed_indices=range(8, 16)``, before you write it down.)

    PYTHONPATH=. python examples/learning_rate_grid.py [--steps 300] [--seeds 8]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import flax.linen as nn
import numpy as np
import optax

import negres

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, curve_spacing, digits  # flat (N, 64) digits

LEARNING_RATES = [1e-4, 1e-3, 1e-2, 1e-1]


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.relu(nn.Dense(64)(x)))


def loss(logits, batch):
    _, y = batch
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, {"accuracy": (logits.argmax(-1) == y).mean()}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, steps=300, batch_size=32)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=LEARNING_RATES)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train_data, val_data = digits()  # the test split serves as the validation set here

    program = negres.linen_program(MLP(), loss, optax.adam, hyperparams={"learning_rate": 1e-3})
    result = negres.train(program, train_data, steps=args.steps, batch_size=args.batch_size,
                          num_seeds=args.seeds, grid={"learning_rate": args.learning_rates},
                          eval_data=val_data, eval_every=curve_spacing(args.steps, 6))
    accuracy = result.final("eval_accuracy")                     # (4, S)
    rates = result.grid["learning_rate"]
    summaries = [negres.statistics.describe(acc, seed=0) for acc in accuracy]
    best, second = np.argsort([-s["mean"] for s in summaries])[:2]  # diverged seeds left out
    comparison = negres.statistics.compare(accuracy[best], accuracy[second], paired=True, seed=0)

    print(f"{len(rates)} learning rates x {args.seeds} seeds x {args.steps} steps in one call: "
          f"{result.train_time_s:.1f} s; curves {result.curves['eval_accuracy'].shape}")
    # Intervals over seeds alone, this validation set held fixed.
    print("learning rate  mean val acc  95% bootstrap CI   min    max    diverged"
          "  (CI over seeds, this validation set)")
    for rate, s, div in zip(rates, summaries, result.diverged_at, strict=True):
        low, high = s["ci_bca"]
        print(f"{rate:13g}  {s['mean']:12.4f}  [{low:.4f}, {high:.4f}]  {s['min']:.3f}  "
              f"{s['max']:.3f}  {int((div >= 0).sum())}/{div.size}")
    low, high = comparison["ci_bca"]
    print(f"best lr {rates[best]:g} vs runner-up {rates[second]:g}, paired over seeds: "
          f"difference {comparison['difference']:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}], "
          f"p={comparison['p_value']:.3g}, P(improvement)={comparison['prob_improvement']:.2f} "
          f"-> {comparison['verdict']}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"result": result, "program": program, "accuracy": accuracy, "summaries": summaries,
            "best": rates[best], "second": rates[second], "comparison": comparison}


if __name__ == "__main__":
    main()
