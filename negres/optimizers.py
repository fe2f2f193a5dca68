"""Optax optimizers found by name from the config."""

from __future__ import annotations

from collections.abc import Callable

import optax
from ml_collections import ConfigDict

from negres.errors import ConfigError


def _adam(c: ConfigDict) -> optax.GradientTransformation:
    return optax.adam(c.learning_rate)


def _adamw(c: ConfigDict) -> optax.GradientTransformation:
    return optax.adamw(c.learning_rate, weight_decay=c.get("weight_decay", 1e-4))


def _sgd(c: ConfigDict) -> optax.GradientTransformation:
    momentum = c.get("momentum", 0.0)
    return optax.sgd(c.learning_rate, momentum=momentum if momentum > 0 else None)


OPTIMIZERS: dict[str, Callable[[ConfigDict], optax.GradientTransformation]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


def build_optimizer(optimizer_config: ConfigDict) -> optax.GradientTransformation:
    """The optimizer named by ``optimizer_config.name``, with optional gradient clipping."""
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
    transform = OPTIMIZERS[name](optimizer_config)
    clip = optimizer_config.get("grad_clip_norm", 0.0)
    if clip < 0:
        raise ConfigError("optimizer.grad_clip_norm", clip, "a number >= 0 (0 turns clipping off)")
    if clip > 0:
        transform = optax.chain(optax.clip_by_global_norm(clip), transform)
    return transform
