"""A study's ``train`` fields are declared once and reach the library call that reads them.

``train.sampling`` was added as one declaration (negres/study/config.py) plus the line that
passes it to :func:`negres.train` (negres/study/group_training.py): these tests show the
rest follows from the declaration (validation, the argument -> field map, defaults).
"""

import jax
import numpy as np
import pytest
from tests_configs import tiny_config

import negres
from negres.errors import ConfigError
from negres.study import group_training, prepare
from negres.study.config import ARGUMENT_FIELDS, TRAIN_FIELDS, as_config_fields, complete
from negres.training.builtin import builtin_data
from negres.training.optimizers import hyperparams_of


def _trained(sampling: str | None):
    config = tiny_config()
    config.num_seeds = 2
    config.train.steps = 20
    config.train.eval_every = 10
    if sampling is not None:
        config.train.sampling = sampling
    conditions = prepare.prepare_study(config).conditions
    return conditions[0], group_training.train_group(conditions)[0]


def test_sampling_reaches_the_library_call_seed_by_seed():
    condition, epochs = _trained("epochs")
    config, task = condition.config, condition.task
    # The same seeds through negres.train with sampling="epochs": what the field must mean.
    hyper = hyperparams_of(config.optimizer)
    alone = negres.train(
        prepare.condition_program(condition), builtin_data(task.x_train, task.y_train),
        eval_data=builtin_data(task.x_test, task.y_test), steps=config.train.steps,
        batch_size=config.train.batch_size, seed=config.seed,
        eval_every=config.train.eval_every, sampling="epochs", num_seeds=2,
        hyperparams={k: np.full(2, v) for k, v in hyper.items()})
    for a, b in zip(jax.tree_util.tree_leaves(epochs.params),
                    jax.tree_util.tree_leaves(alone.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, replacement = _trained(None)  # the default draws other batches
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree_util.tree_leaves(epochs.params),
        jax.tree_util.tree_leaves(replacement.params), strict=True))


def test_a_bad_sampling_is_refused_naming_the_field():
    config = tiny_config()
    config.train.sampling = "shuffle"
    with pytest.raises(ConfigError, match=r"^config\.train\.sampling='shuffle'.*epochs"):
        prepare.prepare_study(config)


def test_every_train_field_maps_its_library_argument():
    # A library ArgumentError for any train field's argument names the config field.
    for field in TRAIN_FIELDS:
        assert ARGUMENT_FIELDS[field.name] == f"train.{field.name}"
        with pytest.raises(ConfigError) as err, as_config_fields():
            raise negres.ArgumentError(field.name, "x", "y")
        assert err.value.field == f"train.{field.name}"
    assert complete(tiny_config()).train.sampling == "replacement"
