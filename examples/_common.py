"""What the examples share and is not the point of any of them: the digits split, the
command-line basics, the spacing of curve points, and the printing of a per-seed summary.

Not part of negres. Each example puts its own folder on ``sys.path`` and imports this as
``_common``, which works however the example runs: ``python examples/NAME.py``, or loaded
by path (``runpy.run_path``, ``importlib``) as the tests do.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digits(num_train: int | None = None, shape: tuple[int, ...] = (64,)):
    """``(x_train, y_train), (x_test, y_test)``: scikit-learn's 8x8 digits in [0, 1].

    A stratified 75/25 split (1347 training, 450 test digits, always the same), images
    as ``(N, *shape)`` float32 and labels ``(N,)`` int32; only the first ``num_train``
    training digits (default all).
    """
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, *shape).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y.astype(np.int32), test_size=0.25, random_state=0, stratify=y)
    return (x_train[:num_train], y_train[:num_train]), (x_test, y_test)


def digit_images(num_train: int | None = None):
    """:func:`digits` as images ``(N, 8, 8, 1)``, for convolutions."""
    return digits(num_train, shape=(8, 8, 1))


def arguments(doc: str, *, steps: int, batch_size: int = 64) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--steps`` (default ``steps``),
    ``--seeds`` (8) and ``--batch-size``; the example adds its own arguments."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    return parser


def curve_spacing(steps: int, points: int) -> int:
    """An ``eval_every`` for about ``points`` curve points over ``steps``: it must divide the
    number of steps, so the largest divisor of ``steps`` up to ``steps // points``."""
    return max(d for d in range(1, max(1, steps // points) + 1) if steps % d == 0)


def print_summary(summary: dict, name: str = "test accuracy") -> None:
    """Print a :func:`negres.statistics.describe` summary of one number per seed: its mean, 95%
    interval (the default method, and what it treats as random where the summary says)
    and range."""
    low, high = summary["ci"]
    # A summary of plain per-seed values holds the test set fixed: say so.
    covers = f" (covers {summary.get('covers', 'seeds, this test set held fixed')})"
    print(f"mean {name} {summary['mean']:.3f} over {summary['n']} seeds, 95% CI "
          f"[{low:.3f}, {high:.3f}]{covers}, min {summary['min']:.3f}, "
          f"max {summary['max']:.3f}")
