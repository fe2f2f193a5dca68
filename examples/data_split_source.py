"""Which moves test accuracy more: the split of the data, or the seed? Measured, with intervals.

A seed study holds the data fixed: every seed trains on the same training set and is
scored on the same test set. Bouthillier et al. (2021) found that the data sample matters
as much as the initialisation. This script varies both: ``--splits`` random 75/25 splits
of scikit-learn's digits (``train_test_split(random_state=k)``, stratified) crossed with
the same ``--seeds`` seeds in each, one ``negres.train`` call per split (the seeds of one
call share its data), each seed scored on its own split's test set. Seed ``i`` draws the
same initialisation and batch-order keys in every split, so split and seed are crossed.

``negres.statistics.variance_by_source(values, factors)`` then splits the variance of test
accuracy into the split's share, the seed's share and the remainder (their interaction),
each with a 95% generalized interval (docs/sources.md). The estimand is the spread of a
fresh (split, seed) run of this model on this dataset.

    PYTHONPATH=. python examples/data_split_source.py [--splits 6] [--seeds 6] [--steps 300]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import negres

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments
from learning_rate_grid import MLP, loss  # the same small MLP and loss


def split(k: int):
    """Split ``k`` of the digits: ``(x_train, y_train), (x_test, y_test)``, 1347 and 450."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        (x / 16.0).astype(np.float32), y.astype(np.int32), test_size=0.25,
        random_state=k, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, steps=300, batch_size=32)
    parser.set_defaults(seeds=6)
    parser.add_argument("--splits", type=int, default=6)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    program = negres.linen_program(MLP(), loss, optax.adam, hyperparams={"learning_rate": 1e-2})
    accuracy = np.empty((args.splits, args.seeds))              # (splits, S)
    for k in range(args.splits):
        train_data, test_data = split(k)
        result = negres.train(program, train_data, steps=args.steps, batch_size=args.batch_size,
                              num_seeds=args.seeds, eval_data=test_data, eval_every=args.steps)
        accuracy[k] = result.final("eval_accuracy")
    factors = {"split": np.repeat(np.arange(args.splits), args.seeds),
               "seed": np.tile(np.arange(args.seeds), args.splits)}
    found = negres.statistics.variance_by_source(accuracy.ravel(), factors)

    print(f"test accuracy of {args.splits} splits x {args.seeds} seeds: mean "
          f"{accuracy.mean():.4f}, std {accuracy.std(ddof=1):.4f}")
    print("split means:", " ".join(f"{m:.4f}" for m in accuracy.mean(axis=1)))
    print("seed means: ", " ".join(f"{m:.4f}" for m in accuracy.mean(axis=0)))
    print("source      std      95% CI              share   95% CI")
    for term, c in found["components"].items():
        low, high = np.sqrt(c["variance_ci"])
        print(f"{term:<10}  {np.sqrt(c['variance']):.4f}  [{low:.4f}, {high:.4f}]  "
              f"{c['share']:6.2f}   [{c['share_ci'][0]:.2f}, {c['share_ci'][1]:.2f}]")
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"accuracy": accuracy, "factors": factors, "sources": found}


if __name__ == "__main__":
    main()
