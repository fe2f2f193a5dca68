"""A run's fingerprint: what determines its numbers, so a resume into another run's checkpoints
is refused with a message naming what differs.

A fingerprint is a dict of components, each a short string:

* ``program.init``, ``program.step``, ``program.evaluate``: a hash of the function's jaxpr,
  traced on abstract inputs (shapes and dtypes only), with every constant it holds: the
  optimizer's hyperparameters and schedules (inlined as literals), closed-over arrays (a
  teacher's parameters, a frozen feature extractor);
* ``data``, ``eval_data``, ``init_state``: a hash of the pytree's structure and of each
  leaf's shape, dtype and bytes;
* ``settings.<name>``: the setting's JSON text, so that a refusal can show both values.

The per-seed values (seeds, hyperparameters, keys) are not in it: they are saved with the
state and compared there, one by one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

from negres.training.contract import Batch, SeedProgram
from negres.training.pipeline import is_random_access

# A hash per component: 128 bits are plenty to tell runs apart and keep the metadata short.
_DIGEST_BYTES = 16
# Records hashed from a random-access source: enough to tell another split, another
# shuffle or another preprocessing apart without reading a dataset of millions of records.
_SOURCE_SAMPLES = 16
# A setting's value longer than this is cut in a refusal, which stays one line.
_SHOWN_CHARS = 60
NONE = "none"

# An object's repr carries its address (``<function f at 0x7f...>``), which differs from one
# process to the next. JAX's printer already masks the digits as X, keeping their count, and
# the count itself may differ: both forms become one token.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-FX]+")


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=_DIGEST_BYTES)


def _stable_text(text: str) -> str:
    return _ADDRESS.sub(" at 0x?", text)


def _is_key_array(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _update_array(hasher: Any, value: Any) -> None:
    """Feeds ``value``'s dtype, shape and bytes to ``hasher``.

    blake2b reads about 1 GB/s: 200 MB of float32 took 0.21 s on one core of this
    machine's AMD EPYC (sha256 took 0.11 s there, thanks to SHA instructions).
    """
    if _is_key_array(value):
        # A typed key's bytes are its key data; its impl goes into the dtype's name.
        hasher.update(f"key:{value.dtype}".encode())
        value = jax.random.key_data(value)
    array = np.asarray(value)
    hasher.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype.hasobject:
        # Object arrays hold pointers: their elements' reprs stand for them.
        hasher.update(_stable_text(repr(array.tolist())).encode())
        return
    # The bytes are hashed in C order whatever the layout, so a transposed view and its
    # copy hash alike; a contiguous array is hashed in place, without a copy.
    hasher.update(memoryview(np.ascontiguousarray(array)).cast("B"))


def _update_tree(hasher: Any, tree: Any) -> None:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    hasher.update(_stable_text(str(treedef)).encode())
    for leaf in leaves:
        _update_array(hasher, leaf)


def data_digest(data: Any) -> str:
    """A hash of a pytree of arrays (structure, and each leaf's shape, dtype and bytes), or
    of a random-access source's length, type and the records at 16 evenly spaced indices:
    a sample, so a change to a record it does not read goes unnoticed."""
    hasher = _hasher()
    if is_random_access(data):
        size = len(data)
        kind = type(data)
        hasher.update(f"source {kind.__module__}.{kind.__qualname__} {size}".encode())
        indices = np.unique(np.linspace(0, size - 1, _SOURCE_SAMPLES).round().astype(np.int64))
        for index in indices if size else ():
            hasher.update(f"record {int(index)}".encode())
            _update_tree(hasher, data[int(index)])
    else:
        _update_tree(hasher, data)
    return hasher.hexdigest()


class _JaxprHasher:
    """Hashes jaxprs canonically.

    Not ``str(jaxpr)``: JAX's printer pulls a nested jaxpr used twice up to the top under a
    name, and whether two uses are one object depends on JAX's tracing caches; it prints an
    array literal as ``[...]``. So each equation is written here in the printer's form, but
    with its variables numbered in order of appearance, each nested jaxpr replaced by its
    own hash and each literal and constant by the hash of its bytes.
    """

    def __init__(self) -> None:
        # Keyed by id, each entry keeping its object alive: a jaxpr traced earlier and
        # dropped would otherwise free ids that later objects reuse.
        self._jaxprs: dict[int, tuple[Any, str]] = {}
        self._arrays: dict[int, tuple[Any, str]] = {}

    def array(self, value: Any) -> str:
        known = self._arrays.get(id(value))
        if known is None:
            hasher = _hasher()
            _update_array(hasher, value)
            known = self._arrays[id(value)] = (value, hasher.hexdigest())
        return known[1]

    def closed(self, closed: Any) -> str:
        consts = ",".join(self.array(c) for c in closed.consts)
        return f"closed({self.jaxpr(closed.jaxpr)};{consts})"

    def jaxpr(self, jaxpr: Any) -> str:
        known = self._jaxprs.get(id(jaxpr))
        if known is not None:
            return known[1]
        names: dict[Any, str] = {}

        def atom(v: Any) -> str:
            if isinstance(v, jcore.Literal):
                return f"lit({self.array(v.val)}):{v.aval}"
            if isinstance(v, jcore.DropVar):
                return f"_:{v.aval}"
            if v not in names:
                names[v] = f"v{len(names)}"
            return f"{names[v]}:{v.aval}"

        hasher = _hasher()
        lines = [f"const {' '.join(map(atom, jaxpr.constvars))}",
                 f"in {' '.join(map(atom, jaxpr.invars))}"]
        for eqn in jaxpr.eqns:
            params = " ".join(f"{k}={self.param(eqn.params[k])}" for k in sorted(eqn.params))
            lines.append(f"{' '.join(map(atom, eqn.outvars))} = {eqn.primitive.name}"
                         f"[{params}] {' '.join(map(atom, eqn.invars))}")
        lines.append(f"out {' '.join(map(atom, jaxpr.outvars))}")
        for line in lines:
            hasher.update(line.encode())
            hasher.update(b"\n")
        self._jaxprs[id(jaxpr)] = (jaxpr, hasher.hexdigest())
        return self._jaxprs[id(jaxpr)][1]

    def param(self, value: Any) -> str:
        if isinstance(value, jcore.ClosedJaxpr):
            return self.closed(value)
        if isinstance(value, jcore.Jaxpr):
            return f"jaxpr({self.jaxpr(value)})"
        if isinstance(value, (tuple, list)):
            return f"({', '.join(self.param(v) for v in value)})"
        if isinstance(value, (frozenset, set)):
            return f"{{{', '.join(sorted(self.param(v) for v in value))}}}"
        if isinstance(value, Mapping):
            return f"{{{', '.join(f'{k}: {self.param(value[k])}' for k in sorted(value))}}}"
        if isinstance(value, (np.ndarray, jax.Array)):
            # Printed, an array shows its first and last elements only.
            return f"array({self.array(value)})"
        return _stable_text(str(value))


def _abstract(tree: Any) -> Any:
    """``tree`` with abstract leaves (shape and dtype) in the dtypes JAX would give them."""
    def one(leaf: Any) -> jax.ShapeDtypeStruct:
        if not hasattr(leaf, "dtype"):
            leaf = np.asarray(leaf)
        dtype = leaf.dtype if _is_key_array(leaf) else jax.dtypes.canonicalize_dtype(leaf.dtype)
        return jax.ShapeDtypeStruct(tuple(leaf.shape), dtype)

    return jax.tree_util.tree_map(one, tree)


def _json(name: str, value: Any) -> str:
    def plain(o: Any) -> Any:
        if isinstance(o, (np.generic, np.ndarray)):
            return o.tolist()
        raise TypeError(f"settings[{name!r}] holds a {type(o).__name__}, which is not "
                        "JSON: give numbers, strings, lists or dicts")

    return json.dumps(value, sort_keys=True, default=plain)


def run_fingerprint(program: SeedProgram, *, example: Batch, eval_example: Batch | None,
                    hyper: Mapping[str, np.ndarray], data: Any, eval_data: Any | None,
                    init_state: Any | None = None,
                    settings: Mapping[str, Any]) -> dict[str, str]:
    """The components of a run's fingerprint: name -> hash, or JSON text for a setting.

    Args:
      program: the seed program; ``init``, ``step`` and ``evaluate`` are traced on
        abstract inputs, so their hashes depend on shapes and dtypes, not on values.
      example: one training batch (leaves ``(batch_size, ...)``).
      eval_example: what ``evaluate`` receives, or ``None`` without evaluation.
      hyper: one seed's hyperparameters as the program receives them (usually 0-d): only
        their shapes and dtypes enter; their values are compared per seed elsewhere.
      data: the training data, a pytree of arrays or a random-access source (``__len__``
        and ``__getitem__(int)`` returning a record, e.g. a grain or TFDS data source), of
        which a sample of 16 records is hashed.
      eval_data: the evaluation data, or ``None``.
      init_state: a state the run starts from instead of ``init``'s, or ``None``.
      settings: name -> a JSON-able value (batch size, root seed, a user's fingerprint);
        each becomes the component ``settings.<name>``, its JSON text.

    Returns:
      ``program.init``, ``program.step``, ``program.evaluate`` (``"none"`` without one),
      ``data``, ``eval_data``, ``init_state`` (``"none"`` when ``None``) and
      ``settings.<name>`` for each setting.

    Limits: what a jaxpr does not hold is not seen: the Python body of a callback
    (``jax.pure_callback``), or a custom_jvp's rule where nothing differentiates it.
    """
    hasher = _JaxprHasher()
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    batch, hyper_in = _abstract(example), _abstract(dict(hyper))
    rngs = {stream: key for stream in program.streams}
    state = jax.eval_shape(program.init, key, batch, hyper_in)

    def digest(fn: Any, *args: Any) -> str:
        return hashlib.blake2b(hasher.closed(jax.make_jaxpr(fn)(*args)).encode(),
                               digest_size=_DIGEST_BYTES).hexdigest()

    fingerprint = {
        "program.init": digest(program.init, key, batch, hyper_in),
        "program.step": digest(program.step, state, batch, rngs, hyper_in),
        "program.evaluate": NONE,
        "data": data_digest(data),
        "eval_data": NONE if eval_data is None else data_digest(eval_data),
        "init_state": NONE if init_state is None else data_digest(init_state),
    }
    if program.evaluate is not None and eval_example is not None:
        fingerprint["program.evaluate"] = digest(program.evaluate, state,
                                                 _abstract(eval_example), hyper_in)
    for name in sorted(settings):
        fingerprint[f"settings.{name}"] = _json(name, settings[name])
    return fingerprint


def fingerprint_differences(saved: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The sorted names of the components that differ or that only one fingerprint has."""
    return sorted(name for name in set(saved) | set(now) if saved.get(name) != now.get(name))


_WHAT = {
    "program.init": "the program's init (its code or the constants it closes over: an "
                    "optimizer's initial hyperparameters, closed-over arrays)",
    "program.step": "the program's step (its code or the constants it closes over: an "
                    "optimizer's hyperparameters, a schedule, closed-over arrays)",
    "program.evaluate": "the program's evaluate (its code or the constants it closes over)",
    "data": "the training data (its shapes or contents)",
    "eval_data": "the evaluation data (its shapes or contents)",
    "init_state": "the initial state (its shapes or contents)",
}


def _shown(text: str | None) -> str:
    if text is None:
        return "not given"
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 1] + "…"


def _with(component: str | None) -> str:
    return "without" if component in (None, NONE) else "with"


def describe_differences(names: Sequence[str], saved: Mapping[str, str],
                         now: Mapping[str, str]) -> str:
    """One line naming each differing component, for a :class:`~negres.ResumeError`:
    e.g. ``"the training data (its shapes or contents), batch_size (saved 32, now 64)"``."""
    phrases = []
    for name in names:
        before, after = saved.get(name), now.get(name)
        if name.startswith("settings."):
            phrases.append(f"{name.removeprefix('settings.')} "
                           f"(saved {_shown(before)}, now {_shown(after)})")
        elif before in (None, NONE) or after in (None, NONE):
            thing = _WHAT.get(name, name).split(" (")[0]
            phrases.append(f"{thing} (saved {_with(before)}, now {_with(after)})")
        else:
            phrases.append(_WHAT.get(name, name))
    return ", ".join(phrases)
