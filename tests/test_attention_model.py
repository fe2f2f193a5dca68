"""The attention classifier: shapes, its two ablation switches, validation, and that it learns."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

import negres
from negres.errors import ConfigError
from negres.measures.agreement import layer_order
from negres.models import AttentionClassifier, build_model, check_model_input
from negres.seeds import seed_key, stream_key

SMALL = dict(patch_size=4, embed_dim=8, num_heads=2, mlp_dim=16)
SWITCHES = list(itertools.product([True, False], [True, False]))  # (attention, freeze)
EMBEDDINGS = ("patch_embed", "pos_embed")
BODY = ("mlp_norm", "mlp_hidden", "mlp_out", "head_norm", "head")
IMAGES = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8, 8, 3)), jnp.float32)


def _model(attention=True, freeze=False, **kwargs):
    return AttentionClassifier(
        num_outputs=4, attention=attention, freeze_embeddings=freeze, **(SMALL | kwargs)
    )


def _init(model, x=IMAGES, seed=0):
    return model.init(jax.random.PRNGKey(seed), x, train=False)["params"]


def _num_params(params):
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))


def _largest_change(a, b):
    leaves = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(float(jnp.abs(x - y).max()) for x, y in leaves)


def _quadrant_task(n, seed):
    """8x8x3 noise images; the label is the quadrant made bright (patch 4 = one quadrant)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    x = rng.normal(0.0, 0.3, size=(n, 8, 8, 3)).astype(np.float32)
    for q in range(4):
        rows, cols = slice(4 * (q // 2), 4 * (q // 2) + 4), slice(4 * (q % 2), 4 * (q % 2) + 4)
        x[y == q, rows, cols, :] += 1.0
    return x, y


@pytest.mark.parametrize(("attention", "freeze"), SWITCHES)
@pytest.mark.parametrize(
    ("input_shape", "num_tokens"), [((8, 8, 3), 4), ((16, 2), 4), ((12, 8, 1), 6)]
)
def test_output_shape_and_token_count(attention, freeze, input_shape, num_tokens):
    model = _model(attention, freeze)
    x = jnp.ones((3, *input_shape))
    params = _init(model, x)
    assert model.apply({"params": params}, x).shape == (3, 4)
    assert params["pos_embed"].shape == (num_tokens, SMALL["embed_dim"])
    kernel_shape = (4,) * (len(input_shape) - 1) + (input_shape[-1], SMALL["embed_dim"])
    assert params["patch_embed"]["kernel"].shape == kernel_shape


@pytest.mark.parametrize("freeze", [True, False])
def test_attention_switch_removes_every_attention_parameter(freeze):
    with_attention = _init(_model(True, freeze))
    without = _init(_model(False, freeze))
    assert layer_order(_model(True, freeze), IMAGES, train=False) == (
        *EMBEDDINGS, "attention_norm", "attention", *BODY
    )
    assert layer_order(_model(False, freeze), IMAGES, train=False) == (*EMBEDDINGS, *BODY)
    assert set(with_attention["attention"]) == {"query", "key", "value", "out"}
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(without)]
    assert not any("attention" in p for p in paths)
    # Everything else is the same size; the difference is exactly the attention block.
    attention_size = _num_params(
        {k: with_attention[k] for k in ("attention_norm", "attention")}
    )
    assert _num_params(with_attention) - _num_params(without) == attention_size > 0


# Frozen and not, with attention: enough to see the switch work, with few compiles.
@pytest.mark.parametrize(("attention", "freeze"), [(True, True), (True, False)])
def test_frozen_embeddings_keep_their_initial_values(attention, freeze):
    x, y = _quadrant_task(64, seed=1)
    model = _model(attention, freeze)
    result = negres.train(negres.builtin_program(model, optax.adam(1e-2)),
                          negres.builtin_data(x, y), num_seeds=2, steps=20, batch_size=16)
    for i in range(2):
        # How the engine initialises seed i.
        initial = model.init(stream_key(seed_key(0, i), "init"), x[:1], train=False)["params"]
        trained = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], result.params)
        for name in EMBEDDINGS:
            moved = _largest_change(trained[name], initial[name])
            if freeze:
                assert moved <= 1e-6, name
            else:
                assert moved > 1e-3, name
        for name in BODY:
            assert _largest_change(trained[name], initial[name]) > 1e-3, name


@pytest.mark.parametrize("attention", [True, False])
def test_input_gradients_flow_through_frozen_embeddings(attention):
    params = _init(_model(attention, False))

    def input_gradient(model):
        def score(x):
            return model.apply({"params": params}, x)[:, 1].sum()

        return jax.grad(score)(IMAGES)

    frozen = input_gradient(_model(attention, True))
    trainable = input_gradient(_model(attention, False))
    assert bool(jnp.all(jnp.abs(frozen).sum(axis=(1, 2, 3)) > 1e-4))
    np.testing.assert_allclose(np.asarray(frozen), np.asarray(trainable), rtol=1e-6, atol=1e-7)

    # The parameter gradient of the embeddings is what freezing removes.
    def loss(p, model):
        return model.apply({"params": p}, IMAGES)[:, 1].sum()

    grads = jax.grad(loss)(params, _model(attention, True))
    for leaf in jax.tree_util.tree_leaves({k: grads[k] for k in EMBEDDINGS}):
        assert float(jnp.abs(leaf).max()) == 0.0
    assert float(jnp.abs(grads["mlp_hidden"]["kernel"]).max()) > 0.0


def _swap_quadrants(x):
    """Top-left <-> bottom-right patches of 8x8 images: a permutation of the 4 tokens."""
    top_left, bottom_right = x[:, :4, :4], x[:, 4:, 4:]
    return x.at[:, :4, :4].set(bottom_right).at[:, 4:, 4:].set(top_left)


@pytest.mark.parametrize("attention", [True, False])
def test_without_positions_the_model_ignores_patch_order(attention):
    """Attention is permutation-equivariant, the pool invariant: only pos_embed knows order."""
    model = _model(attention)
    params = _init(model)
    params["pos_embed"] = params["pos_embed"] * 0.0 + 0.5  # same for every token
    swapped = _swap_quadrants(IMAGES)
    assert float(jnp.abs(swapped - IMAGES).max()) > 0.1
    np.testing.assert_allclose(
        np.asarray(model.apply({"params": params}, swapped)),
        np.asarray(model.apply({"params": params}, IMAGES)),
        rtol=1e-5, atol=1e-5,
    )
    params["pos_embed"] = jax.random.normal(jax.random.PRNGKey(3), params["pos_embed"].shape)
    diff = model.apply({"params": params}, swapped) - model.apply({"params": params}, IMAGES)
    assert float(jnp.abs(diff).max()) > 1e-3


def test_dropout_acts_only_in_training():
    model = _model(dropout_rate=0.5)
    params = _init(model)

    def run(key, train):
        return model.apply({"params": params}, IMAGES, train=train, rngs={"dropout": key})

    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    np.testing.assert_array_equal(np.asarray(run(k1, False)), np.asarray(run(k2, False)))
    assert float(jnp.abs(run(k1, True) - run(k2, True)).max()) > 1e-4


def test_builder_defaults_and_registry():
    model = build_model(ConfigDict({"name": "attention"}), 10)
    assert isinstance(model, AttentionClassifier)
    assert (model.num_outputs, model.patch_size, model.embed_dim, model.num_heads) == (10, 4, 32, 4)
    assert (model.mlp_dim, model.attention, model.freeze_embeddings) == (64, True, False)
    # One declared default per field for every model (negres.models.FIELDS): relu.
    assert (model.activation, model.dropout_rate) == ("relu", 0.0)
    built = build_model(
        ConfigDict({"name": "attention", "attention": False, "freeze_embeddings": True} | SMALL), 3
    )
    assert (built.attention, built.freeze_embeddings, built.embed_dim) == (False, True, 8)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"embed_dim": 10, "num_heads": 4}, "model.num_heads"),
        ({"embed_dim": 0}, "model.embed_dim"),
        ({"num_heads": 2.0}, "model.num_heads"),
        ({"mlp_dim": -1}, "model.mlp_dim"),
        ({"patch_size": True}, "model.patch_size"),
        ({"attention": "yes"}, "model.attention"),
        ({"freeze_embeddings": 1}, "model.freeze_embeddings"),
        ({"activation": "swish"}, "model.activation"),
        ({"dropout_rate": 1.0}, "model.dropout_rate"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError) as error:
        build_model(ConfigDict({"name": "attention"} | overrides), 4)
    assert error.value.field == field


def test_check_model_input_names_patch_size_and_input_shape():
    config = ConfigDict({"name": "attention", "patch_size": 3})
    with pytest.raises(ConfigError, match=r"\(8, 8, 3\)") as error:
        check_model_input(config, (8, 8, 3))
    assert error.value.field == "model.patch_size"
    assert "[1, 2, 4, 8]" in str(error.value)
    check_model_input(config, (9, 6, 1))
    check_model_input(ConfigDict({"name": "attention"}), (40, 1))  # default patch 4
    with pytest.raises(ConfigError) as error:
        check_model_input(ConfigDict({"name": "attention"}), (64,))
    assert error.value.field == "model.name"
    check_model_input(ConfigDict({"name": "mlp"}), (7, 3))  # other models take any shape


@pytest.mark.parametrize("attention", [True, False])
def test_learns_which_quadrant_is_bright(attention):
    x, y = _quadrant_task(512, seed=2)
    x_test, y_test = _quadrant_task(256, seed=3)
    result = negres.train(
        negres.builtin_program(_model(attention), optax.adam(1e-2)), negres.builtin_data(x, y),
        num_seeds=2, steps=150, batch_size=32, eval_every=75,
        eval_data=negres.builtin_data(x_test, y_test),
    )
    accuracy = result.curves["eval_accuracy"]  # (S, 2): after 75 and 150 steps
    assert accuracy.shape == (2, 2)
    assert np.all(accuracy[:, -1] >= 0.9), accuracy  # chance is 0.25
