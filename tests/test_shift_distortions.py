"""The contrast and Gaussian-blur shifts against closed forms, numpy and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from negres.errors import ConfigError
from negres.tasks import Task, shifts

KEY = jax.random.PRNGKey(0)
DISTORTIONS = ("contrast", "gaussian_blur")
RNG = np.random.default_rng(0)
IMAGES = RNG.random((4, 8, 10, 3)).astype(np.float32)  # (N, H, W, C), not square on purpose
SIGNALS = RNG.random((4, 12, 2)).astype(np.float32)  # (N, L, C)


def numpy_kernel(sigma: float, radius: int) -> np.ndarray:
    """The sampled Gaussian on offsets -radius..radius, normalised to sum 1."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def task_with_inputs(x: np.ndarray) -> Task:
    return Task(name="t", kind="classification", x_train=x, y_train=np.zeros(len(x), np.int32),
                x_test=x, y_test=np.zeros(len(x), np.int32), num_outputs=2)


@pytest.mark.parametrize("name", DISTORTIONS)
@pytest.mark.parametrize("x", [IMAGES, SIGNALS], ids=["images", "signals"])
def test_severity_zero_is_exactly_the_identity_also_when_traced(name, x):
    shift = shifts.get_shift(name)
    x = jnp.asarray(x)
    np.testing.assert_array_equal(shift(KEY, x, 0.0), x)
    np.testing.assert_array_equal(jax.jit(shift)(KEY, x, jnp.float32(0.0)), x)
    swept = jax.jit(jax.vmap(shift, in_axes=(None, None, 0)))(KEY, x, jnp.array([0.0, 0.5]))
    np.testing.assert_array_equal(swept[0], x)
    assert not np.allclose(swept[1], x)


def test_contrast_keeps_each_channel_mean_and_scales_deviations():
    for severity in (0.25, 0.5, 0.9):
        out = np.asarray(shifts.contrast(KEY, jnp.asarray(IMAGES), severity))
        mean = IMAGES.mean(axis=(1, 2), keepdims=True)  # per example and channel
        np.testing.assert_allclose(out.mean(axis=(1, 2), keepdims=True), mean, atol=1e-6)
        np.testing.assert_allclose(out - mean, (1 - severity) * (IMAGES - mean), atol=1e-6)
    # Flat inputs: the mean is the example's, over all its features.
    flat = IMAGES.reshape(4, -1)
    out = np.asarray(shifts.contrast(KEY, jnp.asarray(flat), 0.5))
    mean = flat.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out, mean + 0.5 * (flat - mean), atol=1e-6)


def test_full_contrast_reduction_is_flat_and_severities_past_1_are_clipped():
    x = jnp.asarray(IMAGES)
    flat = np.asarray(shifts.contrast(KEY, x, 1.0))
    np.testing.assert_array_equal(flat, np.broadcast_to(flat[:, :1, :1], flat.shape))
    np.testing.assert_allclose(flat[:, 0, 0], IMAGES.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_array_equal(shifts.contrast(KEY, x, 1.5), flat)
    np.testing.assert_array_equal(shifts.contrast(KEY, x, -0.5), x)


def test_blur_keeps_constant_images_and_each_channel_mean():
    constant = jnp.full((2, 8, 10, 3), 0.7, jnp.float32)
    for sigma in (0.5, 1.0, 3.0):
        np.testing.assert_allclose(shifts.gaussian_blur(KEY, constant, sigma), constant,
                                   rtol=1e-6)
        # Reflected edges send no weight out of the image: every mean is kept.
        out = np.asarray(shifts.gaussian_blur(KEY, jnp.asarray(IMAGES), sigma))
        np.testing.assert_allclose(out.mean(axis=(1, 2)), IMAGES.mean(axis=(1, 2)), atol=1e-6)


def test_blur_of_a_delta_is_the_outer_product_of_the_sampled_kernel():
    height, width, sigma = 15, 13, 1.2
    delta = np.zeros((1, height, width, 1), np.float32)
    delta[0, 7, 6, 0] = 1.0
    out = np.asarray(shifts.gaussian_blur(KEY, jnp.asarray(delta), sigma))[0, :, :, 0]
    # The delta's reflections lie 8 pixels or more away: their weight, exp(-22), is
    # below float32's resolution of the result.
    rows = numpy_kernel(sigma, height - 1)[height - 1 - 7:][:height]
    cols = numpy_kernel(sigma, width - 1)[width - 1 - 6:][:width]
    np.testing.assert_allclose(out, np.outer(rows, cols), atol=1e-7)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 1.7])
def test_blur_matches_scipy_with_reflected_edges(sigma):
    out = np.asarray(shifts.gaussian_blur(KEY, jnp.asarray(IMAGES), sigma))
    height, width = IMAGES.shape[1:3]
    # radius n - 1 is the blur's own kernel; mode="reflect" repeats the edge pixel.
    expected = np.stack([
        np.stack([gaussian_filter(image[..., c].astype(np.float64), sigma, mode="reflect",
                                  radius=(height - 1, width - 1)) for c in range(3)], -1)
        for image in IMAGES])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # The same for signals, along their length only.
    out = np.asarray(shifts.gaussian_blur(KEY, jnp.asarray(SIGNALS), sigma))
    expected = gaussian_filter1d(SIGNALS.astype(np.float64), sigma, axis=1, mode="reflect",
                                 radius=SIGNALS.shape[1] - 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # mirror (the edge pixel not repeated) differs at the edges: the mode is the one said.
    mirrored = gaussian_filter1d(SIGNALS.astype(np.float64), sigma, axis=1, mode="mirror",
                                 radius=SIGNALS.shape[1] - 1)
    assert not np.allclose(out, mirrored, atol=1e-4)


@pytest.mark.parametrize("name,severities", [("contrast", (0.0, 0.3, 1.0)),
                                             ("gaussian_blur", (0.0, 0.5, 1.0, 2.5))])
def test_a_vmapped_severity_sweep_equals_separate_calls(name, severities):
    shift, x = shifts.get_shift(name), jnp.asarray(IMAGES)
    swept = jax.jit(jax.vmap(shift, in_axes=(None, None, 0)))(KEY, x, jnp.array(severities))
    for k, severity in enumerate(severities):
        np.testing.assert_allclose(swept[k], shift(KEY, x, severity), rtol=1e-6, atol=1e-7)


def test_blur_on_flat_inputs_is_refused_by_get_shift_and_by_the_function():
    from negres.evaluators import robustness

    tabular = task_with_inputs(np.zeros((4, 6), np.float32))
    with pytest.raises(ConfigError) as err:
        shifts.get_shift("gaussian_blur", tabular)
    assert err.value.field == "evaluation.robustness.shifts"
    assert err.value.value == "gaussian_blur" and "(H, W, C)" in err.value.allowed
    # The robustness evaluator's config check goes through get_shift: refused before any
    # computation is traced.
    settings = ConfigDict({"shifts": ("contrast", "gaussian_blur"), "severities": (0.0, 1.0)})
    with pytest.raises(ConfigError) as err:
        robustness.check(settings, tabular)
    assert err.value.field == "evaluation.robustness.shifts"
    assert shifts.get_shift("contrast", tabular) is shifts.contrast
    images = task_with_inputs(IMAGES)
    assert shifts.get_shift("gaussian_blur", images) is shifts.gaussian_blur
    with pytest.raises(ValueError, match="gaussian_blur needs images"):
        shifts.gaussian_blur(KEY, jnp.zeros((4, 6)), 1.0)


def test_the_distortions_are_registered():
    assert set(DISTORTIONS) <= set(shifts.shift_names())
    assert all(shifts.SHIFTS[name] is getattr(shifts, name) for name in DISTORTIONS)


def test_a_trained_digits_mlp_loses_accuracy_as_the_distortions_grow(small_digits):
    import optax

    from negres import evaluators, linen_apply
    from negres.models import MLP
    from negres.training.builtin import train_seeds

    assert small_digits.input_shape == (8, 8, 1)  # images, not flat pixels
    model = MLP(num_outputs=10, hidden_sizes=(32,))
    result = train_seeds(model, optax.adam(1e-2), small_digits.x_train, small_digits.y_train,
                         num_seeds=2, steps=150, batch_size=64)
    severities = {"contrast": (0.0, 0.5, 0.8, 0.95), "gaussian_blur": (0.0, 0.5, 1.0, 2.0)}
    for name, levels in severities.items():
        settings = {"robustness": {"shifts": (name,), "severities": levels,
                                   "shared_shift_noise": True}}
        out = evaluators.evaluate(linen_apply(model), result.params, small_digits,
                                  evaluators=("robustness",), settings=settings,
                                  seed_indices=result.seed_indices)["robustness"]
        accuracy = out.per_seed["curves"][name]["accuracy"].mean(axis=0)  # (K,)
        assert accuracy[0] > 0.85, (name, accuracy)
        assert np.all(np.diff(accuracy) <= 0.01), (name, accuracy)  # falls, give or take
        assert accuracy[-1] < accuracy[0] - 0.2, (name, accuracy)
