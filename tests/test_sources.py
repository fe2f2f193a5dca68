"""Sources of randomness a study varies and measures.

A source design gives each stream of each seed its own seed index: held sources draw alike
across seeds, varied ones differ, a crossed design trains in one call and each of its seeds
equals that seed trained alone (and resumed). The variance decomposition recovers known
components, and its intervals cover near their 95% on simulated studies.
"""

import dataclasses
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tree_allclose
from tests_configs import tiny_config

import negres
from negres.errors import ArgumentError, ConfigError
from negres.reporting.sources import sources_section
from negres.results import StudyStatistics
from negres.seeds import crossed_design, design_keys, seed_key, stream_key, take_seed
from negres.statistics.sources import simulate_coverage, variance_by_source
from negres.study import experiment
from negres.study.config import validate_config

ATOL = 2e-5


def test_crossed_design_lays_out_every_combination():
    design = crossed_design({"init": 3, "data": 2}, first_index=5)
    assert design.num_seeds == 6 and design.levels == {"init": 3, "data": 2}
    np.testing.assert_array_equal(design.factors["init"], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(design.factors["data"], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(design.stream_seeds["data"], [5, 6, 5, 6, 5, 6])
    held = crossed_design({"init": 4, "data": 1})
    np.testing.assert_array_equal(held.stream_seeds["data"], [0, 0, 0, 0])
    np.testing.assert_array_equal(design.take([1, 4]).factors["init"], [0, 2])


def test_design_keys_are_the_keys_of_the_named_seeds():
    design = crossed_design({"init": 2, "data": 3})
    seeds = np.arange(10, 16)
    keys = design_keys(7, seeds, design)
    for s in range(6):
        np.testing.assert_array_equal(keys[""][s], seed_key(7, seeds[s]))
        for name in ("init", "data"):
            np.testing.assert_array_equal(keys[name][s],
                                          seed_key(7, design.stream_seeds[name][s]))


@pytest.mark.parametrize(("levels", "field"), [
    ({}, "levels"), ({"init": 0}, "levels['init']"), ({"init": 2.0}, "levels['init']"),
    ({"": 2}, "levels"),
])
def test_bad_levels_are_refused_in_one_line(levels, field):
    with pytest.raises(ArgumentError, match=rf"^{field.replace('[', '.').replace(']', '.')}="):
        crossed_design(levels)


def _recording_program():
    """A program whose state records what each source drew: its init key's draw, the sum
    of the batches it saw and of its dropout draws."""
    def init(key, batch, hyper):
        return {"init": jax.random.normal(key, (3,)), "data": jnp.zeros(()),
                "dropout": jnp.zeros(())}

    def step(state, batch, rngs, hyper):
        return ({"init": state["init"], "data": state["data"] + batch.sum(),
                 "dropout": state["dropout"] + jax.random.uniform(rngs["dropout"])},
                {"loss": jnp.zeros(())})

    return negres.SeedProgram(init=init, step=step, streams=("dropout",), name="recording")


DATA = np.arange(200, dtype=np.float32)


def _recorded(result):
    return {k: np.asarray(v) for k, v in result.state.items()}


def test_a_held_source_draws_alike_and_a_varied_one_differs():
    program = _recording_program()
    held_init = _recorded(negres.train(program, DATA, steps=6, batch_size=4, seed=1,
                                       stream_seeds={"init": [3] * 4, "data": [0, 1, 2, 3]}))
    assert np.all(held_init["init"] == held_init["init"][0])  # one initialisation
    assert np.unique(held_init["data"]).size == 4  # four batch orders
    assert np.unique(held_init["dropout"]).size == 4  # an unnamed stream follows its seed
    plain = _recorded(negres.train(program, DATA, steps=6, batch_size=4, seed=1, num_seeds=4))
    np.testing.assert_array_equal(held_init["init"][0], plain["init"][3])  # seed 3's own
    np.testing.assert_array_equal(held_init["data"], plain["data"])
    np.testing.assert_array_equal(held_init["dropout"], plain["dropout"])
    held_data = _recorded(negres.train(program, DATA, steps=6, batch_size=4, seed=1,
                                       num_seeds=4, stream_seeds={"data": [2] * 4}))
    assert np.all(held_data["data"] == plain["data"][2])
    np.testing.assert_array_equal(held_data["init"], plain["init"])


def test_a_design_resumes_and_refuses_checkpoints_of_another(tmp_path):
    program = _recording_program()
    design = crossed_design({"init": 2, "dropout": 2})
    args = dict(steps=8, batch_size=4, eval_every=2, stream_seeds=design)
    with negres.TrainingCheckpoints(tmp_path) as full:
        complete = negres.train(program, DATA, checkpointing=negres.Checkpointing(full, every=2),
                                **args)
    assert complete.state["init"].shape == (4, 3)  # the design set num_seeds
    shutil.rmtree(tmp_path / "8")  # what a run killed after step 6 leaves
    with negres.TrainingCheckpoints(tmp_path) as partial:
        resumed = negres.train(program, DATA,
                               checkpointing=negres.Checkpointing(partial, every=2), **args)
    assert resumed.plan["resumed_from_step"] == 6
    tree_allclose(resumed.state, complete.state, atol=0)
    np.testing.assert_array_equal(resumed.stream_seeds["dropout"], [0, 1, 0, 1])
    other = args | {"stream_seeds": {"init": [0, 0, 1, 1], "dropout": [1, 0, 1, 0]}}
    with (negres.TrainingCheckpoints(tmp_path) as saved,
          pytest.raises(negres.ResumeError, match="stream_seeds")):
        negres.train(program, DATA, checkpointing=negres.Checkpointing(saved, every=2),
                     num_seeds=4, **other)


@pytest.mark.parametrize(("stream_seeds", "field"), [
    ({"label_noise": [0, 1, 2]}, r"stream_seeds\['label_noise'\]"),
    ({"init": [0, 1]}, r"stream_seeds\['init'\]"),
    ({"data": [0, -1, 2]}, r"stream_seeds\['data'\]"),
    ({"data": [0.5, 1, 2]}, r"stream_seeds\['data'\]"),
    ([0, 1, 2], "stream_seeds"),
])
def test_bad_stream_seeds_are_refused_in_one_line(stream_seeds, field):
    with pytest.raises(ArgumentError, match=rf"^{field}=.* is not allowed: "):
        negres.train(_recording_program(), DATA, steps=2, batch_size=4, num_seeds=3,
                     stream_seeds=stream_seeds)


class DropoutNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(nn.Dropout(0.3, deterministic=not train)(x))


def _loss(logits, batch):
    _, y = batch
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": (logits.argmax(-1) == y).mean()}


def test_a_crossed_design_trained_together_equals_each_seed_alone(small_digits):
    program = negres.linen_program(DropoutNet(), _loss, optax.adam,
                                   hyperparams={"learning_rate": 1e-2})
    data = (small_digits.x_train, small_digits.y_train)
    design = crossed_design({"init": 2, "data": 2})
    args = dict(steps=10, batch_size=16, eval_every=5, seed=2,
                eval_data=(small_digits.x_test, small_digits.y_test))
    together = negres.train(program, data, stream_seeds=design, **args)
    for s in (1, 2):
        alone = negres.train(program, data, seed_indices=[s],
                             stream_seeds={n: [v[s]] for n, v in design.stream_seeds.items()},
                             **args)
        tree_allclose(take_seed(together.state, s), take_seed(alone.state, 0), atol=ATOL,
                      rtol=1e-4)
        np.testing.assert_allclose(together.curves["eval_loss"][s], alone.curves["eval_loss"][0],
                                   atol=ATOL, rtol=1e-4)
    # A grid trains the same design at each point.
    grid = negres.train(program, data, stream_seeds=design, num_seeds=4,
                        grid={"learning_rate": [1e-2, 1e-3]}, **args)
    tree_allclose(jax.tree_util.tree_map(lambda a: np.asarray(a)[0], grid.state),
                  together.state, atol=ATOL, rtol=1e-4)


def test_a_held_initialisation_gives_equal_initial_parameters(small_digits):
    # Updates set to zero keep every seed at its initial parameters.
    program = negres.linen_program(DropoutNet(), _loss, optax.set_to_zero())
    result = negres.train(program, (small_digits.x_train, small_digits.y_train), steps=4,
                          batch_size=16, stream_seeds=crossed_design({"init": 1, "data": 3}))
    for leaf in jax.tree_util.tree_leaves(result.params):
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(leaf)[:1].repeat(3, 0))
    alone = DropoutNet().init(stream_key(seed_key(0, 0), "init"),
                              small_digits.x_train[:16])["params"]
    tree_allclose(take_seed(result.params, 2), alone, atol=0)
    losses = result.curves["train_loss"][:, -1]
    assert np.unique(losses).size == 3  # same model, three batch orders


def _crossed_values(rng, levels, components, replicates=1):
    a, b = levels
    init = rng.normal(0, np.sqrt(components["init"]), a)
    data = rng.normal(0, np.sqrt(components["data"]), b)
    design = crossed_design({"init": a, "data": b})
    values = np.repeat(init[design.factors["init"]] + data[design.factors["data"]], replicates)
    factors = {n: np.repeat(v, replicates) for n, v in design.factors.items()}
    noise = "residual" if replicates > 1 else "remainder"
    return values + rng.normal(0, np.sqrt(components[noise]), values.size), factors


def test_the_decomposition_recovers_known_components():
    rng = np.random.default_rng(0)
    truth = {"init": 2.0, "data": 0.5, "remainder": 1.0}
    values, factors = _crossed_values(rng, (60, 60), truth)
    found = variance_by_source(values, factors, num_draws=500)
    for term, variance in truth.items():
        assert found["components"][term]["variance"] == pytest.approx(variance, rel=0.3)
        lo, hi = found["components"][term]["variance_ci"]
        assert lo <= variance <= hi
    assert found["components"]["init"]["share"] == pytest.approx(2 / 3.5, abs=0.08)
    assert found["levels"] == {"init": 60, "data": 60} and found["replicates"] == 1
    # With replicates, the residual is apart from the (here absent) interaction.
    values, factors = _crossed_values(rng, (20, 20), {"init": 1.0, "data": 1.0,
                                                       "residual": 1.0}, replicates=3)
    found = variance_by_source(values, factors, num_draws=500)
    assert set(found["components"]) == {"init", "data", "init x data", "residual"}
    assert found["components"]["residual"]["variance"] == pytest.approx(1.0, rel=0.2)
    assert found["components"]["init x data"]["share"] < 0.1
    # One source varied, others held: a one-way analysis.
    held = crossed_design({"init": 8, "data": 1})
    found = variance_by_source(rng.normal(size=8), held)
    assert set(found["components"]) == {"init"} and "note" in found


@pytest.mark.parametrize(("levels", "low", "high"), [(4, 0.935, 0.985), (8, 0.93, 0.97)])
def test_the_intervals_cover_near_their_level(levels, low, high):
    # 1,000 simulated studies per design; docs/sources.md reports larger runs.
    found = simulate_coverage({"init": levels, "data": levels},
                              {"init": 1.0, "data": 0.5, "remainder": 1.0},
                              num_studies=1000, num_draws=1000, seed=3)
    for term, coverage in found["share"].items():
        assert low <= coverage <= high, (term, coverage)
    for term, coverage in found["variance"].items():
        assert 0.93 <= coverage <= 0.97, (term, coverage)


@pytest.mark.parametrize(("values", "factors", "field"), [
    (np.ones(4), {"init": [0, 0, 1, 1], "data": [0, 1, 0, 0]}, "factors"),
    (np.ones(4), {"init": [0, 0, 0, 0]}, "factors"),
    (np.asarray([1.0, np.nan, 2.0, 3.0]), {"init": [0, 0, 1, 1]}, "values"),
    (np.ones(4), {"init": [0, 1]}, r"factors\['init'\]"),
])
def test_bad_designs_are_refused_in_one_line(values, factors, field):
    with pytest.raises(ArgumentError, match=rf"^{field}="):
        variance_by_source(values, factors)


def _design_config(vary=("init", "data"), levels=(2, 2)):
    config = tiny_config()
    config.num_seeds = int(np.prod(levels))
    config.randomness.vary = vary
    config.randomness.levels = levels
    return config


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: setattr(c, "num_seeds", 5), "num_seeds"),
    (lambda c: setattr(c.randomness, "levels", (2,)), "randomness.levels"),
    (lambda c: setattr(c.randomness, "vary", ("init", "init")), "randomness.vary"),
    (lambda c: setattr(c.randomness, "vary", ("init", "input_noise")), "randomness.vary"),
    (lambda c: setattr(c.randomness, "levels", (2, 0)), "randomness.levels"),
])
def test_a_bad_design_config_fails_before_anything_compiles(change, field):
    config = _design_config()
    change(config)
    with pytest.raises(ConfigError, match=rf"^config\.{field}="):
        validate_config(config)


def test_a_study_reports_its_variance_by_source(tmp_path):
    config = _design_config(levels=(3, 2))
    config.evaluation.evaluators = ("performance",)
    config.train.steps, config.train.eval_every = 20, 10
    config.randomness.metrics = ("test_accuracy", "test_loss", "not_a_metric")
    results = experiment.run(config, str(tmp_path / "run"))
    sources = results.statistics.sources
    assert sources["vary"] == ["init", "data"] and sources["levels"] == [3, 2]
    (condition,) = sources["conditions"].values()
    accuracy = condition["test_accuracy"]
    assert set(accuracy["components"]) == {"init", "data", "remainder"}
    shares = [c["share"] for c in accuracy["components"].values()]
    assert sum(shares) == pytest.approx(1.0)
    assert all(0 <= c["share_ci"][0] <= c["share_ci"][1] <= 1
               for c in accuracy["components"].values())
    assert "skipped" in condition["not_a_metric"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Sources of randomness" in report
    assert "| data order |" in report.replace("`", "")
    assert sources_section(dataclasses.replace(results, statistics=StudyStatistics())) == []
