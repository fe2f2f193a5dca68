"""Checks of the arguments of a training call, made before anything compiles.

:func:`check_program` traces the user's program once, abstractly, so that a step of the
wrong shape or a misspelt grid name is one line about the user's own argument rather than
an error from deep inside a compile. Each check raises
:class:`~negres.errors.ArgumentError` naming the argument, its value and what is allowed;
the command line translates the names into config fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from negres import fields
from negres.errors import ArgumentError
from negres.fields import is_int, is_int_in, real_numbers
from negres.training.contract import Batch
from negres.training.grid import Rows
from negres.training.layout import check_layout
from negres.training.optimizers import check_hyperparameter_range
from negres.training.step import (
    RESERVED_HYPER,
    SAMPLINGS,
    EarlyStopping,
    SeedTrainer,
    is_design_name,
)

# is_int, real_numbers and check_hyperparameter_range are defined in negres.fields and
# negres.training.optimizers; they stay importable from here only until driver.py,
# plan.py and contract.py import them from there.
__all__ = ["INPUT_NOISE", "LABEL_NOISE", "check_hyperparameter_range", "check_loop_arguments",
           "check_program", "check_scale_arguments", "check_training_arguments", "is_int",
           "real_numbers"]

# The built-in program's training-data noise (negres.training.builtin), declared once for
# its library checks and the study config's train section. A label-noise share of 1
# replaces every label, leaving no signal to learn: the share stays below 1.
LABEL_NOISE = fields.number("label_noise", 0.0, "share of training labels each seed sees "
                            "replaced at random", 0.0, 1.0, high_open=True)
INPUT_NOISE = fields.number("input_noise", 0.0, "std of Gaussian noise added to training "
                            "inputs, per seed", 0.0)
# early_stopping.min_delta: an improvement smaller than this does not count.
MIN_DELTA = fields.Interval(0.0)


def check_training_arguments(
    *, num_seeds: int, steps: int, batch_size: int, eval_every: int, num_train: int | None
) -> None:
    """Raise :class:`ArgumentError` naming the argument when one is not allowed.

    ``num_train=None`` (the data not loaded yet) skips the bound of the batch size by the
    training set size.
    """
    if not is_int_in(num_seeds, 1):
        raise ArgumentError("num_seeds", num_seeds, "an integer >= 1")
    if not is_int_in(steps, 1):
        raise ArgumentError("steps", steps, "an integer >= 1")
    upper = num_train if num_train is not None else math.inf
    if not is_int_in(batch_size, 1, upper):
        allowed = (f"an integer from 1 to the training set size ({num_train} examples)"
                   if num_train is not None else "an integer >= 1")
        raise ArgumentError("batch_size", batch_size, allowed)
    if not is_int_in(eval_every, 1) or steps % eval_every:
        raise ArgumentError("eval_every", eval_every,
                            f"a positive integer that divides steps={steps}")


def check_scale_arguments(
    *, seeds_per_chunk: object, layout: object, seeds_per_map_step: object,
    checkpoint_every: object,
) -> None:
    """Raise :class:`ArgumentError` naming a scale or durability argument not allowed."""
    if not is_int_in(seeds_per_chunk, 0):
        raise ArgumentError("seeds_per_chunk", seeds_per_chunk,
                            "an integer >= 0 (0: chosen from the compiled step's memory)")
    check_layout(layout, seeds_per_map_step)
    if not is_int_in(checkpoint_every, 0):
        raise ArgumentError("checkpoint_every", checkpoint_every,
                            "an integer >= 0 (steps between checkpoints; 0: about one a minute)")


def check_loop_arguments(*, sampling: object, early_stopping: object, stop_at: object,
                         steps: int, eval_every: int, has_eval: bool) -> None:
    """Raise :class:`ArgumentError` naming a training-loop argument that is not allowed:
    the sampling, the early stopping's fields, ``stop_at``."""
    if sampling not in SAMPLINGS:
        raise ArgumentError("sampling", sampling, " or ".join(map(repr, SAMPLINGS)))
    if stop_at is not None and (not is_int_in(stop_at, 1, steps) or stop_at % eval_every):
        raise ArgumentError("stop_at", stop_at, f"None or a multiple of eval_every="
                            f"{eval_every} from {eval_every} to steps={steps}")
    if early_stopping is None:
        return
    if not isinstance(early_stopping, EarlyStopping):
        raise ArgumentError("early_stopping", early_stopping,
                            "None or a negres.EarlyStopping(metric=..., patience=...)")
    if not isinstance(early_stopping.metric, str) or not early_stopping.metric.startswith(
            ("eval_", "train_")):
        raise ArgumentError("early_stopping.metric", early_stopping.metric,
                            "a curve name: eval_<metric> (on eval_data) or train_<metric>")
    if early_stopping.metric.startswith("eval_") and not has_eval:
        raise ArgumentError("early_stopping.metric", early_stopping.metric,
                            "a train_<metric> curve, or pass eval_data (a validation set) to "
                            "monitor an eval_<metric> curve")
    if not is_int_in(early_stopping.patience, 1):
        raise ArgumentError("early_stopping.patience", early_stopping.patience,
                            "an integer >= 1 (curve points without improvement)")
    if early_stopping.mode not in ("max", "min"):
        raise ArgumentError("early_stopping.mode", early_stopping.mode, "'max' or 'min'")
    if not MIN_DELTA.accepts(early_stopping.min_delta):
        raise ArgumentError("early_stopping.min_delta", early_stopping.min_delta,
                            MIN_DELTA.allowed)
    if not isinstance(early_stopping.restore_best, bool):
        raise ArgumentError("early_stopping.restore_best", early_stopping.restore_best,
                            "True or False")


def check_program(trainer: SeedTrainer, rows: Rows, example: Batch,
                   eval_example: Batch | None) -> None:
    """Trace the program once, abstractly, before anything compiles: its step must return
    ``(state, metrics)`` with the state's structure and scalar metrics; and every grid or
    hyperparameter name must be read by the optimizer or the program (a misspelt name
    would otherwise train every grid point alike)."""
    read: set[str] = set()

    class Recording(dict):
        def __getitem__(self, name: str) -> Any:
            read.add(name)
            if name not in self:
                raise ArgumentError(
                    "grid" if rows.grid else "hyperparams",
                    sorted(set(self) - set(RESERVED_HYPER)),
                    f"values for every name the program reads: it reads hyper[{name!r}] "
                    f"(give it with grid= or hyperparams=, or read it with hyper.get)")
            return super().__getitem__(name)

        def get(self, name: str, default: Any = None) -> Any:
            read.add(name)
            return super().get(name, default)

    # Traced like training traces them: batch, keys and hyperparameters are abstract
    # arrays, so a step indexing with a traced value (x[perm]) works here as it does there.
    def abstract(tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), tree)

    hyper = abstract({n: np.asarray(v[0]) for n, v in rows.hyper.items()
                      if not is_design_name(n)})
    program = trainer.program
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    state = jax.eval_shape(lambda k, b, h: program.init(k, b, Recording(h)), key,
                           abstract(example), hyper)
    rngs = {name: key for name in program.streams}
    out = jax.eval_shape(lambda s, b, r, h: program.step(s, b, r, Recording(h)), state,
                         abstract(example), rngs, hyper)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
        raise ArgumentError("program.step", f"a function returning {type(out).__name__}",
                            "(state, metrics): the new state and a dict of scalar metrics")
    new_state, metrics = out
    if jax.tree_util.tree_structure(new_state) != jax.tree_util.tree_structure(state):
        raise ArgumentError("program.step", "a function returning another state structure",
                            "the new state with the structure init returns")
    evaluated = {}
    if eval_example is not None:
        evaluated = jax.eval_shape(lambda s, b, h: program.evaluate(s, b, Recording(h)),
                                   state, abstract(eval_example), hyper)
        if not isinstance(evaluated, Mapping):
            raise ArgumentError("program.evaluate", type(evaluated).__name__,
                                "a function returning a dict of scalar metrics")
    for where, found in (("program.step", metrics), ("program.evaluate", evaluated)):
        shaped = {n: tuple(v.shape) for n, v in found.items() if getattr(v, "shape", ()) != ()}
        if shaped:
            raise ArgumentError(where, f"metrics of shapes {shaped}",
                                "scalar metrics (average over the batch in the function)")
    stopping = trainer.early_stopping
    curves = [f"train_{n}" for n in metrics] + [f"eval_{n}" for n in evaluated]
    if stopping is not None and stopping.metric not in curves:
        raise ArgumentError("early_stopping.metric", stopping.metric,
                            f"one of this program's curves: {', '.join(sorted(curves))}")
    unread = sorted(set(hyper) - read - set(RESERVED_HYPER))
    if unread:
        in_grid = [name for name in unread if name in rows.grid]
        where, unread = ("grid", in_grid) if in_grid else ("hyperparams", unread)
        raise ArgumentError(where, unread, "names the optimizer injects or the program reads "
                            "from its hyper argument; these are read by neither (an "
                            "optimizer's hyperparameter varies only when the optimizer is "
                            "given as a factory, e.g. optimizer=optax.adamw with "
                            "hyperparams={'weight_decay': 1e-4}, not as an instance such as "
                            "optax.adamw(1e-3))")
