"""Terminal tables: the spread rows equal NumPy's, diverged seeds are left out."""

import numpy as np

from negres.reporting.terminal import metric_table, seed_table


def test_seed_table_rows_and_spread():
    values = np.array([0.9, 0.95, 0.8, 1.0])
    text = seed_table([3, 4, 5, 6], {"test_accuracy": values})
    lines = text.splitlines()
    assert [ln.split()[0] for ln in lines[2:6]] == ["3", "4", "5", "6"]
    spread = {ln.split()[0]: float(ln.split()[1]) for ln in lines[7:]}
    assert spread["mean"] == float(f"{values.mean():.4f}")
    assert spread["std"] == float(f"{values.std(ddof=1):.4f}")
    assert spread["min"] == 0.8 and spread["max"] == 1.0


def test_metric_table_leaves_out_non_finite_seeds():
    text = metric_table({"loss": [1.0, np.nan, 3.0], "dead": [np.nan, np.nan, np.nan]})
    loss = text.splitlines()[2].split()
    assert loss[0] == "loss" and float(loss[1]) == 2.0 and loss[-1] == "2"
    assert text.splitlines()[3].split()[-1] == "0"


def test_values_too_large_for_four_decimals_keep_the_columns_aligned():
    """A collapsed seed's loss of 1e9 in four decimals would push its row past the
    header; it is printed with three significant digits instead."""
    losses = np.array([2.3, 1.234e9, 5.6e6])
    table = seed_table([0, 1, 2], {"train_loss": losses, "test_accuracy": [0.1, 0.1, 0.1]})
    lines = [ln for ln in table.splitlines() if not ln.startswith("-")]
    assert len({len(ln) for ln in lines}) == 1, table
    assert float(lines[2].split()[1]) == float(f"{1.234e9:.3g}")
    assert float(lines[1].split()[1]) == 2.3  # small values keep four decimals
    metrics = metric_table({"train_loss": losses})
    assert len({len(ln) for ln in metrics.splitlines()}) == 1, metrics
    assert float(metrics.splitlines()[2].split()[4]) == float(f"{losses.max():.3g}")
