"""The open training contract: what a user hands negres to train one seed.

negres owns the seed axis; the user owns what one seed does. A :class:`SeedProgram` is
a NamedTuple of pure per-seed functions, in the spirit of optax's ``(init, update)``
pairs and PureJaxRL's ``make_train``:

* ``init(key, batch, hyper) -> state``: the seed's whole training state (any pytree)
  from its key ``(2,)``, an example batch and its hyperparameters;
* ``step(state, batch, rngs, hyper) -> (state, metrics)``: one update on one batch;
  ``rngs`` maps each stream named in ``streams`` to this step's key, a pure function of
  ``(seed, stream, step)``; ``metrics`` is a dict of scalars (``"loss"`` is checked for
  divergence);
* ``evaluate(state, batch, hyper) -> metrics``: optional, metrics on a whole evaluation
  set, taken at every curve point.

Most users do not write a step: :func:`loss_program` builds one from an ``init``, a
``loss(params, model_state, batch, rngs) -> (loss, (model_state, aux))`` and any optax
transformation; :mod:`negres.training.linen` and :mod:`negres.training.nnx` build those
from flax modules. Whether the functions given to them take ``hyper`` is declared with
``hyper=True``, never guessed from their signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from negres.errors import ArgumentError
from negres.fields import real_numbers
from negres.training.optimizers import check_hyperparameter_range

Batch = Any  # any pytree of arrays whose leaves share their leading (example) axis
Hyper = Mapping[str, jax.Array]  # per-seed scalars: one grid point's hyperparameters
Metrics = dict[str, jax.Array]  # scalar metrics of one seed


class SeedProgram(NamedTuple):
    """One seed's training, as pure functions; negres lifts them over seeds.

    Attributes:
      init: ``(key (2,), batch, hyper) -> state``.
      step: ``(state, batch, rngs {stream: key}, hyper) -> (state, metrics {name: ()})``.
      evaluate: ``(state, batch, hyper) -> metrics {name: ()}`` on a whole evaluation set,
        or ``None``.
      streams: names of the random streams ``step`` receives (e.g. ``("dropout",)``).
      name: what identifies the program across calls (layout timings are shared between
        programs of one name and data shape); ``""``: this object only.
      reads_hyper: whether the functions read hyperparameters of their own from ``hyper``
        (a grid's label smoothing, ...). ``False`` (what :func:`loss_program` and the flax
        programs build without ``hyper=True``): only an optimizer's injected
        hyperparameters may vary per seed, and :func:`negres.train` refuses any other grid
        or hyperparams name before compiling, saying so.
    """

    init: Callable[[jax.Array, Batch, Hyper], Any]
    step: Callable[[Any, Batch, Mapping[str, jax.Array], Hyper], tuple[Any, Metrics]]
    evaluate: Callable[[Any, Batch, Hyper], Metrics] | None = None
    streams: tuple[str, ...] = ()
    name: str = ""
    reads_hyper: bool = True


class LossState(NamedTuple):
    """The training state of a :func:`loss_program`: every leaf ``(S, ...)`` once stacked.

    Attributes:
      params: what the optimizer updates.
      model_state: what the loss carries from step to step (BatchNorm statistics, ...);
        ``{}`` when there is none.
      opt_state: the optax state.
    """

    params: Any
    model_state: Any
    opt_state: Any


def as_optimizer(
    optimizer: optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    hyperparams: Mapping[str, float] | None,
) -> optax.GradientTransformation:
    """An optax transformation from a transformation or a factory.

    A factory (``optax.adam``, or a function of its hyperparameters returning a
    transformation) is wrapped in ``optax.inject_hyperparams`` with ``hyperparams``, so
    each of its numeric arguments lives in the optimizer state and may vary per seed.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if hyperparams:
            raise ArgumentError(
                "hyperparams", dict(hyperparams),
                "empty when optimizer is already a transformation (pass the factory, e.g. "
                "optimizer=optax.adam, hyperparams={'learning_rate': 1e-3})")
        return optimizer
    if not callable(optimizer):
        raise ArgumentError("optimizer", type(optimizer).__name__,
                            "an optax.GradientTransformation or a function returning one")
    for name, value in dict(hyperparams or {}).items():
        if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value):
            continue  # per-seed arrays are checked where they are laid out
        argument = f"hyperparams[{name!r}]"
        check_hyperparameter_range(argument, name, value,
                                   real_numbers(argument, value, "a finite real number"))
    try:
        return optax.inject_hyperparams(optimizer)(**dict(hyperparams or {}))
    except TypeError as e:
        raise ArgumentError("hyperparams", dict(hyperparams or {}),
                            f"arguments the optimizer factory takes ({e})") from None


def _hyperparam_paths(opt_state: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Name -> key paths of the injected hyperparameters anywhere in ``opt_state``."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        names = [getattr(k, "name", getattr(k, "key", None)) for k in path]
        for i, name in enumerate(names[:-1]):
            if name == "hyperparams" and isinstance(names[i + 1], str):
                found.setdefault(names[i + 1], []).append(path)
    return found


def injected_hyperparams(opt_state: Any) -> frozenset[str]:
    """The names of the hyperparameters injected anywhere in ``opt_state`` (those a
    factory optimizer wrapped by :func:`as_optimizer` keeps in its state)."""
    return frozenset(_hyperparam_paths(opt_state))


def set_hyperparams(opt_state: Any, hyper: Mapping[str, jax.Array]) -> Any:
    """``opt_state`` with each injected hyperparameter named in ``hyper`` set to its value.

    Names the optimizer does not inject are left to the loss.
    """
    paths = _hyperparam_paths(opt_state)
    targets = {path: name for name, found in paths.items() if name in hyper for path in found}
    if not targets:
        return opt_state

    def replace(path: tuple[Any, ...], leaf: Any) -> Any:
        if path in targets:
            return jnp.asarray(hyper[targets[path]], dtype=jnp.asarray(leaf).dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(replace, opt_state)


def loss_program(
    init: Callable[..., tuple[Any, Any]],
    loss: Callable[..., tuple[jax.Array, tuple[Any, Metrics]]],
    optimizer: optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    *,
    hyperparams: Mapping[str, float] | None = None,
    evaluate: Callable[..., Metrics] | None = None,
    streams: tuple[str, ...] = ("dropout",),
    name: str = "",
    hyper: bool = False,
) -> SeedProgram:
    """A :class:`SeedProgram` that minimises ``loss`` with an optax optimizer.

    Args:
      init: ``(key (2,), batch) -> (params, model_state)`` (``(key, batch, hyper)`` with
        ``hyper=True``); ``model_state`` is ``{}`` for a model without one.
      loss: ``(params, model_state, batch, rngs) -> (loss (), (model_state, aux))`` (with
        ``hyper=True``, ``hyper`` comes last) where ``aux`` is a dict of scalar metrics
        (e.g. ``{"accuracy": ...}``).
      optimizer: any optax transformation (chains, schedules, ``inject_hyperparams``), or a
        factory such as ``optax.adam`` whose numeric arguments then may vary per seed.
      hyperparams: the factory's arguments (e.g. ``{"learning_rate": 1e-3}``).
      evaluate: ``(params, model_state, batch) -> metrics`` (``hyper`` last with
        ``hyper=True``) on an evaluation set; ``None``: no evaluation curves.
      streams: the named random streams ``loss`` receives in ``rngs``.
      name: see :class:`SeedProgram`.
      hyper: whether ``init``, ``loss`` and ``evaluate`` take ``hyper`` as their last
        argument: this seed's values of every grid and hyperparams name, with
        ``hyper["seed_index"]`` and ``hyper["grid_point"]``. Declared, not read from their
        signatures. ``False``: only the optimizer's injected hyperparameters may vary per
        seed (:func:`negres.train` refuses other names before compiling).

    Returns:
      A program whose state is a :class:`LossState`. Grid names among the optimizer's
      injected hyperparameters are set in its state; with ``hyper=True`` every grid name
      reaches the functions.
    """
    if not isinstance(hyper, bool):
        raise ArgumentError("hyper", hyper, "True (init, loss and evaluate take hyper as "
                            "their last argument) or False (they do not)")
    transform = as_optimizer(optimizer, hyperparams)

    def init_state(key: jax.Array, batch: Batch, hyper_values: Hyper) -> LossState:
        params, model_state = init(key, batch, hyper_values) if hyper else init(key, batch)
        opt_state = set_hyperparams(transform.init(params), hyper_values)
        return LossState(params, model_state, opt_state)

    def step(state: LossState, batch: Batch, rngs: Mapping[str, jax.Array],
             hyper_values: Hyper) -> tuple[LossState, Metrics]:
        def objective(params: Any) -> tuple[jax.Array, tuple[Any, Metrics]]:
            args = (params, state.model_state, batch, rngs)
            return loss(*args, hyper_values) if hyper else loss(*args)

        (value, (model_state, aux)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params)
        updates, opt_state = transform.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return LossState(params, model_state, opt_state), {"loss": value, **dict(aux)}

    evaluate_state = None
    if evaluate is not None:
        def evaluate_state(state: LossState, batch: Batch, hyper_values: Hyper) -> Metrics:
            args = (state.params, state.model_state, batch)
            return dict(evaluate(*args, hyper_values) if hyper else evaluate(*args))

    return SeedProgram(init=init_state, step=step, evaluate=evaluate_state,
                       streams=tuple(streams), name=name, reads_hyper=hyper)
