"""Optax optimizers found by name from the config.

Every optimizer is wrapped in ``optax.inject_hyperparams``, so its learning rate and
weight decay live in the optimizer state. That state carries the seed axis, so one
compiled call can train rows with different learning rates: conditions that differ only
in these values ride the vmapped axis instead of compiling and running one by one.

:data:`OPTIMIZER_RANGES` holds the range optax's own contracts give a hyperparameter; the
config's fields here and the library's checks of ``grid=`` and ``hyperparams=``
(:func:`check_hyperparameter_range`) both read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optax
from ml_collections import ConfigDict

from negres import fields
from negres.errors import ArgumentError, ConfigError

# The range the optax optimizers' own contracts give a hyperparameter, by the name their
# factories take it under: (the interval, what it is).
OPTIMIZER_RANGES: dict[str, tuple[fields.Interval, str]] = {
    "learning_rate": (fields.Interval(0.0, low_open=True), "a step size"),
    "weight_decay": (fields.Interval(0.0), "a decay of the weights"),
    "momentum": (fields.Interval(0.0, 1.0, high_open=True), "the decay of the momentum"),
    "b1": (fields.Interval(0.0, 1.0, high_open=True), "the decay of the first moment"),
    "b2": (fields.Interval(0.0, 1.0, high_open=True), "the decay of the second moment"),
    "eps": (fields.Interval(0.0), "a small constant added to a denominator"),
    "eps_root": (fields.Interval(0.0), "a small constant added under a root"),
}


def check_hyperparameter_range(argument: str, name: str, values: Any,
                               array: np.ndarray) -> None:
    """Refuse values of the hyperparameter ``name`` outside the range its optimizer's
    contract gives (:data:`OPTIMIZER_RANGES`: a learning rate > 0, a decay in [0, 1), ...),
    naming ``argument``; ``array`` is ``values`` as numbers (:func:`negres.fields.real_numbers`).
    Names without a range are the program's own and pass."""
    if name not in OPTIMIZER_RANGES:
        return
    interval, meaning = OPTIMIZER_RANGES[name]
    bad = array[~interval.holds(array)]
    if bad.size:
        raise ArgumentError(argument, values,
                            f"numbers {interval.bounds} (optax's {name} is {meaning}; "
                            f"{float(bad[0]):g} is not)")


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


def _optax_field(name: str, default: float, doc: str) -> fields.Field:
    """A hyperparameter's field, in the range optax gives it (:data:`OPTIMIZER_RANGES`)."""
    return fields.bounded(name, default, doc, OPTIMIZER_RANGES[name][0])


FIELDS = (
    fields.choice("name", "adam", " | ".join(OPTIMIZERS), OPTIMIZERS),
    _optax_field("learning_rate", 1e-2, "step size"),
    _optax_field("momentum", 0.0, "sgd only; 0 is plain SGD"),
    _optax_field("weight_decay", 0.0, "adamw only: decoupled weight decay"),
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
    # A setting the named optimizer has no use for would silently do nothing.
    for name, owner in (("weight_decay", "adamw"), ("momentum", "sgd")):
        if config[name] > 0 and config.name != owner:
            raise ConfigError(f"optimizer.{name}", config[name],
                              f"0 with optimizer.name={config.name!r}: only {owner} uses it "
                              f"(set optimizer.name={owner!r})")
    clip = config.grad_clip_norm
    base = OPTIMIZERS[config.name](config)

    def factory(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
        transform = base(learning_rate, weight_decay)
        if clip > 0:
            transform = optax.chain(optax.clip_by_global_norm(clip), transform)
        return transform

    return optax.inject_hyperparams(factory)(**hyperparams_of(config))
