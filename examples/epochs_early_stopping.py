"""Epochs, early stopping on a validation set and live logs: 8 seeds of your own MLP.

Shows:

* ``negres.train(..., sampling="epochs")``: each seed visits every training example once
  per epoch, in an order of its own per ``(seed, epoch)``; here one curve point per epoch;
* ``early_stopping=negres.EarlyStopping("eval_accuracy", patience=P)`` on a validation set
  (``eval_data``): each seed stops when its validation accuracy has not improved for ``P``
  epochs and returns its best state; ``result.stopped_at`` and ``result.best_step`` say
  when, per seed;
* live logs while the seeds train, through one progress function
  (``negres.reporting.live.fan_out``): a progress line with the validation accuracy across
  seeds, TensorBoard runs (``tensorboard --logdir LOGDIR`` shows them live, each epoch's
  points as its segment ends) and a tidy ``LOGDIR/curves.csv``;
* the test accuracy of every seed's best state (its own forward pass, ``jax.vmap`` over
  the seed axis of ``negres.linen_apply``) with ``negres.statistics.describe``.

Data: scikit-learn's 8x8 digits, flat ``(N, 64)``; its 1347 training digits split into
``--train-size`` for training (default 1024, a multiple of the batch size, so that no
digit waits for the next epoch) and the rest (323) for validation; the 450 test digits are
touched only once training is over.

    PYTHONPATH=. python examples/epochs_early_stopping.py [--steps 800] [--seeds 8] \\
        [--patience 5] [--logdir runs/epochs_early_stopping]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import optax

import negres
from negres.reporting.live import CurvesCsv, TensorBoardLog, fan_out

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, digits, print_summary  # flat (N, 64) digits


class MLP(nn.Module):
    hidden: int = 128

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(0.3, deterministic=not train)(x)  # draws from the seed's dropout stream
        return nn.Dense(10)(x)


def loss(logits, batch):
    _, y = batch
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, {"accuracy": (logits.argmax(-1) == y).mean()}


def accuracy_per_seed(model: nn.Module, params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(S,)`` each seed's accuracy on ``(x, y)``: params ``(S, ...)``, the model in
    evaluation mode (no dropout)."""
    logits = jax.vmap(negres.linen_apply(model), in_axes=(0, None))(params, x)  # (S, N, 10)
    return np.asarray((logits.argmax(-1) == y).mean(-1))


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, steps=800)  # 50 epochs of 16 steps at most
    parser.add_argument("--train-size", type=int, default=1024,
                        help="training digits; the rest of the 1347 validate")
    parser.add_argument("--patience", type=int, default=5,
                        help="epochs without a better validation accuracy before a seed stops")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--logdir", type=Path, default=None,
                        help="TensorBoard runs and curves.csv (default: a new temporary folder)")
    args = parser.parse_args(argv)
    (x_all, y_all), (x_test, y_test) = digits()
    if not 0 < args.train_size < len(x_all):
        parser.error(f"--train-size must be between 1 and {len(x_all) - 1}")
    steps_per_epoch = args.train_size // args.batch_size  # N % batch_size digits wait
    if steps_per_epoch < 1 or args.steps % steps_per_epoch:
        parser.error(f"--steps must be a multiple of an epoch's {steps_per_epoch} steps "
                     f"({args.train_size} digits // batch size {args.batch_size})")
    logdir = args.logdir or Path(tempfile.mkdtemp(prefix="epochs_early_stopping_"))
    print(f"logs in {logdir}: tensorboard --logdir {logdir}")
    start = time.perf_counter()
    # The digits' split is shuffled and stratified, so its first train_size are a fair draw.
    train_data = (x_all[:args.train_size], y_all[:args.train_size])
    validation = (x_all[args.train_size:], y_all[args.train_size:])

    # --- the core: one call trains every seed by epochs, stops each on its validation curve
    model = MLP()
    program = negres.linen_program(model, loss, optax.adam(args.learning_rate))
    with TensorBoardLog(logdir) as tensorboard:  # closes its event files at the end
        result = negres.train(
            program, train_data, steps=args.steps, batch_size=args.batch_size,
            num_seeds=args.seeds, sampling="epochs", eval_data=validation,
            eval_every=steps_per_epoch,  # one curve point per epoch
            early_stopping=negres.EarlyStopping("eval_accuracy", patience=args.patience),
            progress=fan_out(negres.progress_reporter(metric="eval_accuracy"), tensorboard,
                             CurvesCsv(logdir / "curves.csv")))
    # result.params is each seed's best state (restore_best), leaves (S, ...).
    val_accuracy = accuracy_per_seed(model, result.params, *validation)   # (S,)
    test_accuracy = accuracy_per_seed(model, result.params, x_test, y_test)  # (S,)
    summary = negres.statistics.describe(test_accuracy, seed=0)
    # ---

    stopped = result.stopped_at >= 0
    print(f"{args.seeds} seeds x at most {args.steps} steps ({args.steps // steps_per_epoch} "
          f"epochs of {steps_per_epoch} steps) in one call: {result.train_time_s:.1f} s")
    print("seed  stopped_at (epoch)  best_step (epoch)  val accuracy  test accuracy")
    for s in range(args.seeds):
        stop = int(result.stopped_at[s])
        stop_text = f"{stop:5d} ({stop // steps_per_epoch:3d})" if stop >= 0 else "  trained to end"
        best = int(result.best_step[s])
        print(f"{int(result.seed_indices[s]):4d}  {stop_text:>18s}  {best:9d} "
              f"({best // steps_per_epoch:3d})  {val_accuracy[s]:12.3f}  {test_accuracy[s]:13.3f}")
    print(f"{int(stopped.sum())}/{args.seeds} seeds stopped early (patience {args.patience} "
          f"epochs on validation accuracy); each returned its best epoch's state")
    print_summary(summary)
    print(f"curves: TensorBoard runs under {logdir}, rows in {logdir / 'curves.csv'}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"result": result, "program": program, "logdir": logdir,
            "steps_per_epoch": steps_per_epoch, "val_accuracy": val_accuracy,
            "test_accuracy": test_accuracy, "summary": summary}


if __name__ == "__main__":
    main()
