"""The scripts in examples/ run at toy size and their results say what the scripts claim.

Each example is loaded by path (examples/ is not a package; an example finds its shared
helpers, examples/_common.py, through its own folder) and its ``main(argv)`` run in this
process, so JAX is imported once for all of them.
"""

import csv
import runpy
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

import negres

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> dict:
    """The example's module namespace, without running its ``__main__`` block."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def leading_axes(tree, count: int) -> set:
    return {np.shape(leaf)[:count] for leaf in jax.tree_util.tree_leaves(tree)}


def all_finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


def assert_same_seeds(reordered, result, order, grid_axes: int = 0) -> None:
    """Row ``i`` of ``reordered`` (trained with ``seed_indices=order``) is seed ``order[i]``
    of ``result``, in every state leaf and curve."""
    def take(leaf):
        return np.take(np.asarray(leaf), order, axis=grid_axes)

    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), take(b), rtol=1e-6, atol=1e-6),
        reordered.state, result.state)
    for name, curve in result.curves.items():
        np.testing.assert_allclose(reordered.curves[name], take(curve), rtol=1e-6, atol=1e-6)


def check_linen_batchnorm(module: dict, out: dict) -> None:
    result = out["result"]
    assert out["accuracy"].shape == (2,)
    assert np.all(out["accuracy"] > 0.5)  # 10 classes: chance is 0.1
    assert result.curves["eval_accuracy"].shape == (2, 4)
    assert np.all(result.diverged_at == -1)
    assert leading_axes(result.params, 1) == {(2,)}
    # BatchNorm statistics are per-seed model state, moved away from their initial values.
    stats = result.model_state["batch_stats"]
    assert leading_axes(stats, 1) == {(2,)}
    mean = np.asarray(stats["BatchNorm_0"]["mean"])  # (S, channels), initially 0
    assert mean.shape == (2, 16) and np.all(np.abs(mean).max(axis=-1) > 0)
    assert not np.allclose(mean[0], mean[1])  # the seeds differ
    attributions = out["attributions"]
    assert attributions.shape == (2, 6, 8, 8, 1)
    assert np.all(np.isfinite(attributions)) and np.any(attributions != 0)
    for name, matrix in out["matrices"].items():
        assert matrix.shape == (2, 2), name
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-5, err_msg=name)
    assert 0.0 < out["agreement"]["spearman_abs"] <= 1.0
    assert 0.0 <= out["agreement"]["top_k"] <= 1.0


def check_token_dict_batches(module: dict, out: dict) -> None:
    tokens, labels = out["train_data"]["tokens"], out["train_data"]["label"]
    assert tokens.dtype == np.int32 and tokens.shape == (1000, 16)
    for token in (3, 7):
        assert set(np.unique((tokens == token).sum(axis=1))) == {1, 2, 3}
    first_three = np.argmax(tokens == 3, axis=1)
    first_seven = np.argmax(tokens == 7, axis=1)
    np.testing.assert_array_equal(labels, first_three < first_seven)
    assert 0.4 < labels.mean() < 0.6
    result = out["result"]
    assert result.curves["eval_accuracy"].shape == (3, 8)
    assert out["accuracy"].shape == (3,)
    assert np.all(out["accuracy"] > 0.6)  # two balanced classes: chance is 0.5
    assert leading_axes(result.params, 1) == {(3,)}
    # Seeds are addressed by index, not by row: reordered, each seed trains the same.
    # (The same program, seed count and shapes: no new compilation.)
    reordered = negres.train(out["program"], out["train_data"], steps=64, batch_size=64,
                             seed_indices=[2, 0, 1], eval_data=out["test_data"], eval_every=8)
    assert_same_seeds(reordered, result, [2, 0, 1])


def check_custom_step(module: dict, out: dict) -> None:
    # --rho 0 0.05 1e30: the last radius sends every seed's SAM gradient to inf.
    result = out["result"]
    assert list(result.grid) == ["rho"]
    np.testing.assert_allclose(result.grid["rho"], [0.0, 0.05, 1e30], rtol=1e-6)
    assert result.curves["eval_accuracy"].shape == (3, 2, 5)
    assert leading_axes(result.state, 2) == {(3, 2)}
    np.testing.assert_array_equal(result.diverged_at[:2], -1)
    assert np.all(result.diverged_at[2] >= 0)
    # Diverged seeds are frozen at their last finite state; their curves are NaN.
    assert all_finite(result.state)
    assert np.all(np.isnan(out["accuracy"][2]))
    assert np.all(out["accuracy"][:2] > 0.5)


def check_learning_rate_grid(module: dict, out: dict) -> None:
    result = out["result"]
    rates = (1e-4, 1e-3, 1e-2, 1e-1)
    assert list(result.grid) == ["learning_rate"]
    np.testing.assert_allclose(result.grid["learning_rate"], rates, rtol=1e-6)
    assert result.curves["eval_accuracy"].shape == (4, 3, 6)
    assert leading_axes(result.params, 2) == {(4, 3)}
    # The grid reaches each seed's optimizer state.
    injected = np.asarray(result.opt_state.hyperparams["learning_rate"])
    np.testing.assert_allclose(injected, np.repeat(np.array(rates)[:, None], 3, 1), rtol=1e-6)
    assert np.all(np.isfinite(out["accuracy"]))
    assert max(s["mean"] for s in out["summaries"]) > 0.8
    for s in out["summaries"]:
        assert s["ci_bca"][0] <= s["mean"] <= s["ci_bca"][1]
    assert out["best"] != out["second"]
    assert out["comparison"]["verdict"] in ("improved", "worse", "inconclusive")
    assert out["comparison"]["paired"] and out["comparison"]["n_x"] == 3
    # Every grid point trains the same seeds, addressed by index: reordered, they match.
    reordered = negres.train(out["program"], module["digits"]()[0], steps=60, batch_size=32,
                             seed_indices=[2, 0, 1], grid={"learning_rate": rates},
                             eval_data=module["digits"]()[1], eval_every=10)
    assert_same_seeds(reordered, result, [2, 0, 1], grid_axes=1)


def check_own_evaluator(module: dict, out: dict) -> None:
    evaluations = out["evaluations"]
    assert list(evaluations) == ["performance", "robustness", "flips", "multiplicity"]
    metric = evaluations["flips"].metrics["gaussian_noise_flips"]
    assert metric.direction == "lower" and metric.values.shape == (3,)
    # Accuracy can only change where a prediction flips: |clean - shifted| <= flips.
    curves = evaluations["robustness"].per_seed["curves"]["gaussian_noise"]
    drop = np.abs(curves["accuracy"][:, 0] - curves["accuracy"][:, 2])
    assert np.all(drop <= metric.values + 1e-6) and np.all(metric.values > 0)
    # No flips at severity 0: the shifted set is the clean one.
    same = module["prediction_flips"](negres.EvaluationContext(
        apply=None, params=None, task=None, seed_keys=np.zeros((3, 2)), shared_key=None,
        settings=type("S", (), {"shifts": ("gaussian_noise",), "flip_severity": 0.0})(),
        earlier={"robustness": evaluations["robustness"]}))
    np.testing.assert_array_equal(same.metrics["gaussian_noise_flips"].values, 0.0)
    assert out["churn"].shape == (3,) and np.all((out["churn"] >= 0) & (out["churn"] < 0.5))


def check_data_split_source(module: dict, out: dict) -> None:
    accuracy = out["accuracy"]  # (splits, seeds)
    assert accuracy.shape == (3, 3) and np.all(accuracy > 0.5)
    # The split's and the seed's components are the two-way ANOVA's closed forms on the
    # (split, seed) table: (MS_rows - MS_remainder) / columns, at least 0.
    grand = accuracy.mean()
    rows, columns = accuracy.mean(axis=1) - grand, accuracy.mean(axis=0) - grand
    remainder = accuracy - grand - rows[:, None] - columns[None, :]
    ms_remainder = (remainder ** 2).sum() / 4
    components = out["sources"]["components"]
    np.testing.assert_allclose(components["split"]["variance"],
                               max((3 * (rows ** 2).sum() / 2 - ms_remainder) / 3, 0.0),
                               rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(components["seed"]["variance"],
                               max((3 * (columns ** 2).sum() / 2 - ms_remainder) / 3, 0.0),
                               rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(components["remainder"]["variance"], ms_remainder, rtol=1e-6)
    assert sum(c["share"] for c in components.values()) == pytest.approx(1.0)
    # Different splits are different data: split 0's training set is not split 1's.
    (x0, _), _ = module["split"](0)
    (x1, _), _ = module["split"](1)
    assert not np.array_equal(x0, x1)


def check_epochs_early_stopping(module: dict, out: dict) -> None:
    # --steps 160 --train-size 256 --batch-size 32: 20 epochs of 8 steps, one point each.
    result, per_epoch, logdir = out["result"], out["steps_per_epoch"], out["logdir"]
    try:
        event_accumulator = pytest.importorskip(
            "tensorboard.backend.event_processing.event_accumulator")
        assert per_epoch == 8 and list(result.curve_steps) == list(range(8, 161, 8))
        stopped_at, best_step = result.stopped_at, result.best_step
        assert stopped_at.shape == (2,) and best_step.shape == (2,)
        stopped = stopped_at >= 0
        assert stopped.any()  # patience 2 at learning rate 1e-2: this toy size stops
        # A seed stops `patience` points after its best one; one that trained to the end
        # still has a best point.
        np.testing.assert_array_equal(stopped_at[stopped] - best_step[stopped], 2 * per_epoch)
        assert np.all(best_step[stopped] < stopped_at[stopped])
        assert np.all((best_step > 0) & (best_step % per_epoch == 0) & (best_step <= 160))
        # The returned state is the best point's: its validation accuracy, recomputed, is
        # the curve's maximum, at best_step.
        curve = result.curves["eval_accuracy"]  # (S, T); a stopped seed's frozen value after
        at_best = curve[np.arange(2), best_step // per_epoch - 1]
        np.testing.assert_allclose(out["val_accuracy"], at_best, atol=1e-6)
        np.testing.assert_allclose(at_best, curve.max(axis=1), atol=1e-6)
        test = out["test_accuracy"]
        assert test.shape == (2,) and np.all((test >= 0) & (test <= 1)) and np.all(test > 0.5)
        assert out["summary"]["n"] == 2
        assert out["summary"]["ci"][0] <= out["summary"]["mean"] <= out["summary"]["ci"][1]

        # The CSV: one row per seed x point x curve, each the curve's value; `stopped` from
        # the seed's stopping step on.
        with (logdir / "curves.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        names = sorted(result.curves)
        assert len(rows) == 2 * 20 * len(names)
        assert {(int(r["step"]), int(r["seed"]), r["metric"]) for r in rows} == {
            (int(step), seed, name) for step in result.curve_steps for seed in (0, 1)
            for name in names}
        for r in rows:
            seed, step = int(r["seed"]), int(r["step"])
            expected = result.curves[r["metric"]][seed, step // per_epoch - 1]
            np.testing.assert_array_equal(float(r["value"]), expected)  # nan == nan here
            assert r["stopped"] == str(bool(0 <= stopped_at[seed] <= step))

        # TensorBoard: the spread of every curve across seeds, and each seed's own curve.
        def scalars(run: Path) -> dict:
            assert list(run.glob("events.out.tfevents.*")), run
            acc = event_accumulator.EventAccumulator(str(run)).Reload()
            return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}

        spread = scalars(logdir / "all")
        assert {f"curves/{n}/{s}" for n in names for s in ("mean", "min", "max")} <= set(spread)
        assert [e.step for e in spread["curves/eval_accuracy/mean"]] == list(result.curve_steps)
        for seed in (0, 1):
            own = scalars(logdir / "all" / f"seed_{seed:04d}")["seed_curves/eval_accuracy"]
            assert [e.step for e in own] == list(result.curve_steps)
            np.testing.assert_allclose([e.value for e in own], curve[seed], rtol=1e-6)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)  # the example's temporary folder


# name -> (argv at toy size, what its printed report must contain, check of main's result)
CASES = {
    "linen_batchnorm": (["--steps", "40", "--seeds", "2", "--num-train", "600",
                         "--ig-examples", "6", "--ig-steps", "8", "--layout", "vmap"],
                        "cross-seed agreement", check_linen_batchnorm),
    "token_dict_batches": (["--steps", "64", "--seeds", "3", "--num-train", "1000",
                            "--num-test", "300"], "final test accuracy",
                           check_token_dict_batches),
    "custom_step": (["--steps", "30", "--seeds", "2", "--rho", "0", "0.05", "1e30"],
                    "[-1, -1]", check_custom_step),
    "learning_rate_grid": (["--steps", "60", "--seeds", "3"], "best lr",
                           check_learning_rate_grid),
    "own_evaluator": (["--steps", "100", "--seeds", "3"], "share of flipped predictions",
                      check_own_evaluator),
    "data_split_source": (["--steps", "50", "--seeds", "3", "--splits", "3"], "split means",
                          check_data_split_source),
    "epochs_early_stopping": (["--steps", "160", "--seeds", "2", "--patience", "2",
                               "--train-size", "256", "--batch-size", "32",
                               "--learning-rate", "1e-2"], "seeds stopped early",
                              check_epochs_early_stopping),
}


@pytest.mark.parametrize("name", list(CASES))
def test_example_runs_at_toy_size(name, capsys):
    argv, printed, check = CASES[name]
    module = load(name)
    out = module["main"](argv)
    report = capsys.readouterr().out
    assert printed in report
    check(module, out)


def test_every_example_is_tested():
    # examples/nnx_model.py is tested with the nnx programs; _common.py is not an example.
    examples = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert examples - {"nnx_model"} == set(CASES)


def test_shared_digits_and_curve_spacing():
    common = load("_common")
    (x_train, y_train), (x_test, y_test) = common["digits"]()
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64) and y_test.shape == (450,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    (images, labels), (test_images, _) = common["digit_images"](100)
    assert images.shape == (100, 8, 8, 1) and test_images.shape == (450, 8, 8, 1)
    np.testing.assert_array_equal(images.reshape(100, 64), x_train[:100])  # the same split
    np.testing.assert_array_equal(labels, y_train[:100])
    np.testing.assert_array_equal(test_images.reshape(-1, 64), x_test)
    # About `points` curve points, always a divisor of the steps (40 // 6 = 6 is not).
    assert common["curve_spacing"](40, 6) == 5
    assert common["curve_spacing"](600, 4) == 150
    assert common["curve_spacing"](3, 8) == 1
