"""Flax NNX modules as :class:`~negres.training.contract.SeedProgram`\\ s.

An NNX module is a Python object that owns its arrays; negres needs one seed's state as a
pytree of plain numeric arrays, which it vmaps over seeds, shards and checkpoints whole.
So the module is taken apart into:

* its graphdef (structure and static attributes), the same for every seed: found once,
  from an abstract build (``jax.eval_shape``, no arrays computed), when the program is
  made, and closed over;
* ``params``: its ``nnx.Param`` variables, what the optimizer updates;
* ``model_state``: every other variable (``nnx.BatchStat`` statistics, the keys and counts
  of its random streams, your own ``nnx.Variable`` subclasses), updated by training and
  read, not updated, by evaluation.

``params`` and ``model_state`` are nested dicts keyed like the module's attributes, as
``nnx.to_pure_dict`` gives them (``params["linear"]["kernel"]``, ``{}`` when empty); once
trained every leaf has the seed axis first. NNX random keys are typed (``key<fry>``) and
do not convert to NumPy, which negres does to gather states on the host and to check and
save them; so they are carried as their raw ``uint32`` data (``jax.random.key_data``,
ignored by the divergence check like every integer leaf) and wrapped back when the module
is rebuilt.

Each step rebuilds the module from the graphdef and the seed's arrays, puts it in training
mode (``model.train()``), reseeds every stream named in ``streams`` with negres's key for
``(seed, stream, step)`` (``nnx.reseed``), and calls it. A stream's draws therefore do not
depend on how many draws earlier steps made: a seed trained alone draws what it draws
beside other seeds, and a resumed run draws what an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from negres.errors import ArgumentError
from negres.seeds import stream_key
from negres.training.contract import (
    Batch,
    LossState,
    Metrics,
    SeedProgram,
    loss_program,
)
from negres.training.linen import Inputs, OutputLoss, output_loss, pick_inputs

# Where a variable sits in its module: attribute names and list indices, e.g.
# ("layers", 0, "kernel").
Path = tuple[str | int, ...]
MakeModel = Callable[[nnx.Rngs], nnx.Module]

# nnx.reseed's own keyword arguments: streams of these names cannot be passed to it.
_RESERVED_STREAMS = frozenset({"graph", "policy"})


class _Layout(NamedTuple):
    """What every seed's module shares: found once, from an abstract build.

    Attributes:
      graphdef: the module's structure and static attributes.
      paths: every leaf of the module, in the graphdef's leaf order.
      params: the paths of its ``nnx.Param`` leaves.
      keys: the paths of its typed random keys -> their implementation (``threefry2x32``).
      rngs: the paths of its random-stream leaves (keys and counts).
      carried: every path -> its shape and dtype as carried (keys as raw ``uint32`` data).
    """

    graphdef: Any
    paths: tuple[Path, ...]
    params: frozenset[Path]
    keys: Mapping[Path, str]
    rngs: frozenset[Path]
    carried: Mapping[Path, jax.ShapeDtypeStruct]


def _value(leaf: Any) -> Any:
    """The array inside a module leaf (a ``Variable``, or an array attribute)."""
    return leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf


def _is_key(value: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(value), jax.dtypes.prng_key)


def _plain(value: Any) -> Any:
    """``value`` as negres carries it: a typed key as its raw ``uint32`` data."""
    return jax.random.key_data(value) if _is_key(value) else value


def _nest(flat: Mapping[Path, Any]) -> dict[Any, Any]:
    """``{path: leaf}`` as nested dicts, like ``nnx.to_pure_dict``; ``{}`` when empty."""
    nested: dict[Any, Any] = {}
    for path, leaf in flat.items():
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = leaf
    return nested


def _flat(tree: Any) -> dict[Path, Any]:
    """The inverse of :func:`_nest`: ``{path: leaf}`` of a nested dict of arrays."""
    return {tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _build(make_model: MakeModel, key: jax.Array, streams: tuple[str, ...]) -> nnx.Module:
    """One seed's freshly initialised module: ``params`` draws from the seed's ``init``
    stream and each named stream starts from the seed's key for it."""
    keys = {"params": stream_key(key, "init")} | {s: stream_key(key, s) for s in streams}
    try:
        model = make_model(nnx.Rngs(**keys))
    except (KeyError, AttributeError) as e:
        if "No RngStream named" not in str(e):
            raise
        raise ArgumentError("streams", streams,
                            f"every random stream the module takes from its Rngs ({e})") from e
    if not isinstance(model, nnx.Module):
        raise ArgumentError("make_model", make_model,
                            f"a function of nnx.Rngs returning a flax.nnx.Module (it returned "
                            f"a {type(model).__name__})")
    return model


def _layout(make_model: MakeModel, streams: tuple[str, ...]) -> _Layout:
    """The module's :class:`_Layout`, from one abstract build (nothing is computed)."""
    if not callable(make_model):
        raise ArgumentError("make_model", make_model,
                            "a function of nnx.Rngs returning a flax.nnx.Module")
    found: list[_Layout] = []

    def build() -> None:
        # Inside the trace the keys are tracers, whose implementation can be read.
        model = _build(make_model, jax.random.PRNGKey(0), streams)
        graphdef, flat = nnx.flatten(model, graph=True)
        leaves = list(flat)
        found.append(_Layout(
            graphdef=graphdef,
            paths=tuple(path for path, _ in leaves),
            params=frozenset(path for path, leaf in leaves if isinstance(leaf, nnx.Param)),
            keys={path: str(jax.random.key_impl(_value(leaf))) for path, leaf in leaves
                  if _is_key(_value(leaf))},
            rngs=frozenset(path for path, leaf in leaves if isinstance(leaf, nnx.RngState)),
            carried={path: jax.ShapeDtypeStruct(jnp.shape(_plain(_value(leaf))),
                                                jnp.result_type(_plain(_value(leaf))))
                     for path, leaf in leaves},
        ))

    jax.eval_shape(build)
    return found[0]


def _take_apart(layout: _Layout, model: nnx.Module) -> tuple[dict, dict]:
    """``(params, model_state)`` of ``model`` as nested dicts of plain arrays.

    Variables the call added (``nnx.Intermediate``\\ s sown by ``self.sow``) are left out:
    they are outputs of one call, not state carried to the next.
    """
    _, flat = nnx.flatten(model, graph=True)
    leaves = dict(flat)
    known = set(layout.paths)
    added = sorted(str(p) for p, leaf in leaves.items()
                   if p not in known and not isinstance(leaf, nnx.Intermediate))
    missing = sorted(str(p) for p in known if p not in leaves)
    if added or missing:
        raise ValueError(
            f"the NNX module changed its variables when called (added {added}, removed "
            f"{missing}); negres carries a fixed set of arrays per seed: create every "
            "variable in the module's __init__")
    params = {p: _plain(_value(leaves[p])) for p in layout.paths if p in layout.params}
    rest = {p: _plain(_value(leaves[p])) for p in layout.paths if p not in layout.params}
    return _nest(params), _nest(rest)


def _rebuild(layout: _Layout, params: Any, model_state: Any) -> nnx.Module:
    """The module of one seed from its ``params`` and ``model_state`` (nested dicts)."""
    values = _flat(params) | _flat(model_state)
    missing = [p for p in layout.paths if p not in values]
    if missing:
        raise ValueError(f"params and model_state lack the module's variables {missing[:3]}"
                         f"{' ...' if len(missing) > 3 else ''}")
    leaves = [jax.random.wrap_key_data(values[p], impl=layout.keys[p]) if p in layout.keys
              else values[p] for p in layout.paths]
    return nnx.merge(layout.graphdef, leaves)


def _check_streams(streams: Any) -> tuple[str, ...]:
    if isinstance(streams, str) or not all(isinstance(s, str) and s for s in streams):
        raise ArgumentError("streams", streams, "a tuple of stream names, e.g. ('dropout',)")
    streams = tuple(streams)
    if _RESERVED_STREAMS & set(streams):
        raise ArgumentError("streams", streams,
                            f"names other than {sorted(_RESERVED_STREAMS)} (nnx.reseed's own "
                            "arguments)")
    return streams


def nnx_program(
    make_model: MakeModel,
    loss: OutputLoss,
    optimizer: optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    *,
    hyperparams: Mapping[str, float] | None = None,
    inputs: Inputs = "auto",
    streams: tuple[str, ...] = ("dropout",),
    name: str = "",
    hyper: bool = False,
) -> SeedProgram:
    """Train a flax NNX module on ``loss`` of its outputs, one program for every seed.

    Args:
      make_model: ``rngs -> module``: builds your ``nnx.Module`` from an ``nnx.Rngs`` with a
        ``params`` stream (the seed's ``init`` stream) and one stream per name in
        ``streams``, e.g. ``lambda rngs: MLP(64, 10, rngs=rngs)``. It must build the same
        structure every call (it is called once abstractly here, then once per seed).
      loss: ``(outputs, batch) -> loss`` or ``-> (loss, {metric: scalar})`` (``(outputs,
        batch, hyper)`` with ``hyper=True``), on one seed's outputs; also evaluates the
        model (in evaluation mode, ``model.eval()``) when ``eval_data`` is given.
      optimizer: any optax transformation, or a factory (``optax.adam``) with
        ``hyperparams``, whose numeric arguments may then vary over a grid.
      hyperparams: the factory's arguments.
      inputs: what the module is called on (see :func:`~negres.training.linen.pick_inputs`;
        default: ``x`` of an ``(x, y)`` tuple or an ``{"x": ..., ...}`` dict), a key or
        index of the batch, a function of it, or ``None`` for the batch itself.
      streams: the module's random streams (``nnx.Dropout`` uses ``"dropout"``); each is
        reseeded at every step with that step's key.
      name: see :class:`~negres.SeedProgram`.
      hyper: whether ``loss`` takes ``hyper`` (this seed's grid and hyperparams values) as
        its last argument: declared, not read from its signature. ``False``: only the
        optimizer's injected hyperparameters may vary per seed.

    Returns:
      A program whose state is a :class:`~negres.LossState`: ``params`` (the
      ``nnx.Param`` variables), ``model_state`` (every other variable, random keys as raw
      ``uint32`` data) and ``opt_state``, each a nested dict keyed like the module.
    """
    streams = _check_streams(streams)
    layout = _layout(make_model, streams)
    loss_of_outputs = output_loss(loss, hyper)

    def init(key: jax.Array, batch: Batch, values: Any) -> tuple[dict, dict]:
        # Only the arrays are kept: every seed is rebuilt from the first build's graphdef.
        return _take_apart(layout, _build(make_model, key, streams))

    def train_loss(params: Any, model_state: Any, batch: Batch,
                   rngs: Mapping[str, jax.Array], values: Any) -> tuple[jax.Array, Any]:
        model = _rebuild(layout, params, model_state)
        model.train()
        if rngs:
            # Every step starts each stream afresh from the key of (seed, stream, step);
            # "match_shape" also reseeds streams split for vmapped or scanned layers.
            nnx.reseed(model, graph=True, policy="match_shape", **rngs)
        outputs = model(pick_inputs(batch, inputs))
        value, metrics = loss_of_outputs(outputs, batch, values)
        _, model_state = _take_apart(layout, model)  # BatchNorm statistics updated
        return value, (model_state, metrics)

    def evaluate(params: Any, model_state: Any, batch: Batch, values: Any) -> Metrics:
        model = _rebuild(layout, params, model_state)
        model.eval()
        value, metrics = loss_of_outputs(model(pick_inputs(batch, inputs)), batch, values)
        return {"loss": value, **metrics}

    # The wrappers above always take hyper; whether the program reads names of its own
    # from it is what the user declared.
    return loss_program(init, train_loss, optimizer, hyperparams=hyperparams,
                        evaluate=evaluate, streams=streams, name=name,
                        hyper=True)._replace(reads_hyper=hyper)


def nnx_apply(make_model: MakeModel, *, streams: tuple[str, ...] = ("dropout",),
              ) -> Callable[[Any, Any], Any]:
    """One seed's deterministic forward pass ``(variables, x) -> outputs`` for evaluators.

    The module is rebuilt in evaluation mode (``model.eval()``: dropout off, BatchNorm on
    its running statistics) and called on ``x``. Lift it over seeds with
    :func:`negres.over_seeds` (``over_seeds(apply)(variables, x)``) or ``jax.vmap``.

    Args:
      make_model: the function given to :func:`nnx_program`.
      streams: the ``streams`` given to :func:`nnx_program` (the module is built with them).

    Returns:
      ``apply(variables, x)`` where ``variables`` is one seed's

      * ``{"params": params, "model_state": model_state}`` (e.g. ``{"params":
        result.params, "model_state": result.model_state}``, seed axis first when lifted);
      * or its :class:`~negres.LossState` (``result.state``; the optimizer state is unused);
      * or ``params`` alone, for a module whose only other state is random streams (which
        evaluation mode does not draw from; they get a fixed placeholder key). A module
        with BatchNorm statistics or other state needs the model state.
    """
    streams = _check_streams(streams)
    layout = _layout(make_model, streams)
    needed = [p for p in layout.paths if p not in layout.params and p not in layout.rngs]

    def placeholder_state() -> dict:
        if needed:
            raise ValueError(
                f"the model has state besides its params and random streams ({needed[:3]}, "
                "e.g. BatchNorm statistics): pass {'params': result.params, 'model_state': "
                "result.model_state} or result.state")
        return _nest({p: jnp.zeros(layout.carried[p].shape, layout.carried[p].dtype)
                      for p in layout.paths if p in layout.rngs})

    def apply_fn(variables: Any, x: Any) -> Any:
        if isinstance(variables, LossState):
            params, model_state = variables.params, variables.model_state
        elif isinstance(variables, Mapping) and set(variables) == {"params", "model_state"}:
            params, model_state = variables["params"], variables["model_state"]
        else:
            params, model_state = variables, placeholder_state()
        model = _rebuild(layout, params, model_state)
        model.eval()
        return model(x)

    return apply_fn


__all__ = ["nnx_apply", "nnx_program"]
