"""Convolutions as matmuls of unfolded patches: the same parameters, outputs and gradients
as ``nn.Conv``, and the same trained seeds (vmapped with one, mapped with the other)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tree_allclose
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.models import CNN, MatmulConv, build_model
from negres.training.builtin import train_seeds
from negres.training.plan import Scale


@pytest.mark.parametrize(("shape", "kernel", "stride"), [
    ((2, 40, 1), 3, 2),   # MNIST-1D's CNN: 40 -> 20 -> 10 -> 5
    ((2, 11, 3), 4, 1),   # even kernel: XLA pads one more on the high side
    ((2, 11, 3), 3, 3),   # stride not dividing the length
    ((2, 8, 8, 1), 3, 1),  # digits
    ((2, 7, 9, 2), 2, 2),
])
def test_matmul_conv_equals_nn_conv_with_the_same_parameters(shape, kernel, stride):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    window = (kernel,) * (len(shape) - 2)
    reference = nn.Conv(5, window, strides=stride)
    params = reference.init(jax.random.PRNGKey(1), x)["params"]
    params = jax.tree_util.tree_map(  # a non-zero bias, so that it is checked too
        lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
    matmul = MatmulConv(5, window, stride)

    def outputs(module, p, inputs):
        return module.apply({"params": p}, inputs)

    np.testing.assert_allclose(outputs(matmul, params, x), outputs(reference, params, x),
                               atol=1e-5)
    grads = [jax.grad(lambda p, xx, m=m: jnp.sum(jnp.sin(outputs(m, p, xx))), argnums=(0, 1))(
        params, x) for m in (matmul, reference)]
    tree_allclose(grads[0], grads[1], atol=1e-4)


def test_cnn_parameters_do_not_depend_on_how_convolutions_are_computed(small_digits):
    x = jnp.asarray(small_digits.x_train[:8])
    lax_cnn, matmul_cnn = (CNN(10, channels=(4, 6), dense_size=8, conv_impl=impl)
                           for impl in ("lax", "matmul"))
    params = lax_cnn.init(jax.random.PRNGKey(3), x)["params"]
    same = matmul_cnn.init(jax.random.PRNGKey(3), x)["params"]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(same)
    tree_allclose(params, same, atol=0)
    np.testing.assert_allclose(matmul_cnn.apply({"params": params}, x),
                               lax_cnn.apply({"params": params}, x), atol=1e-5)


def test_seeds_trained_with_either_implementation_agree(small_digits):
    common = dict(num_seeds=2, steps=6, batch_size=16, eval_every=3)
    trained = [
        train_seeds(build_model(ConfigDict({"name": "cnn", "channels": (4,), "dense_size": 8,
                                            "conv_impl": impl}), 10),
                    optax.adam(1e-2), small_digits.x_train, small_digits.y_train,
                    scale=Scale(layout=layout), **common)
        for impl, layout in (("lax", "vmap"), ("matmul", "map"))
    ]
    tree_allclose(trained[0].params, trained[1].params, atol=1e-4)
    np.testing.assert_allclose(trained[0].curves["train_loss"], trained[1].curves["train_loss"],
                               atol=1e-4)


def test_an_unknown_conv_impl_names_the_field():
    with pytest.raises(ConfigError) as err:
        build_model(ConfigDict({"name": "cnn", "conv_impl": "fft"}), 10)
    assert err.value.field == "model.conv_impl"
