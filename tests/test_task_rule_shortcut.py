"""The rule-vs-shortcut tasks: labels follow the rule, the shortcut agrees at the set rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks import load_task
from negres.tasks.rule_shortcut import (
    NUM_DIGIT_CLASSES,
    PATCH_COLS,
    PATCH_FLAT_INDICES,
    PATCH_ROWS,
    rule_text,
)


def make_rule_shortcut(**fields):
    return load_task(ConfigDict({"name": "rule_shortcut", **fields}))


def make_digits_shortcut(**fields):
    return load_task(ConfigDict({"name": "digits_shortcut", **fields}))


def decode_patch(x: jax.Array | np.ndarray) -> np.ndarray:
    """The class each image's patch codes, int ``(N,)`` for images ``(N, 8, 8, 1)``."""
    values = np.asarray(x)[:, PATCH_ROWS, PATCH_COLS, 0].mean(axis=(1, 2))
    return np.rint(values * NUM_DIGIT_CLASSES).astype(np.int32) - 1


def binomial_tolerance(p: float, n: int, sds: float = 4.0) -> float:
    """``sds`` standard errors of a share of ``n`` draws with probability ``p``."""
    return sds * np.sqrt(p * (1 - p) / n) + 1e-9


def sign_agreement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x[:, -1] > 0) == (y == 1)


@pytest.fixture(scope="module")
def tabular():
    return make_rule_shortcut(num_distractors=2)


@pytest.fixture(scope="module")
def digits():
    return make_digits_shortcut()


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_labels_follow_the_rule(threshold):
    task = make_rule_shortcut(rule_threshold=threshold)
    for x, y in [(task.x_train, task.y_train), (task.x_test, task.y_test)]:
        rule = ((x[:, 0] > threshold) & (x[:, 1] > threshold)).astype(np.int32)
        np.testing.assert_array_equal(y, rule)
        assert y.dtype == np.int32 and x.dtype == np.float32
        p = (1 - threshold) ** 2
        assert abs(y.mean() - p) <= binomial_tolerance(p, len(y))
    assert rule_text(threshold) == f"IF core_a > {threshold} AND core_b > {threshold} THEN 1 ELSE 0"


def test_tabular_layout(tabular):
    names = ("core_a", "core_b", "distractor_0", "distractor_1", "shortcut")
    assert tabular.feature_names == names
    assert tabular.input_shape == (5,)
    assert tabular.shortcut_features == (4,)
    assert (tabular.num_train, tabular.num_test, tabular.num_outputs) == (2000, 1000, 2)


@pytest.mark.parametrize("agreement", [0.0, 0.5, 0.95, 1.0])
def test_shortcut_agreement_rate_and_subsets(agreement):
    task = make_rule_shortcut(shortcut_agreement=agreement, data_seed=3)
    for x, y in [(task.x_train, task.y_train), (task.x_test, task.y_test)]:
        share = sign_agreement(x, y).mean()
        assert abs(share - agreement) <= binomial_tolerance(agreement, len(y))
    subsets = task.test_subsets
    agrees, conflicts = subsets["shortcut_agrees"], subsets["shortcut_conflicts"]
    assert agrees.shape == conflicts.shape == (task.num_test,)
    np.testing.assert_array_equal(agrees ^ conflicts, np.ones(task.num_test, bool))
    np.testing.assert_array_equal(agrees, sign_agreement(task.x_test, task.y_test))


def test_data_seed_changes_data_and_is_reproducible():
    a, b, c = (make_rule_shortcut(data_seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def shift_of(task):
    (shift,) = task.shifts.values()
    return shift


@pytest.mark.parametrize("task_name", ["tabular", "digits"])
def test_shift_at_severity_zero_is_identity(task_name, request):
    task = request.getfixturevalue(task_name)
    shifted = shift_of(task)(jax.random.PRNGKey(0), task.x_test, 0.0)
    np.testing.assert_array_equal(np.asarray(shifted), task.x_test)


def test_reversal_at_severity_one_contradicts_the_rule_everywhere(tabular):
    shift = tabular.shifts["shortcut_reversal"]
    shifted = np.asarray(shift(jax.random.PRNGKey(1), tabular.x_test, 1.0))
    assert not sign_agreement(shifted, tabular.y_test).any()
    np.testing.assert_array_equal(shifted[:, :-1], tabular.x_test[:, :-1])


def test_patch_shuffle_at_severity_one_decorrelates(digits):
    shifted = np.asarray(digits.shifts["patch_shuffle"](jax.random.PRNGKey(2), digits.x_test, 1.0))
    share = (decode_patch(shifted) == digits.y_test).mean()
    assert abs(share - 0.1) <= binomial_tolerance(0.1, digits.num_test)
    outside = np.ones(64, bool)
    outside[list(PATCH_FLAT_INDICES)] = False
    flat_shifted = shifted.reshape(len(shifted), -1)
    flat_test = digits.x_test.reshape(len(shifted), -1)
    np.testing.assert_array_equal(flat_shifted[:, outside], flat_test[:, outside])


# A redrawn digits patch keeps its class 1 time in 10, so it changes at 0.9 * severity.
@pytest.mark.parametrize("task_name,changed_per_redraw", [("tabular", 1.0), ("digits", 0.9)])
@pytest.mark.parametrize("severity", [0.3, 0.7])
def test_intermediate_severity_changes_that_share(task_name, changed_per_redraw, severity,
                                                  request):
    task = request.getfixturevalue(task_name)
    shifted = np.asarray(jax.jit(shift_of(task))(jax.random.PRNGKey(4), task.x_test,
                                                 jnp.float32(severity)))
    flat_before = task.x_test.reshape(task.num_test, -1)
    changed = (shifted.reshape(task.num_test, -1) != flat_before).any(axis=1).mean()
    p = severity * changed_per_redraw
    assert abs(changed - p) <= binomial_tolerance(p, task.num_test)


def test_digits_patch_codes_label_or_wrong_class(digits):
    subsets = digits.test_subsets
    codes = decode_patch(digits.x_test)
    agrees = subsets["shortcut_agrees"]
    np.testing.assert_array_equal(codes[agrees], digits.y_test[agrees])
    conflicts = subsets["shortcut_conflicts"]
    assert conflicts.any() and (codes[conflicts] != digits.y_test[conflicts]).all()
    assert ((codes >= 0) & (codes < 10)).all()
    np.testing.assert_array_equal(agrees ^ conflicts, np.ones(digits.num_test, bool))
    for x, y in [(digits.x_train, digits.y_train), (digits.x_test, digits.y_test)]:
        share = (decode_patch(x) == y).mean()
        assert abs(share - 0.95) <= binomial_tolerance(0.95, len(y))


def test_digits_other_pixels_are_the_original_digits(digits):
    original = load_task(ConfigDict({"name": "digits"}))
    np.testing.assert_array_equal(digits.y_train, original.y_train)
    np.testing.assert_array_equal(digits.y_test, original.y_test)
    for planted, plain in [(digits.x_train, original.x_train), (digits.x_test, original.x_test)]:
        changed = (planted != plain).reshape(len(plain), -1).any(axis=0)
        assert set(np.flatnonzero(changed)) <= set(PATCH_FLAT_INDICES)
    assert digits.shortcut_features == PATCH_FLAT_INDICES == (16, 24, 32, 40)
    assert digits.input_shape == (8, 8, 1) and digits.num_outputs == 10


@pytest.mark.parametrize("make,field,value", [
    (make_rule_shortcut, "shortcut_agreement", 1.5),
    (make_rule_shortcut, "shortcut_agreement", -0.1),
    (make_rule_shortcut, "rule_threshold", 1.0),
    (make_rule_shortcut, "num_train", 0),
    (make_rule_shortcut, "num_test", 2.5),
    (make_rule_shortcut, "num_distractors", -1),
    (make_rule_shortcut, "shortcut_scale", 0.0),
    (make_rule_shortcut, "shortcut_noise", -1.0),
    (make_rule_shortcut, "data_seed", "abc"),
    (make_digits_shortcut, "shortcut_agreement", 2.0),
    (make_digits_shortcut, "test_fraction", 1.0),
])
def test_bad_config_raises_naming_the_field(make, field, value):
    with pytest.raises(ConfigError) as error:
        make(**{field: value})
    assert error.value.field == f"task.{field}"
    assert field in str(error.value)
