"""Optax optimizers found by name from the config.

Every optimizer is wrapped in ``optax.inject_hyperparams``, so its learning rate and
weight decay live in the optimizer state. That state carries the seed axis, so one
compiled call can train rows with different learning rates: conditions that differ only
in these values ride the vmapped axis instead of compiling and running one by one.
"""

from __future__ import annotations

from collections.abc import Callable

import optax
from ml_collections import ConfigDict

from negres import fields

# Hyperparameters that change numbers but not the compiled graph.
VMAPPABLE_HYPERPARAMS = ("learning_rate", "weight_decay")


def _adam(c: ConfigDict) -> Callable[..., optax.GradientTransformation]:
    return lambda learning_rate, weight_decay: optax.adam(learning_rate)


def _adamw(c: ConfigDict) -> Callable[..., optax.GradientTransformation]:
    return lambda learning_rate, weight_decay: optax.adamw(learning_rate, weight_decay=weight_decay)


def _sgd(c: ConfigDict) -> Callable[..., optax.GradientTransformation]:
    momentum = c.momentum
    return lambda learning_rate, weight_decay: optax.sgd(
        learning_rate, momentum=momentum if momentum > 0 else None
    )


OPTIMIZERS: dict[str, Callable[[ConfigDict], Callable[..., optax.GradientTransformation]]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


FIELDS = (
    fields.choice("name", "adam", "adam | adamw | sgd", tuple(OPTIMIZERS)),
    fields.number("learning_rate", 1e-2, "step size", 0.0, low_open=True),
    fields.number("momentum", 0.0, "sgd only; 0 is plain SGD", 0.0, 1.0, high_open=True),
    fields.number("weight_decay", 0.0, "adamw only: decoupled weight decay", 0.0),
    fields.number("grad_clip_norm", 0.0, "clip gradients to this global norm; 0 is off", 0.0),
)
DEFAULTS = {f.name: f.default for f in FIELDS}


def hyperparams_of(optimizer_config: ConfigDict) -> dict[str, float]:
    """The values of :data:`VMAPPABLE_HYPERPARAMS` in ``optimizer_config``."""
    return {name: float(optimizer_config.get(name, DEFAULTS[name]))
            for name in VMAPPABLE_HYPERPARAMS}


def build_optimizer(optimizer_config: ConfigDict) -> optax.GradientTransformation:
    """The optimizer named by ``optimizer_config.name``, with optional gradient clipping.

    Its state holds ``hyperparams`` (``learning_rate``, ``weight_decay``) that
    :func:`negres.train` can set per seed (``hyperparams=`` or ``grid=``).
    """
    config = fields.completed(optimizer_config, FIELDS, "optimizer")
    clip = config.grad_clip_norm
    base = OPTIMIZERS[config.name](config)

    def factory(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
        transform = base(learning_rate, weight_decay)
        if clip > 0:
            transform = optax.chain(optax.clip_by_global_norm(clip), transform)
        return transform

    return optax.inject_hyperparams(factory)(**hyperparams_of(config))
