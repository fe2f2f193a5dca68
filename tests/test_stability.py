"""The oscillation of learning curves against closed forms, and the stability evaluator in a
study and through the library."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from negres import evaluators
from negres.measures.curves import oscillation


def test_a_monotone_or_flat_curve_does_not_oscillate():
    rng = np.random.default_rng(0)
    rising = np.cumsum(rng.random((4, 9)), axis=1)
    assert_allclose(oscillation(rising), 0.0, atol=1e-12)
    assert_allclose(oscillation(-rising), 0.0, atol=1e-12)
    assert_allclose(oscillation(np.ones((2, 5))), 0.0)


def test_an_alternating_curve_oscillates_by_its_swing():
    a, b, n = 0.9, 0.7, 6
    curve = np.array([[a, b] * (n // 2)])  # all 6 points measured at last_share=1
    assert_allclose(oscillation(curve, 1.0), [abs(a - b) * (n - 2) / (n - 1)])


def test_only_the_late_points_count_and_non_finite_ones_give_nan():
    # Wild early, steady late: only the last half (5 of 10 points) is measured.
    curve = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.6, 0.7, 0.8, 0.9]])
    assert_allclose(oscillation(curve), [0.0], atol=1e-12)
    assert oscillation(curve, 1.0)[0] > 0.3
    diverged = np.array([[0.1, 0.2, 0.3, np.nan, np.nan]])
    assert np.isnan(oscillation(diverged, 1.0)[0])


def test_random_walk_oscillation_matches_a_direct_loop():
    rng = np.random.default_rng(1)
    curves = rng.normal(size=(5, 11))
    n = 6  # ceil(0.5 * 11)
    expected = [(np.abs(np.diff(c[-n:])).sum() - abs(c[-1] - c[-n])) / (n - 1) for c in curves]
    assert_allclose(oscillation(curves), expected, rtol=1e-12)


@pytest.mark.parametrize("curves,share", [(np.ones((2, 2)), 0.5), (np.ones(5), 0.5),
                                          (np.ones((2, 5)), 0.0), (np.ones((2, 5)), 1.5)])
def test_bad_arguments_are_refused(curves, share):
    with pytest.raises(ValueError):
        oscillation(curves, share)


def test_the_evaluator_reads_the_curves_a_library_user_passes(small_digits):
    from tests_configs import tiny_config

    from negres import linen_apply
    from negres.models import build_model
    from negres.training.builtin import train_seeds
    from negres.training.optimizers import build_optimizer

    config = tiny_config()
    model = build_model(config.model, 10)
    result = train_seeds(model, build_optimizer(config.optimizer), small_digits.x_train,
                         small_digits.y_train, num_seeds=2, steps=40, batch_size=32,
                         eval_every=10, x_eval=small_digits.x_test, y_eval=small_digits.y_test)
    curves = {"step": result.curve_steps, **result.curves}
    out = evaluators.evaluate(linen_apply(model), result.params, small_digits,
                              evaluators=("stability",), curves=curves)["stability"]
    for name, values in result.curves.items():
        assert_allclose(out.metrics[f"{name}_oscillation"].values, oscillation(values))
        assert out.metrics[f"{name}_oscillation"].direction == "lower"
    # Without curves, nothing to measure.
    none = evaluators.evaluate(linen_apply(model), result.params, small_digits,
                               evaluators=("stability",))["stability"]
    assert not none.metrics
