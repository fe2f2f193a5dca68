"""Flax models found by name: linear, MLP, a small 1-D/2-D CNN and an attention classifier.

Every model maps a batch ``(B, *input_shape)`` to outputs ``(B, num_outputs)`` and
takes ``train`` to switch dropout on. Parameters are plain pytrees (linen's
functional ``init``/``apply``) so that they vmap over seeds, shard and checkpoint.
The attention classifier has two ablation switches: ``attention`` (drop the
self-attention block) and ``freeze_embeddings`` (keep the patch and positional
embeddings at their initial values).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from negres import fields
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


CONV_IMPLS = ("auto", "lax", "matmul")


def _same_padding(length: int, kernel: int, stride: int) -> tuple[int, tuple[int, int]]:
    """Output length and ``(low, high)`` padding of a ``'SAME'`` convolution, as XLA pads."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return out, (total // 2, total - total // 2)


class MatmulConv(nn.Module):
    """``nn.Conv`` with ``'SAME'`` padding, computed as one matmul of unfolded patches.

    ``(B, *spatial, C)`` -> ``(B, *ceil(spatial / strides), features)``, with the kernel
    ``(*kernel_size, C, features)`` and bias ``(features,)`` of ``nn.Conv``: the same
    parameters give the same outputs (to float rounding). It exists because XLA's CPU
    backend runs a convolution inside a loop (the training scan) far slower than a dot.
    """

    features: int
    kernel_size: tuple[int, ...]
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        spatial = x.shape[1:-1]
        outs, pads = zip(*(_same_padding(n, k, self.strides)
                           for n, k in zip(spatial, self.kernel_size, strict=True)), strict=True)
        padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        stride = self.strides
        # One strided slice per kernel offset, in the kernel's (rows, cols) order.
        columns = [
            padded[(slice(None),
                    *(slice(o, o + (n - 1) * stride + 1, stride) for o, n in zip(
                        offset, outs, strict=True)), slice(None))]
            for offset in itertools.product(*(range(k) for k in self.kernel_size))
        ]
        patches = jnp.stack(columns, axis=-2)  # (B, *outs, prod(kernel_size), C)
        patches = patches.reshape((*patches.shape[:-2], -1))
        return patches @ kernel.reshape((-1, self.features)) + bias


def conv_impl_for(conv_impl: str, platform: str | None = None) -> str:
    """The convolutions ``conv_impl`` means on ``platform`` (default: JAX's default
    backend): ``"auto"`` is ``"matmul"`` on a CPU, where XLA runs a convolution inside the
    training scan 5-25x slower than the same product of unfolded patches (measured in
    docs/performance.md), and ``"lax"`` elsewhere, where native convolutions are the
    fast ones."""
    if conv_impl != "auto":
        return conv_impl
    platform = jax.default_backend() if platform is None else platform
    return "matmul" if platform == "cpu" else "lax"


class CNN(nn.Module):
    """Convolutions (1-D for ``(L, C)`` inputs, 2-D for ``(H, W, C)``), then a dense head.

    ``conv_impl`` picks how the convolutions are computed, not what: ``"lax"``
    (``nn.Conv``), ``"matmul"`` (:class:`MatmulConv`, the same parameters and outputs,
    5-25x faster in XLA's CPU training loop), or ``"auto"``: ``"matmul"`` when the model
    is traced for a CPU, ``"lax"`` (native convolutions) for a GPU or TPU
    (:func:`conv_impl_for`).
    """

    num_outputs: int
    channels: Sequence[int] = (16, 32)
    kernel_size: int = 3
    strides: int = 1
    dense_size: int = 64
    activation: str = "relu"
    dropout_rate: float = 0.0
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        window = (self.kernel_size,) * (x.ndim - 2)
        h = x
        impl = conv_impl_for(self.conv_impl)
        for i, c in enumerate(self.channels):
            if impl == "matmul":
                # Named as nn.Conv names itself, so both give the same parameter tree.
                h = MatmulConv(c, window, self.strides, name=f"Conv_{i}")(h)
            else:
                h = nn.Conv(c, window, strides=self.strides)(h)
            h = act(h)
        h = h.reshape((h.shape[0], -1))
        h = act(nn.Dense(self.dense_size)(h))
        if self.dropout_rate > 0:
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(self.num_outputs)(h)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: a convolution with kernel = stride = ``patch_size``,
    computed as one matmul of the flattened patches.

    ``(B, L, C)`` -> ``(B, L / p, D)`` or ``(B, H, W, C)`` -> ``(B, H / p * W / p, D)``.
    The kernel ``(p, ..., p, C, D)`` and bias ``(D,)`` are declared here (rather than
    through ``nn.Conv``) so that ``frozen`` can stop the gradient of the parameters.
    """

    embed_dim: int
    patch_size: int
    frozen: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spatial_dims = x.ndim - 2
        window = (self.patch_size,) * spatial_dims
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (*window, x.shape[-1], self.embed_dim)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.embed_dim,))
        if self.frozen:
            kernel, bias = jax.lax.stop_gradient(kernel), jax.lax.stop_gradient(bias)
        # A conv with kernel = stride is a matmul of each flattened patch: written so, since
        # XLA's CPU convolution runs ~20x slower inside the training scan's loop than a dot.
        p, b = self.patch_size, x.shape[0]
        if spatial_dims == 1:
            patches = x.reshape((b, x.shape[1] // p, p * x.shape[2]))
        else:
            h_, w_, c = x.shape[1:]
            patches = x.reshape((b, h_ // p, p, w_ // p, p, c)).transpose((0, 1, 3, 2, 4, 5))
            patches = patches.reshape((b, (h_ // p) * (w_ // p), p * p * c))
        # Patch features flatten in (rows, cols, channels) order, as the kernel's HWIO does.
        h = patches @ kernel.reshape((-1, self.embed_dim))
        return (h + bias).reshape((x.shape[0], -1, self.embed_dim))


class AttentionClassifier(nn.Module):
    """Patch tokens, one optional self-attention block, a token-wise MLP block, a linear head.

    ``h = patch_embed(x) + pos_embed``; if ``attention``:
    ``h = h + MultiHeadDotProductAttention(LayerNorm(h))``; then
    ``h = h + Dense(act(Dense(LayerNorm(h))))`` (dropout on that branch when training);
    mean over tokens, ``LayerNorm``, ``Dense(num_outputs)``. Inputs are ``(B, L, C)``
    signals or ``(B, H, W, C)`` images whose lengths ``patch_size`` divides.

    Top-level parameters, input side first: ``patch_embed`` (``kernel``, ``bias``),
    ``pos_embed`` ``(T, embed_dim)``, ``attention_norm`` and ``attention`` (only when
    ``attention``), ``mlp_norm``, ``mlp_hidden``, ``mlp_out``, ``head_norm``, ``head``.
    ``attention=False`` creates no attention parameters at all.

    ``freeze_embeddings`` gives ``patch_embed`` and ``pos_embed`` zero gradient, so an
    optimizer without weight decay leaves them at their initial values (one with
    decoupled weight decay, e.g. ``adamw``, still shrinks them).
    """

    num_outputs: int
    patch_size: int = 4
    embed_dim: int = 32
    num_heads: int = 4
    mlp_dim: int = 64
    attention: bool = True
    freeze_embeddings: bool = False
    activation: str = "gelu"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        _check_patches(self.patch_size, x.shape[1:])
        act = ACTIVATIONS[self.activation]
        h = PatchEmbed(
            self.embed_dim, self.patch_size, frozen=self.freeze_embeddings, name="patch_embed"
        )(x)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), h.shape[1:])
        if self.freeze_embeddings:
            # Stop the gradient of the parameters, not of the activations: stopping it on
            # the embedded tokens would also cut d(output)/dx, which saliency needs; on the
            # parameters it removes only d(loss)/d(embedding), and d/dx still flows.
            pos = jax.lax.stop_gradient(pos)
        h = h + pos
        if self.attention:
            y = nn.LayerNorm(name="attention_norm")(h)
            h = h + nn.MultiHeadDotProductAttention(
                self.num_heads, deterministic=True, name="attention"
            )(y)
        y = nn.LayerNorm(name="mlp_norm")(h)
        y = act(nn.Dense(self.mlp_dim, name="mlp_hidden")(y))
        y = nn.Dense(self.embed_dim, name="mlp_out")(y)
        if self.dropout_rate > 0:
            y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        h = h + y
        h = nn.LayerNorm(name="head_norm")(h.mean(axis=1))
        return nn.Dense(self.num_outputs, name="head")(h)


def _check_patches(patch_size: int, input_shape: Sequence[int]) -> None:
    """Raise unless ``input_shape`` is ``(L, C)`` or ``(H, W, C)`` with patch-divisible lengths."""
    input_shape = tuple(input_shape)
    if len(input_shape) not in (2, 3):
        raise ConfigError(
            "model.name", "attention",
            f"a model for (L, C) or (H, W, C) inputs; the input shape is {input_shape}",
        )
    spatial = input_shape[:-1]
    if any(length % patch_size for length in spatial):
        common = math.gcd(*spatial)
        divisors = [d for d in range(1, common + 1) if common % d == 0]
        raise ConfigError(
            "model.patch_size", patch_size,
            f"a divisor of every length {spatial} of the input shape {input_shape}: "
            f"one of {divisors}",
        )


def make_linear(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    return Linear(num_outputs=num_outputs)


def make_mlp(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    return MLP(
        num_outputs=num_outputs,
        hidden_sizes=tuple(model_config.hidden_sizes),
        activation=model_config.activation,
        dropout_rate=float(model_config.dropout_rate),
    )


def make_cnn(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    return CNN(
        num_outputs=num_outputs,
        channels=tuple(model_config.channels),
        kernel_size=model_config.kernel_size,
        strides=model_config.strides,
        dense_size=model_config.dense_size,
        activation=model_config.activation,
        dropout_rate=float(model_config.dropout_rate),
        conv_impl=model_config.conv_impl,
    )


def make_attention(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    embed_dim, num_heads = model_config.embed_dim, model_config.num_heads
    if embed_dim % num_heads:
        raise ConfigError(
            "model.num_heads", num_heads,
            f"a positive integer that divides model.embed_dim={embed_dim}",
        )
    return AttentionClassifier(
        num_outputs=num_outputs,
        patch_size=model_config.patch_size,
        embed_dim=embed_dim,
        num_heads=num_heads,
        mlp_dim=model_config.mlp_dim,
        attention=model_config.attention,
        freeze_embeddings=model_config.freeze_embeddings,
        activation=model_config.activation,
        dropout_rate=float(model_config.dropout_rate),
    )


# Models that are chains of Dense layers and elementwise activations: what DeepLIFT's rescale
# rule (negres.measures.deeplift) takes.
DENSE_CHAIN_MODELS = ("linear", "mlp")

MODELS: dict[str, Callable[[ConfigDict, int], nn.Module]] = {
    "linear": make_linear,
    "mlp": make_mlp,
    "cnn": make_cnn,
    "attention": make_attention,
}


def _positive(name: str, default: Any, doc: str) -> fields.Field:
    return fields.integer(name, default, doc, minimum=1, maximum=1 << 20)


def _widths(name: str, default: tuple[int, ...], doc: str) -> fields.Field:
    return fields.sequence(name, default, doc, lambda v: fields.is_int_in(v, 1, 1 << 20),
                           "positive integers", min_len=1)


# The model's name, one of the registry's (MODELS is the one place a name is written).
NAME_FIELD = fields.choice("name", "mlp", " | ".join(MODELS), MODELS)
# Every model's fields in one section (a study may sweep models); each reads its own.
FIELDS = (
    NAME_FIELD,
    _widths("hidden_sizes", (64,), "mlp: widths of the hidden layers"),
    fields.choice("activation", "relu", " | ".join(ACTIVATIONS), ACTIVATIONS),
    fields.number("dropout_rate", 0.0, "mlp/cnn/attention: dropout after hidden layers, "
                  "per-seed masks", 0.0, 1.0, high_open=True),
    _widths("channels", (16, 32), "cnn: channels of the convolutions"),
    _positive("kernel_size", 3, "cnn: kernel width (and height for images)"),
    _positive("strides", 1, "cnn: stride of every convolution"),
    _positive("dense_size", 64, "cnn: width of the dense layer after the convolutions"),
    fields.choice("conv_impl", "auto", "cnn: auto (matmul on CPU, lax elsewhere) | lax "
                  "(nn.Conv) | matmul (unfolded patches; same numbers)", CONV_IMPLS),
    _positive("patch_size", 4, "attention: patch side of the patch embedding"),
    _positive("embed_dim", 32, "attention: token width"),
    _positive("num_heads", 4, "attention: heads; must divide embed_dim"),
    _positive("mlp_dim", 64, "attention: hidden width of the token-wise MLP"),
    fields.boolean("attention", True, "attention: False removes the self-attention block"),
    fields.boolean("freeze_embeddings", False,
                   "attention: keep patch/position embeddings at init"),
)


DEFAULTS = {f.name: f.default for f in FIELDS}


def build_model(model_config: ConfigDict, num_outputs: int) -> nn.Module:
    """The model named by ``model_config.name``, checked against :data:`FIELDS` and
    completed with their defaults, with ``num_outputs`` outputs."""
    name = model_config.get("name")
    NAME_FIELD.check(name, "model")  # no default here: a model config names its model
    return MODELS[name](fields.completed(model_config, FIELDS, "model"), num_outputs)


def check_model_input(model_config: ConfigDict, input_shape: Sequence[int]) -> None:
    """Raise :class:`ConfigError` when the model of ``model_config`` cannot take ``input_shape``.

    Only the attention model constrains the input: it needs ``(L, C)`` or ``(H, W, C)``
    with every length divisible by ``model.patch_size``. Other models pass.

    Args:
      model_config: the ``model`` part of the config.
      input_shape: the shape of one example, without the batch axis.
    """
    if model_config.get("name") == "attention":
        _check_patches(model_config.get("patch_size", DEFAULTS["patch_size"]), input_shape)
