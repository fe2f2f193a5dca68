"""Shifts and per-seed metrics against closed forms and reference implementations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion

from negres import evaluators, linen_apply
from negres.errors import ConfigError
from negres.measures import losses, metrics
from negres.models import Linear
from negres.seeds import take_rows
from negres.tasks import Task, shifts

KEY = jax.random.PRNGKey(0)


def numpy_ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Guo et al. (2017) top-label ECE, written out with a loop over bins."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    confidence, predicted = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for b in range(bins):
        low, high = edges[b], edges[b + 1]
        in_bin = (confidence > low) & (confidence <= high) if b else (confidence <= high)
        if in_bin.any():
            accuracy = (predicted[in_bin] == labels[in_bin]).mean()
            ece += in_bin.mean() * abs(accuracy - confidence[in_bin].mean())
    return ece


def test_ece_matches_reference_and_is_zero_when_calibrated():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, 500)
    np.testing.assert_allclose(metrics.expected_calibration_error(logits, labels),
                               numpy_ece(logits, labels), atol=1e-5)
    confident = np.eye(5, dtype=np.float32)[labels] * 100.0  # confidence 1, always right
    assert float(metrics.expected_calibration_error(confident, labels)) < 1e-6


def test_accuracy_loss_and_confusion_against_references():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    assert float(metrics.accuracy(logits, labels)) == pytest.approx(
        (logits.argmax(1) == labels).mean())
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(metrics.cross_entropy(logits, labels),
                               -log_p[np.arange(200), labels].mean(), rtol=1e-5)
    np.testing.assert_array_equal(metrics.confusion_matrix(logits, labels, 4),
                                  sk_confusion(labels, logits.argmax(1), labels=range(4)))


def test_losses_are_the_means_of_the_per_example_metrics():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=(64, 5)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 5, 64).astype(np.int32))
    loss, score = jax.jit(losses.classification_loss)(logits, labels)
    np.testing.assert_array_equal(loss, metrics.cross_entropy_per_example(logits, labels).mean())
    np.testing.assert_array_equal(score, metrics.correct(logits, labels).mean())
    assert metrics.correct(logits, labels).shape == (64,)
    outputs, targets = logits[:, :1], jnp.asarray(rng.normal(size=64).astype(np.float32))
    mse, mse_score = losses.regression_loss(outputs, targets)
    np.testing.assert_array_equal(mse, metrics.squared_error(outputs, targets).mean())
    assert float(mse) == float(mse_score)


@pytest.mark.parametrize("name", sorted(shifts.SHIFTS))
def test_severity_zero_is_identity_and_shape_is_kept(name):
    x = jax.random.uniform(KEY, (16, 8, 8, 3))
    shift = shifts.get_shift(name)
    np.testing.assert_array_equal(shift(KEY, x, 0.0), x)
    shifted = shift(KEY, x, 0.3)
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    np.testing.assert_array_equal(shift(KEY, x, 0.3), shifted)  # deterministic in the key
    assert not np.allclose(shifted, x)


def test_gaussian_noise_has_the_requested_std_and_occlusion_the_share():
    x = jnp.zeros((200, 500))
    noise = shifts.gaussian_noise(KEY, x, 0.3)
    # 100,000 draws: the sample std is within 1% of 0.3 with overwhelming probability.
    assert float(noise.std()) == pytest.approx(0.3, rel=0.01)
    occluded = shifts.occlusion(KEY, jnp.ones((200, 500)), 0.25)
    assert float((occluded == 0).mean()) == pytest.approx(0.25, abs=0.01)


def test_unknown_shift_names_the_field_and_task_shifts_are_found():
    task = Task(name="t", kind="regression", x_train=np.zeros((2, 1)), y_train=np.zeros(2),
                x_test=np.zeros((2, 1)), y_test=np.zeros(2), num_outputs=1,
                shifts={"flip": lambda key, x, severity: -x})
    assert shifts.get_shift("flip", task)(KEY, jnp.ones(2), 1.0)[0] == -1.0
    with pytest.raises(ConfigError) as err:
        shifts.get_shift("snow", task)
    assert err.value.field == "evaluation.robustness.shifts" and "flip" in err.value.allowed


def test_regression_mse_under_noise_matches_the_closed_form():
    """For f(x) = w.x + b, E[(f(x + s e) - y)^2] = clean MSE + s^2 ||w||^2."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20_000, 5)).astype(np.float32)
    y = (x @ np.array([3, 2, -1.5, 0, 0], np.float32) + 0.1 * rng.normal(size=20_000))
    task = Task(name="r", kind="regression", x_train=x[:10], y_train=y[:10].astype(np.float32),
                x_test=x, y_test=y.astype(np.float32), num_outputs=1)
    model = Linear(num_outputs=1)
    w = np.array([[3.0], [2.0], [-1.5], [0.5], [0.0]], np.float32)
    params = {"Dense_0": {"kernel": jnp.stack([w, 2 * w]), "bias": jnp.zeros((2, 1))}}
    settings = {"robustness": {"shifts": ("gaussian_noise",), "severities": (0.0, 0.2, 0.5),
                               "shared_shift_noise": True}}

    def sweep(params, seed_indices):
        return evaluators.evaluate(linen_apply(model), params, task, evaluators=("robustness",),
                                   settings=settings, seed_indices=seed_indices)["robustness"]

    out = sweep(params, [0, 1])
    mse = out.per_seed["curves"]["gaussian_noise"]["mse"]  # (S, K)
    assert out.metrics["gaussian_noise_mean_mse"].direction == "lower"
    for s, scale in enumerate((1.0, 2.0)):
        w_s = scale * w[:, 0]
        clean = np.mean((x @ w_s - y) ** 2)
        for k, sigma in enumerate((0.0, 0.2, 0.5)):
            expected = clean + sigma**2 * np.sum(w_s**2)
            assert mse[s, k] == pytest.approx(expected, rel=0.02)
    gap = out.per_seed["curves"]["gaussian_noise"]["gap"]
    np.testing.assert_allclose(gap[:, 0], 0.0, atol=1e-6)
    assert np.all(gap[:, 2] > gap[:, 1])
    alone = sweep(take_rows(params, slice(1, 2)), [1])
    np.testing.assert_allclose(alone.per_seed["curves"]["gaussian_noise"]["mse"][0], mse[1],
                               rtol=1e-5)
