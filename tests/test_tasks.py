"""The task registry: declared fields and their defaults build every task; bad ones are refused."""

import math

import numpy as np
import pytest
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks import COMMON_FIELDS, TASKS, load_task, task_fields
from negres.tasks.synthetic_regression import COEFFICIENTS
from negres.tasks.tfds_datasets import DATASETS

# Smaller than the defaults where a task takes a size, so that the tests stay fast.
SMALL = {
    "mnist1d": {"num_samples": 200},
    "rule_shortcut": {"num_train": 200, "num_test": 100},
    "shape_color": {"num_train": 64, "num_test": 32},
    "synthetic_regression": {"num_train": 64, "num_test": 32},
}
LOCAL_TASKS = sorted(name for name in TASKS if name not in DATASETS)


def defaults(name: str) -> dict:
    """Every field of ``name`` at its declared default, shrunk by :data:`SMALL`."""
    config = {field.name: field.default for field in task_fields(name)}
    return {**config, "name": name, **SMALL.get(name, {})}


def refusal(config: dict) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load_task(ConfigDict(config))
    assert "\n" not in str(error.value)
    return error.value


@pytest.fixture(scope="module")
def built():
    return {name: load_task(ConfigDict(defaults(name))) for name in LOCAL_TASKS}


def test_every_task_declares_the_common_fields_once_with_accepted_defaults():
    for name in TASKS:
        fields = task_fields(name)
        assert fields[:len(COMMON_FIELDS)] == COMMON_FIELDS
        names = [field.name for field in fields]
        assert len(names) == len(set(names)), name
        for field in fields:
            assert field.accepts(field.default), (name, field.name)
            assert field.doc and "\n" not in field.doc, (name, field.name)


@pytest.mark.parametrize("name", LOCAL_TASKS)
def test_defaults_build_the_task(built, name):
    task = built[name]
    assert task.name == name
    assert task.num_train >= 1 and task.num_test >= 1
    assert len(task.y_train) == task.num_train and len(task.y_test) == task.num_test
    for mask in task.test_subsets.values():
        assert mask.dtype == bool and mask.shape == (task.num_test,)


def test_missing_fields_take_their_defaults(built):
    small = {"name": "synthetic_regression", **SMALL["synthetic_regression"]}
    config = ConfigDict(small)
    task = load_task(config)
    np.testing.assert_array_equal(task.x_train, built["synthetic_regression"].x_train)
    np.testing.assert_array_equal(task.y_test, built["synthetic_regression"].y_test)
    assert config.to_dict() == small  # the caller's config is not completed in place


@pytest.mark.parametrize("name,field,value", [
    ("digits", "split_seed", -1),
    ("digits_shortcut", "split_seed", -1),
    ("digits", "test_fraction", float("nan")),
    ("digits_shortcut", "test_fraction", float("nan")),
    ("digits", "test_fraction", math.inf),
    ("rule_shortcut", "num_train", True),
    ("rule_shortcut", "shortcut_agreement", float("nan")),
    ("synthetic_regression", "noise_std", -0.1),
    ("mnist1d", "data_seed", -1),
    ("mnist1d", "num_samples", 19),
    ("shape_color", "num_test", 30),
    ("digits", "train_subset", -1),
    ("digits", "subset_seed", -1),
])
def test_a_value_its_field_does_not_allow_is_refused(name, field, value):
    error = refusal({"name": name, field: value})
    assert error.field == f"task.{field}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_field_of_another_task_is_refused(name):
    own = {field.name for field in task_fields(name)}
    other = sorted({field.name for n in TASKS for field in task_fields(n)} - own)[0]
    error = refusal({"name": name, other: 12345})  # no task's default
    assert error.field == f"task.{other}"
    assert "train_subset" in str(error)  # the message lists the fields the task takes


def test_a_study_sweeping_tasks_leaves_each_tasks_fields_to_it():
    """A study whose conditions switch tasks shares one task section: a digits task built
    alongside mnist1d ignores mnist1d's fields, and they do not change it."""
    plain = load_task(ConfigDict({"name": "digits"}))
    swept = load_task(ConfigDict({"name": "digits", "num_samples": 100, "data_seed": 3}),
                      others=("mnist1d",))
    np.testing.assert_array_equal(plain.x_train, swept.x_train)
    assert refusal({"name": "digits", "num_distractor": 3}).field == "task.num_distractor"


def test_another_tasks_field_at_its_default_is_carried_harmlessly():
    """configs/default.py holds digits' fields; switching the task by a flag keeps them."""
    task = load_task(ConfigDict({"name": "rule_shortcut", "test_fraction": 0.2,
                                 "split_seed": 0, "num_train": 50, "num_test": 20}))
    assert task.num_train == 50
    assert refusal({"name": "rule_shortcut", "test_fraction": 0.3}).field == "task.test_fraction"


def test_digits_refuses_an_unknown_name():
    assert refusal({"name": "no_such_task"}).field == "task.name"
    assert refusal({}).field == "task.name"


@pytest.mark.parametrize("name", LOCAL_TASKS)
def test_train_subset_is_a_field_of_every_task(name):
    task = load_task(ConfigDict({**defaults(name), "train_subset": 10, "subset_seed": 1}))
    assert task.num_train == 10


def test_rule_shortcut_subsets_partition_the_test_set(built):
    task = built["rule_shortcut"]
    agrees, conflicts = (task.test_subsets[k] for k in ("shortcut_agrees", "shortcut_conflicts"))
    assert set(task.test_subsets) == {"shortcut_agrees", "shortcut_conflicts"}
    np.testing.assert_array_equal(agrees | conflicts, np.ones(task.num_test, bool))
    assert not (agrees & conflicts).any() and conflicts.any() and agrees.any()


def test_synthetic_regression_declares_its_truth(built):
    task = built["synthetic_regression"]
    np.testing.assert_array_equal(task.coefficients, COEFFICIENTS)
    assert task.interactions == {"x0*x1": (0, 1, 0.0), "x0*x2": (0, 2, 0.0)}
    with_product = load_task(ConfigDict({**defaults("synthetic_regression"),
                                         "interaction": 2.0}))
    assert with_product.interactions["x0*x1"] == (0, 1, 2.0)
    assert built["digits"].coefficients is None and not built["digits"].interactions


def test_only_tfds_tasks_have_shift_sets_fields():
    for name in TASKS:
        declares = "corruptions" in {field.name for field in task_fields(name)}
        assert declares == (name in DATASETS and DATASETS[name][1] is not None), name
