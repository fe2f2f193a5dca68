"""The public API offers one way to do each thing: the names at the top of negres, train's
options (Scale, Checkpointing) checked when made, and hyper declared rather than guessed."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tree_allclose

import negres
from negres.errors import ArgumentError

PUBLIC = {
    # training
    "SeedProgram", "LossState", "loss_program", "linen_program", "linen_apply",
    "nnx_program", "nnx_apply", "train", "TrainResult", "Scale", "Checkpointing",
    "EarlyStopping", "TrainingProgress", "TrainingCheckpoints", "SavedRun",
    "progress_reporter", "load_results", "LoadedResults", "LabelledArray",
    "builtin_program", "builtin_data", "make_evaluate",
    # the seed axis and where it lives
    "over_seeds", "num_seeds_of", "seed_key", "seed_keys", "stream_key", "take_seed",
    "seed_mesh", "use_all_cores", "CoreSetup", "initialize_distributed",
    # errors
    "ArgumentError", "ConfigError", "ResumeError", "DiskFullError",
    # evaluators and tasks
    "evaluate", "Evaluator", "Evaluation", "EvaluationContext", "Metric", "Claim",
    "TASKS", "Task", "load_task",
    # modules
    "agreement", "evaluators", "interpretability", "metrics", "models", "saliency",
    "shifts", "statistics", "training",
}
GONE = ("train_seeds", "compile_training", "make_apply", "stats", "findings", "SeedTrainer",
        "make_seed_trainer", "Plan")
REMOVED_KEYWORDS = ("mesh", "seeds_per_chunk", "layout", "seeds_per_map_step",
                    "memory_budget_bytes", "trainer", "checkpoints", "checkpoint_every",
                    "fingerprint")

FEATURES, STEPS, BATCH = 4, 12, 8
RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, FEATURES)).astype(np.float32)
Y = (X @ RNG.normal(size=FEATURES)).astype(np.float32)


def _init(key, batch):
    return {"w": 0.1 * jax.random.normal(negres.stream_key(key, "init"), (FEATURES,))}, {}


def _loss(params, model_state, batch, rngs):
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2), (model_state, {})


def test_the_top_level_namespace_holds_exactly_the_public_names():
    assert set(negres.__all__) == PUBLIC
    assert set(dir(negres)) == PUBLIC
    for name in PUBLIC:
        assert getattr(negres, name) is not None, name
    for name in GONE:
        with pytest.raises(AttributeError):
            getattr(negres, name)


def test_internals_stay_importable_from_their_modules():
    from negres.statistics import claims  # noqa: F401
    from negres.training import builtin
    from negres.training.builtin import train_seeds  # noqa: F401
    from negres.training.driver import compile_training  # noqa: F401
    from negres.training.plan import Plan  # noqa: F401
    from negres.training.step import SeedTrainer, make_seed_trainer  # noqa: F401

    assert not hasattr(builtin, "make_apply")


def test_linen_apply_is_the_forward_pass_of_a_built_in_model():
    from negres.models import MLP

    model = MLP(hidden_sizes=(8,), num_outputs=3)
    params = model.init(jax.random.PRNGKey(0), X[:2], train=False)["params"]
    np.testing.assert_array_equal(negres.linen_apply(model)(params, X[:5]),
                                  model.apply({"params": params}, X[:5], train=False))


@pytest.mark.parametrize("keyword", REMOVED_KEYWORDS)
def test_train_refuses_the_keywords_its_options_replaced(keyword):
    assert keyword not in inspect.signature(negres.train).parameters
    program = negres.loss_program(_init, _loss, optax.sgd(0.1), streams=())
    with pytest.raises(TypeError, match=keyword):
        negres.train(program, (X, Y), num_seeds=1, steps=STEPS, batch_size=BATCH,
                     **{keyword: None})


@pytest.mark.parametrize(("field", "make"), [
    ("scale.layout", lambda: negres.Scale(layout="pmap")),
    ("scale.seeds_per_chunk", lambda: negres.Scale(seeds_per_chunk=-2)),
    ("scale.seeds_per_map_step", lambda: negres.Scale(seeds_per_map_step=0)),
    ("scale.memory_budget_bytes", lambda: negres.Scale(memory_budget_bytes=2.5)),
    ("scale.mesh", lambda: negres.Scale(mesh="all devices")),
    ("scale.trainer", lambda: negres.Scale(trainer=object())),
    ("checkpointing.directory", lambda: negres.Checkpointing(None)),
    ("checkpointing.every", lambda: negres.Checkpointing("somewhere", every=-1)),
    ("checkpointing.fingerprint", lambda: negres.Checkpointing("somewhere", fingerprint=3)),
])
def test_bad_options_are_refused_when_made_naming_the_field(field, make):
    with pytest.raises(ArgumentError) as err:
        make()
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_options_of_the_wrong_type_are_refused():
    program = negres.loss_program(_init, _loss, optax.sgd(0.1), streams=())
    common = dict(num_seeds=1, steps=STEPS, batch_size=BATCH)
    with pytest.raises(ArgumentError, match=r"scale=\{'layout': 'map'\}.*negres.Scale"):
        negres.train(program, (X, Y), scale={"layout": "map"}, **common)
    with pytest.raises(ArgumentError, match=r"checkpointing='/tmp/x'.*negres.Checkpointing"):
        negres.train(program, (X, Y), checkpointing="/tmp/x", **common)


def test_options_are_frozen():
    scale = negres.Scale(layout="map")
    with pytest.raises(AttributeError):
        scale.layout = "vmap"


def test_a_scaled_run_equals_the_default_run_seed_by_seed():
    program = negres.loss_program(_init, _loss, optax.sgd, hyperparams={"learning_rate": 0.05},
                                  streams=())
    common = dict(num_seeds=5, steps=STEPS, batch_size=BATCH, eval_every=4, seed=2)
    plain = negres.train(program, (X, Y), **common)
    mapped = negres.train(program, (X, Y), scale=negres.Scale(layout="map", seeds_per_chunk=2),
                          **common)
    assert mapped.plan["layout"] == "map" and mapped.plan["num_chunks"] == 3
    tree_allclose(mapped.state, plain.state, atol=2e-6)
    np.testing.assert_allclose(mapped.curves["train_loss"], plain.curves["train_loss"],
                               atol=2e-6)


def test_checkpointing_opens_a_directory_for_the_call_and_resumes_from_it(tmp_path):
    program = negres.loss_program(_init, _loss, optax.sgd(0.05), streams=())
    common = dict(num_seeds=2, steps=STEPS, batch_size=BATCH, eval_every=4)
    saving = negres.Checkpointing(tmp_path, every=4, fingerprint="mine")
    first = negres.train(program, (X, Y), checkpointing=saving, **common)
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [4, 8, 12]
    again = negres.train(program, (X, Y), checkpointing=saving, **common)
    assert again.plan["resumed_from_step"] == STEPS
    tree_allclose(again.state, first.state, atol=0)
    with pytest.raises(negres.ResumeError, match="fingerprint"):
        negres.train(program, (X, Y), checkpointing=negres.Checkpointing(
            tmp_path, fingerprint="another"), **common)


def test_a_loss_reads_hyper_only_when_declared():
    def init(key, batch, hyper):
        return _init(key, batch)

    def weighted(params, model_state, batch, rngs, hyper):
        value, rest = _loss(params, model_state, batch, rngs)
        return hyper["w"] * value, rest

    common = dict(num_seeds=2, steps=STEPS, batch_size=BATCH, hyperparams={"w": [0.5, 2.0]})
    declared = negres.loss_program(init, weighted, optax.sgd(0.05), streams=(), hyper=True)
    assert declared.reads_hyper
    result = negres.train(declared, (X, Y), **common)
    np.testing.assert_allclose(result.hyperparams["w"], [0.5, 2.0])
    # The same functions undeclared: called without hyper, whatever their signatures.
    undeclared = negres.loss_program(_init, _loss, optax.sgd(0.05), streams=())
    assert not undeclared.reads_hyper
    with pytest.raises(ArgumentError, match=r"hyperparams=\['w'\].*hyper=True") as err:
        negres.train(undeclared, (X, Y), **common)
    assert "none injected" in str(err.value)


def test_undeclared_hyper_is_refused_for_grid_names_but_injected_ones_pass():
    program = negres.loss_program(_init, _loss, optax.sgd, hyperparams={"learning_rate": 0.1},
                                  streams=())
    common = dict(num_seeds=1, steps=STEPS, batch_size=BATCH)
    with pytest.raises(ArgumentError, match=r"grid=\['smoothing'\].*injects \['learning_rate'\]"
                       r".*read by neither.*hyper=True"):
        negres.train(program, (X, Y), grid={"smoothing": [0.0, 0.1]}, **common)
    swept = negres.train(program, (X, Y), grid={"learning_rate": [0.05, 0.1]}, **common)
    assert swept.grid == {"learning_rate": (0.05, 0.1)}


def test_flax_programs_declare_hyper_too():
    import flax.linen as nn

    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(x)[:, 0]

    def scaled(outputs, batch, hyper):
        return hyper["w"] * jnp.mean((outputs - batch[1]) ** 2)

    def plain(outputs, batch):
        return jnp.mean((outputs - batch[1]) ** 2)

    common = dict(num_seeds=2, steps=STEPS, batch_size=BATCH, hyperparams={"w": [1.0, 3.0]})
    program = negres.linen_program(Linear(), scaled, optax.sgd(0.01), streams=(), hyper=True)
    assert negres.train(program, (X, Y), **common).hyperparams["w"].shape == (2,)
    with pytest.raises(ArgumentError, match=r"hyperparams=\['w'\].*hyper=True"):
        negres.train(negres.linen_program(Linear(), plain, optax.sgd(0.01), streams=()),
                     (X, Y), **common)
    with pytest.raises(ArgumentError, match=r"hyper='yes'"):
        negres.linen_program(Linear(), scaled, optax.sgd(0.01), hyper="yes")
    with pytest.raises(ArgumentError, match=r"hyper=1"):
        negres.loss_program(_init, _loss, optax.sgd(0.01), hyper=1)


def test_signatures_are_not_inspected():
    """A loss with a defaulted third parameter was once taken to read hyper (and handed the
    hyper dict as its scale); now it is called as declared: ``(outputs, batch)``."""
    import flax.linen as nn

    def loss(outputs, batch, scale=2.0):
        return scale * jnp.mean((outputs[:, 0] - batch[1]) ** 2)

    program = negres.linen_program(nn.Dense(1), loss, optax.sgd(0.01), streams=())
    result = negres.train(program, (X, Y), num_seeds=1, steps=STEPS, batch_size=BATCH)
    assert np.all(np.isfinite(result.curves["train_loss"]))
    from negres.training import contract

    assert not hasattr(contract, "takes_hyper")
