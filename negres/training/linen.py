"""Flax linen modules as :class:`~negres.training.contract.SeedProgram`\\ s.

A linen module's variables split into ``params`` (what the optimizer updates) and every
other collection (``batch_stats``, ...), which becomes the per-seed model state, updated
by the training step and read, not updated, by evaluation. The module is told whether
it trains through its ``train`` argument, or ``deterministic`` (its negation), when its
``__call__`` has one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import optax

from negres.errors import ArgumentError
from negres.seeds import stream_key
from negres.training.contract import Batch, Metrics, SeedProgram, loss_program

# (outputs, batch) or (outputs, batch, hyper) -> loss, or (loss, {metric: scalar})
OutputLoss = Callable[..., Any]
Inputs = int | str | Callable[[Batch], Any] | None


def pick_inputs(batch: Batch, inputs: Inputs) -> Any:
    """What the model is called on.

    ``"auto"``: the first element of a ``(x, y, ...)`` tuple or list, the ``"x"`` entry of a
    dict, or a bare array itself; a key or index: ``batch[inputs]``; a function:
    ``inputs(batch)``; ``None``: the whole batch.
    """
    if inputs is None:
        return batch
    if callable(inputs):
        return inputs(batch)
    if inputs == "auto":
        if isinstance(batch, (tuple, list)):
            return batch[0]
        if isinstance(batch, Mapping):
            if "x" in batch:
                return batch["x"]
            raise ArgumentError("inputs", "auto", f"a key of the batch {sorted(batch)} or a "
                                "function of the batch (the batch has no 'x' entry)")
        return batch
    try:
        return batch[inputs]
    except (KeyError, IndexError, TypeError):
        raise ArgumentError("inputs", inputs, "a key or index of the batch, a function of it, "
                            "or None for the whole batch") from None


def mode_argument(module: nn.Module, train_argument: str | None) -> Callable[[bool], dict]:
    """``training -> keyword arguments`` telling ``module`` whether it trains.

    ``"auto"`` finds ``train`` or ``deterministic`` in the module's ``__call__``; ``None``
    passes nothing; any other string is passed as ``name=training``.
    """
    if train_argument == "auto":
        try:
            names = set(inspect.signature(type(module).__call__).parameters)
        except (TypeError, ValueError):
            names = set()
        if "train" in names:
            train_argument = "train"
        elif "deterministic" in names:
            return lambda training: {"deterministic": not training}
        else:
            train_argument = None
    if train_argument is None:
        return lambda training: {}
    if not isinstance(train_argument, str):
        raise ArgumentError("train_argument", train_argument,
                            "'auto', None or the name of the module's boolean argument")
    return lambda training: {train_argument: training}


def split_loss(value: Any) -> tuple[jax.Array, Metrics]:
    """A loss function's result as ``(loss, metrics)``: it may return the loss alone."""
    if isinstance(value, tuple):
        loss, metrics = value
        return loss, dict(metrics)
    return value, {}


def output_loss(loss: OutputLoss, hyper: bool
                ) -> Callable[[Any, Batch, Any], tuple[jax.Array, Metrics]]:
    """``loss(outputs, batch[, hyper])`` as ``(outputs, batch, hyper) -> (loss, metrics)``.

    ``hyper`` declares whether ``loss`` takes this seed's grid and hyperparams values as its
    last argument (never read from its signature); refused unless a bool."""
    if not isinstance(hyper, bool):
        raise ArgumentError("hyper", hyper, "True (the loss takes hyper as its last "
                            "argument) or False (it does not)")

    def call(outputs: Any, batch: Batch, values: Any) -> tuple[jax.Array, Metrics]:
        return split_loss(loss(outputs, batch, values) if hyper else loss(outputs, batch))

    return call


def linen_apply(module: nn.Module, *, train_argument: str | None = "auto",
                ) -> Callable[[Any, Any], Any]:
    """One seed's deterministic forward pass ``(variables, x) -> outputs`` for evaluators.

    ``variables`` is the params alone or a dict of collections with ``"params"`` (e.g.
    ``{"params": result.params, **result.model_state}``, lifted over seeds by the evaluator).
    """
    mode = mode_argument(module, train_argument)

    def apply_fn(variables: Any, x: Any) -> Any:
        if not (isinstance(variables, Mapping) and "params" in variables):
            variables = {"params": variables}
        return module.apply(variables, x, **mode(False))

    return apply_fn


def linen_program(
    module: nn.Module,
    loss: OutputLoss,
    optimizer: optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    *,
    hyperparams: Mapping[str, float] | None = None,
    inputs: Inputs = "auto",
    streams: tuple[str, ...] = ("dropout",),
    train_argument: str | None = "auto",
    name: str = "",
    hyper: bool = False,
) -> SeedProgram:
    """Train a linen ``module`` on ``loss`` of its outputs, one program for every seed.

    Args:
      module: any ``flax.linen.Module``; BatchNorm and other mutable collections are the
        per-seed model state.
      loss: ``(outputs, batch) -> loss`` or ``-> (loss, {metric: scalar})`` (``(outputs,
        batch, hyper)`` with ``hyper=True``); also evaluates the model (outputs in
        evaluation mode) when ``eval_data`` is given.
      optimizer: any optax transformation, or a factory (``optax.adam``) with
        ``hyperparams``, whose numeric arguments may then vary over a grid.
      hyperparams: the factory's arguments.
      inputs: what the module is called on (see :func:`pick_inputs`; default: ``x`` of an
        ``(x, y)`` tuple or an ``{"x": ..., ...}`` dict).
      streams: random streams passed to the module as ``rngs`` (each step's own key).
      train_argument: how the module is told it trains (see :func:`mode_argument`).
      name: see :class:`~negres.SeedProgram`.
      hyper: whether ``loss`` takes ``hyper`` (this seed's grid and hyperparams values) as
        its last argument: declared, not read from its signature. ``False``: only the
        optimizer's injected hyperparameters may vary per seed.
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError("module", type(module).__name__, "a flax.linen.Module")
    mode = mode_argument(module, train_argument)
    loss_of_outputs = output_loss(loss, hyper)

    def init(key: jax.Array, batch: Batch, values: Any) -> tuple[Any, Any]:
        rngs = {"params": stream_key(key, "init")} | {s: stream_key(key, s) for s in streams}
        variables = dict(module.init(rngs, pick_inputs(batch, inputs), **mode(False)))
        params = variables.pop("params", {})
        return params, variables

    def train_loss(params, model_state, batch, rngs, values):
        variables = {"params": params, **model_state}
        x = pick_inputs(batch, inputs)
        if model_state:
            outputs, updates = module.apply(variables, x, rngs=rngs, mutable=list(model_state),
                                            **mode(True))
            model_state = {**model_state, **updates}
        else:
            outputs = module.apply(variables, x, rngs=rngs, **mode(True))
        value, metrics = loss_of_outputs(outputs, batch, values)
        return value, (model_state, metrics)

    def evaluate(params, model_state, batch, values):
        outputs = module.apply({"params": params, **model_state}, pick_inputs(batch, inputs),
                               **mode(False))
        value, metrics = loss_of_outputs(outputs, batch, values)
        return {"loss": value, **metrics}

    # The wrappers above always take hyper; whether the program reads names of its own
    # from it is what the user declared.
    return loss_program(init, train_loss, optimizer, hyperparams=hyperparams,
                        evaluate=evaluate, streams=streams, name=name,
                        hyper=True)._replace(reads_hyper=hyper)
