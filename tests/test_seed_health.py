"""Collapsed seeds: a training loss that ends above its loss at initialisation while staying
finite is flagged per seed, in report.md and on the terminal (issue #15)."""

import copy

import jax
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict
from tests_configs import tiny_config

import negres
from negres.evaluators import performance
from negres.evaluators.protocol import EvaluationContext
from negres.models import build_model
from negres.reporting.markdown import build_report
from negres.reporting.terminal import print_summary
from negres.results import Diverged
from negres.seeds import over_seeds, seed_keys, stream_key
from negres.statistics.study import without_diverged
from negres.study import experiment
from negres.training.builtin import builtin_data, builtin_program
from negres.training.linen import linen_apply

NUM_SEEDS = 3
# Adam at this rate throws every seed to chance accuracy with a training loss of 1e6 to 1e9
# within 20 steps, and nothing becomes NaN or infinite: the case issue #15 reports.
RUNAWAY_LEARNING_RATE = 1e6
# Adam's steps are at most about the learning rate: at this one every parameter keeps its
# initial value (float32 cannot hold the change), so the final loss is the initial one.
FROZEN_LEARNING_RATE = 1e-30


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A baseline, a runaway learning rate and one too small to move a parameter, at a root
    seed other than the default: one compiled call (the conditions differ only in a vmapped
    hyperparameter), performance alone, toy size."""
    config = tiny_config()
    config.seed = 7
    config.num_seeds = NUM_SEEDS
    config.train.steps = 20
    config.train.eval_every = 20
    config.evaluation.evaluators = ()
    config.conditions = ({"name": "baseline"},
                         {"name": "runaway", "optimizer.learning_rate": RUNAWAY_LEARNING_RATE},
                         {"name": "frozen", "optimizer.learning_rate": FROZEN_LEARNING_RATE})
    workdir = tmp_path_factory.mktemp("seed_health")
    results = experiment.run(config, str(workdir))
    return results, workdir


def per_seed(results, name):
    return results.conditions[name].saved_by("performance").per_seed


def test_runaway_seeds_are_flagged_as_collapsed_but_stay_finite_and_kept(study):
    results, _ = study
    base, runaway = (results.conditions[n] for n in ("baseline", "runaway"))
    # What makes these seeds hard to see: no non-finite value, so no divergence flag.
    assert runaway.diverged_at_step.tolist() == [-1] * NUM_SEEDS
    assert np.all(np.isfinite(runaway.metrics["train_loss"]))
    assert np.all(np.asarray(runaway.metrics["train_loss"]) > 1e3)
    assert per_seed(results, "runaway")["collapsed"] == [True] * NUM_SEEDS
    assert per_seed(results, "baseline")["collapsed"] == [False] * NUM_SEEDS
    # Ten classes: an untrained network's loss is about log(10), whatever the condition,
    # and a seed's starting point does not depend on its learning rate.
    for name in ("baseline", "runaway"):
        np.testing.assert_allclose(per_seed(results, name)["initial_train_loss"], np.log(10),
                                   atol=0.3)
    np.testing.assert_array_equal(per_seed(results, "baseline")["initial_train_loss"],
                                  per_seed(results, "runaway")["initial_train_loss"])
    assert np.all(np.asarray(base.metrics["train_loss"])
                  < np.asarray(per_seed(results, "baseline")["initial_train_loss"]))
    # Kept in the statistics: collapse is reported, not left out.
    summaries = results.statistics.summaries["runaway"]
    assert summaries["train_loss"]["n"] == NUM_SEEDS
    assert results.statistics.excluded_diverged_seeds["count"]["runaway"] == 0


def test_report_names_the_collapsed_seeds_of_their_condition(study):
    results, workdir = study
    report = (workdir / "report.md").read_text()
    base_section, rest = report.split("### `runaway`")
    runaway_section, frozen_section = rest.split("### `frozen`")
    assert "collapsed" not in base_section and "collapsed" not in frozen_section
    sentence = next(line for line in runaway_section.splitlines() if "collapsed" in line)
    assert sentence.startswith(f"**{NUM_SEEDS} of {NUM_SEEDS} seeds collapsed** (training loss "
                               "ended above its loss at initialisation, though it stayed finite)")
    for seed in results.conditions["runaway"].seed_indices:
        assert f" {seed} (" in sentence
    assert "Collapse leaves no seed out of the statistics" in sentence


def test_terminal_says_which_seeds_collapsed(study, capsys):
    results, _ = study
    print_summary(results)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "collapsed" in line]
    assert len(lines) == 1  # one line, for the one condition with collapsed seeds
    assert lines[0].startswith(f"{NUM_SEEDS} of {NUM_SEEDS} seeds collapsed")
    assert "seeds 0 (" in lines[0] and ", 2 (" in lines[0]
    # Under its own condition's heading, not the baseline's.
    assert out.index("runaway:") < out.index(lines[0])


def test_results_without_the_flags_report_as_before(study, capsys):
    """A results.json of an older run, or of a model without a re-initialiser: no sentence,
    no crash."""
    results, _ = study
    older = copy.deepcopy(results)
    for condition in older.conditions.values():
        condition.evaluations["performance"].per_seed = {}
    del older.conditions["baseline"].evaluations["performance"]
    assert "collapsed" not in build_report(older, [])
    print_summary(older)
    assert "collapsed" not in capsys.readouterr().out


def test_left_out_rows_read_back_as_flags(study):
    """Statistics cast saved per-seed rows to float when they leave seeds out: 1.0 still
    reads as collapsed."""
    results, _ = study
    runaway = copy.deepcopy(results.conditions["runaway"])
    flags = per_seed(results, "runaway")["collapsed"]
    runaway.evaluations["performance"].per_seed["collapsed"] = [float(f) for f in flags]
    assert [s for s, _, _ in performance.collapsed_seeds(runaway)] == list(range(NUM_SEEDS))


def test_initial_train_loss_is_the_loss_the_training_driver_started_from(study):
    """Through the whole study: the driver initialised every seed (from a zero example), the
    evaluator re-drew its parameters from the seed's key (from a test example), and a
    learning rate too small to move them leaves the final loss equal to the re-drawn one."""
    results, _ = study
    frozen = results.conditions["frozen"]
    np.testing.assert_allclose(per_seed(results, "frozen")["initial_train_loss"],
                               frozen.metrics["train_loss"], rtol=1e-6)
    assert len(set(per_seed(results, "frozen")["initial_train_loss"])) == NUM_SEEDS


@pytest.fixture(scope="module")
def mlp(small_digits):
    return build_model(ConfigDict({"name": "mlp", "hidden_sizes": (16,)}),
                       small_digits.num_outputs)


def test_initial_train_loss_is_the_loss_of_each_seeds_own_initial_parameters(mlp, small_digits):
    """Evaluated at the parameters the built-in program's init draws for each seed (what the
    driver calls with ``seed_keys(seed, seed_indices)``), the training loss must equal
    initial_train_loss exactly, at seed indices and a root seed other than the defaults;
    and a seed that did not move did not collapse (equal is not above)."""
    task, seed, indices = small_digits, 7, np.array([5, 2, 11])
    program = builtin_program(mlp, optax.sgd(0.0), kind=task.kind)
    batch = builtin_data(task.x_train[:1], task.y_train[:1])
    # Op by op, as the evaluator draws: the random draws' compiled code is shared.
    start = over_seeds(lambda k: program.init(k, batch, {}).params)(seed_keys(seed, indices))
    example = task.x_test[:1]
    evaluation = negres.evaluate(
        linen_apply(mlp), start, task, evaluators=(), seed=seed, seed_indices=indices,
        init=lambda key: mlp.init(key, example, train=False)["params"])["performance"]
    initial = evaluation.per_seed["initial_train_loss"]
    np.testing.assert_array_equal(initial, evaluation.metrics["train_loss"].values)
    assert len(set(initial.tolist())) == len(indices)  # each seed its own draw
    assert evaluation.per_seed["collapsed"].tolist() == [False] * len(indices)


def test_collapsed_needs_a_finite_kept_seed_and_a_re_initialiser(mlp, small_digits):
    """A diverged seed is flagged as diverged, not also as collapsed; without ``init`` there
    is nothing to compare with, and nothing is saved."""
    task = small_digits
    keys = seed_keys(0, np.arange(3))
    example = task.x_test[:1]

    def init(key):
        return mlp.init(key, example, train=False)["params"]

    start = over_seeds(lambda k: init(stream_key(k, "init")))(keys)
    # Seeds 0 and 1 blown up (every weight 100 times larger: a far higher loss), seed 2
    # untouched.
    scale = np.array([100.0, 100.0, 1.0], np.float32)
    params = jax.tree_util.tree_map(
        lambda leaf: leaf * scale.reshape((-1,) + (1,) * (leaf.ndim - 1)), start)
    context = EvaluationContext(
        apply=linen_apply(mlp), params=params, task=task, settings=ConfigDict(), seed_keys=keys,
        shared_key=jax.random.PRNGKey(0), init=init, kept=np.array([True, False, True]))
    evaluation = performance.evaluate(context)
    final = evaluation.metrics["train_loss"].values
    assert np.all(final[:2] > evaluation.per_seed["initial_train_loss"][:2])
    assert evaluation.per_seed["collapsed"].tolist() == [True, False, False]
    without = performance.evaluate(EvaluationContext(
        apply=linen_apply(mlp), params=params, task=task, settings=ConfigDict(), seed_keys=keys,
        shared_key=jax.random.PRNGKey(0)))
    # Without kept seeds and a re-initialiser there is no health record, only the
    # per-example values every run saves.
    assert set(without.per_seed) == {"per_example"}
    np.testing.assert_array_equal(without.metrics["train_loss"].values, final)


def test_paired_statistics_say_how_many_seeds_each_condition_left_out_and_why(study, capsys):
    """A seed that diverged in one condition leaves every paired condition: report.md and
    the terminal say so for the conditions where it did not diverge, not "0 seeds"."""
    results = copy.deepcopy(study[0])
    results.statistics.settings["paired_conditions"] = True
    runaway = results.conditions["runaway"]
    runaway.diverged_at_step = np.array([-1, 12, -1])
    runaway.diverged = Diverged(count=1, seed_indices=np.array([1]), steps=np.array([12]))
    # As the study records them: the statistics' own account of what they left out.
    results.statistics.excluded_diverged_seeds = without_diverged(
        results.conditions, paired=True)[1]
    report = build_report(results, [])
    baseline_section = report[report.index("### `baseline`"):report.index("### `runaway`")]
    assert ("**1 more of its seeds are left out** of every statistic below (seeds 1): they "
            "diverged in another condition") in baseline_section
    assert "The statistics below use 2 of 3 seeds." in baseline_section
    assert "**1 of 3 seeds diverged** (loss or parameters NaN or infinite: seed 1 at step 12)" \
        in report
    print_summary(results)
    out = capsys.readouterr().out
    assert "baseline: 3 seeds" in out and "1 of 3 left out below (0 diverged here, 1 in " \
        "another condition)" in out
    assert "1 of 3 left out below (diverged)" in out  # the runaway condition's own seed
