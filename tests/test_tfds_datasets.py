"""The real TFDS code path (``tfds.data_source``) under ``tfds.testing.mock_data``, offline."""

import jax
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.evaluators import robustness
from negres.evaluators.protocol import EvaluationContext
from negres.models import build_model
from negres.seeds import seed_keys
from negres.tasks import ShiftSet, load_task
from negres.tasks.tfds_datasets import DatasetNotPreparedError, available_corruptions
from negres.training.builtin import train_seeds


@pytest.fixture
def mocked():
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3))])
def test_datasets_load_as_normalised_float_images(mocked, name, shape):
    task = load_task(ConfigDict({"name": name, "num_train": 16, "num_test": 8}))
    assert task.x_train.shape == (16, *shape) and task.x_test.shape == (8, *shape)
    assert task.x_train.dtype == np.float32 and task.y_train.dtype == np.int32
    assert task.x_train.min() >= 0.0 and task.x_train.max() <= 1.0
    assert task.x_train.max() > 0.5  # scaled from uint8, not left in [0, 1/255]
    assert set(np.unique(task.y_train)) <= set(range(10))
    whole = load_task(ConfigDict({"name": name}))
    assert whole.num_train == 24  # 0 means the whole split


def test_cifar10_corruptions_become_shift_sets_that_robustness_evaluates(mocked):
    task = load_task(ConfigDict({
        "name": "cifar10", "num_train": 16, "num_test": 8,
        "corruptions": ("gaussian_noise", "frosted_glass_blur"),
        "corruption_severities": (1, 3)}))
    sets = task.shift_sets
    assert set(sets) == {"gaussian_noise", "frosted_glass_blur"}
    for shift_set in sets.values():
        assert isinstance(shift_set, ShiftSet)
        assert shift_set.x.shape == (2, 8, 32, 32, 3) and shift_set.x.dtype == np.uint8
        assert shift_set.y.shape == (2, 8)
        assert shift_set.severities == (1.0, 3.0)
    model = build_model(ConfigDict({"name": "linear"}), 10)
    trained = train_seeds(model, optax.sgd(0.1), task.x_train, task.y_train, num_seeds=2,
                          steps=2, batch_size=8)
    settings = ConfigDict({"shifts": (), "severities": (0.0,), "shared_shift_noise": True})
    out = robustness.evaluate(EvaluationContext(
        apply=lambda p, x: model.apply({"params": p}, x), params=trained.params, task=task,
        settings=settings, seed_keys=seed_keys(0, [0, 1]), shared_key=jax.random.PRNGKey(0)))
    curve = out.per_seed["curves"]["corrupted_gaussian_noise"]
    assert curve["accuracy"].shape == (2, 2)
    # The accuracy on a shift set is that of the model on the set's own images and labels.
    x = sets["gaussian_noise"].x[1].astype(np.float32) / 255.0
    logits = model.apply({"params": jax.tree_util.tree_map(lambda p: p[0], trained.params)}, x)
    expected = np.mean(np.argmax(logits, -1) == sets["gaussian_noise"].y[1])
    assert curve["accuracy"][0, 1] == pytest.approx(expected)
    assert out.metrics["corrupted_gaussian_noise_mean_accuracy"].values.shape == (2,)


def test_mnist_corrupted_has_one_level_per_corruption(mocked):
    task = load_task(ConfigDict({"name": "mnist", "num_train": 8, "num_test": 4,
                                 "corruptions": ("shot_noise", "identity")}))
    assert task.shift_sets["shot_noise"].x.shape == (1, 4, 28, 28, 1)
    assert task.shift_sets["shot_noise"].severities == (1.0,)
    assert "canny_edges" in available_corruptions("mnist")
    assert "frosted_glass_blur" in available_corruptions("cifar10")


@pytest.mark.parametrize("config,field", [
    ({"name": "cifar10", "corruptions": ("sunburn",)}, "task.corruptions"),
    ({"name": "fashion_mnist", "corruptions": ("fog",)}, "task.corruptions"),
    ({"name": "cifar10", "corruption_severities": (0,)}, "task.corruption_severities"),
    ({"name": "cifar10", "corruption_severities": (1.0,)}, "task.corruption_severities"),
    ({"name": "mnist", "corruption_severities": (1,)}, "task.corruption_severities"),
    ({"name": "cifar10", "num_train": -1}, "task.num_train"),
])
def test_bad_corruption_settings_name_the_field(mocked, config, field):
    with pytest.raises(ConfigError) as err:
        load_task(ConfigDict(config))
    assert err.value.field == field


def test_missing_dataset_says_where_it_looked_and_what_to_run(tmp_path):
    with pytest.raises(DatasetNotPreparedError) as err:
        load_task(ConfigDict({"name": "mnist", "data_dir": str(tmp_path)}))
    message = str(err.value)
    assert str(tmp_path) in message
    assert f"tfds build mnist --data_dir={tmp_path}" in message
    assert not any(tmp_path.iterdir())  # nothing was downloaded or written


def test_cifar10_corrupted_config_runs_end_to_end_on_mock_data(mocked, tmp_path):
    from tests_configs import load_config

    from negres.study import experiment

    config = load_config("cifar10_corrupted")
    config.num_seeds = 2
    config.task.num_train = 16
    config.task.num_test = 8
    config.task.corruptions = ("gaussian_noise", "contrast")
    config.task.corruption_severities = (1, 5)
    config.model.channels = (4,)
    config.model.dense_size = 8
    config.train.steps = 4
    config.train.eval_every = 2
    config.train.batch_size = 8
    config.evaluation.attributions.attribution_examples = 2
    config.evaluation.attributions.save_attributions = 2
    config.stats.num_resamples = 200
    config.stats.num_permutations = 200
    results = experiment.run(config, str(tmp_path))
    robustness = results.conditions["cnn"].saved_by("robustness").per_seed["curves"]
    assert set(robustness) == {"corrupted_gaussian_noise", "corrupted_contrast"}
    assert np.asarray(robustness["corrupted_contrast"]["accuracy"]).shape == (2, 2)
    assert "corrupted_contrast" in (tmp_path / "report.md").read_text()
