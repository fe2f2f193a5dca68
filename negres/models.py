"""Flax models found by name: linear, MLP and a small 1-D/2-D CNN.

Every model maps a batch ``(B, *input_shape)`` to outputs ``(B, num_outputs)`` and
takes ``train`` to switch dropout on. Parameters are plain pytrees (linen's
functional ``init``/``apply``) so that they vmap over seeds, shard and checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from negres.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "silu": nn.silu,
}


class Linear(nn.Module):
    """Logistic (classification) or linear (regression) model on the flattened input."""

    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        return nn.Dense(self.num_outputs)(x.reshape((x.shape[0], -1)))


class MLP(nn.Module):
    """Fully connected network on the flattened input."""

    num_outputs: int
    hidden_sizes: Sequence[int] = (64,)
    activation: str = "relu"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h = x.reshape((x.shape[0], -1))
        for width in self.hidden_sizes:
            h = act(nn.Dense(width)(h))
            if self.dropout_rate > 0:
                h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(self.num_outputs)(h)


class CNN(nn.Module):
    """Convolutions (1-D for ``(L, C)`` inputs, 2-D for ``(H, W, C)``), then a dense head."""

    num_outputs: int
    channels: Sequence[int] = (16, 32)
    kernel_size: int = 3
    strides: int = 1
    dense_size: int = 64
    activation: str = "relu"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        spatial_dims = x.ndim - 2
        h = x
        for c in self.channels:
            h = nn.Conv(c, (self.kernel_size,) * spatial_dims, strides=self.strides)(h)
            h = act(h)
        h = h.reshape((h.shape[0], -1))
        h = act(nn.Dense(self.dense_size)(h))
        if self.dropout_rate > 0:
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(self.num_outputs)(h)


def _positive_ints(field: str, value: object) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) else tuple(value)  # type: ignore[arg-type]
    if not values or any(not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(field, value, "a non-empty tuple of positive integers")
    return values


def _activation(model_config: ConfigDict) -> str:
    name = model_config.get("activation", "relu")
    if name not in ACTIVATIONS:
        raise ConfigError("model.activation", name, f"one of {sorted(ACTIVATIONS)}")
    return name


def _dropout(model_config: ConfigDict) -> float:
    rate = model_config.get("dropout_rate", 0.0)
    if not 0.0 <= rate < 1.0:
        raise ConfigError("model.dropout_rate", rate, "a number in [0, 1)")
    return float(rate)


def make_linear(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    return Linear(num_outputs=num_outputs)


def make_mlp(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    return MLP(
        num_outputs=num_outputs,
        hidden_sizes=_positive_ints("model.hidden_sizes", model_config.get("hidden_sizes", (64,))),
        activation=_activation(model_config),
        dropout_rate=_dropout(model_config),
    )


def make_cnn(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    return CNN(
        num_outputs=num_outputs,
        channels=_positive_ints("model.channels", model_config.get("channels", (16, 32))),
        kernel_size=_positive_ints("model.kernel_size", model_config.get("kernel_size", 3))[0],
        strides=_positive_ints("model.strides", model_config.get("strides", 1))[0],
        dense_size=_positive_ints("model.dense_size", model_config.get("dense_size", 64))[0],
        activation=_activation(model_config),
        dropout_rate=_dropout(model_config),
    )


MODELS: dict[str, Callable[[ConfigDict, int], nn.Module]] = {
    "linear": make_linear,
    "mlp": make_mlp,
    "cnn": make_cnn,
}


def build_model(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    """The model named by ``model_config.name``, validated, with ``num_outputs`` outputs."""
    name = model_config.get("name")
    if name not in MODELS:
        raise ConfigError("model.name", name, f"one of {sorted(MODELS)}")
    return MODELS[name](model_config, num_outputs)
