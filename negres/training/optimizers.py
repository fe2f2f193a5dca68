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

from negres.errors import ConfigError

# Hyperparameters that change numbers but not the compiled graph.
VMAPPABLE_HYPERPARAMS = ("learning_rate", "weight_decay")


def _adam(c: ConfigDict) -> Callable[..., optax.GradientTransformation]:
    return lambda learning_rate, weight_decay: optax.adam(learning_rate)


def _adamw(c: ConfigDict) -> Callable[..., optax.GradientTransformation]:
    return lambda learning_rate, weight_decay: optax.adamw(learning_rate, weight_decay=weight_decay)


def _sgd(c: ConfigDict) -> Callable[..., optax.GradientTransformation]:
    momentum = c.get("momentum", 0.0)
    return lambda learning_rate, weight_decay: optax.sgd(
        learning_rate, momentum=momentum if momentum > 0 else None
    )


OPTIMIZERS: dict[str, Callable[[ConfigDict], Callable[..., optax.GradientTransformation]]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


def hyperparams_of(optimizer_config: ConfigDict) -> dict[str, float]:
    """The values of :data:`VMAPPABLE_HYPERPARAMS` in ``optimizer_config``."""
    return {
        "learning_rate": float(optimizer_config.get("learning_rate")),
        "weight_decay": float(optimizer_config.get("weight_decay", 0.0)),
    }


def build_optimizer(optimizer_config: ConfigDict) -> optax.GradientTransformation:
    """The optimizer named by ``optimizer_config.name``, with optional gradient clipping.

    Its state holds ``hyperparams`` (``learning_rate``, ``weight_decay``) that
    :func:`negres.train` can set per seed (``hyperparams=`` or ``grid=``).
    """
    name = optimizer_config.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer.name", name, f"one of {sorted(OPTIMIZERS)}")
    lr = optimizer_config.get("learning_rate")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError("optimizer.learning_rate", lr, "a number > 0")
    momentum = optimizer_config.get("momentum", 0.0)
    if not 0.0 <= momentum < 1.0:
        raise ConfigError("optimizer.momentum", momentum, "a number in [0, 1)")
    weight_decay = optimizer_config.get("weight_decay", 0.0)
    if weight_decay < 0:
        raise ConfigError("optimizer.weight_decay", weight_decay, "a number >= 0")
    clip = optimizer_config.get("grad_clip_norm", 0.0)
    if clip < 0:
        raise ConfigError("optimizer.grad_clip_norm", clip, "a number >= 0 (0 turns clipping off)")
    base = OPTIMIZERS[name](optimizer_config)

    def factory(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
        transform = base(learning_rate, weight_decay)
        if clip > 0:
            transform = optax.chain(optax.clip_by_global_norm(clip), transform)
        return transform

    return optax.inject_hyperparams(factory)(**hyperparams_of(optimizer_config))
