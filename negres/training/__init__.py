"""Training: many seeds of one program in one compiled call.

The open contract (:mod:`~negres.training.contract`) is what a user hands negres: a
:class:`SeedProgram` of pure per-seed functions, usually built by :func:`loss_program`
from an init, a loss and an optax optimizer, or from a flax module by
:mod:`~negres.training.linen` or :mod:`~negres.training.nnx`. :mod:`~negres.training.step`
wraps the user's step in what every seed needs (batches with replacement or in epochs,
random streams, divergence freezing, early stopping, curves); :mod:`~negres.training.plan`
decides where seeds live (sharding, ``vmap`` or ``lax.map`` layout, memory-bounded
chunks); :mod:`~negres.training.driver` runs it (:func:`train`: the rows of a grid from
:mod:`~negres.training.grid`, argument checks from :mod:`~negres.training.checks`,
segments reported live as :mod:`~negres.training.events`, checkpoints via
:mod:`~negres.training.checkpoint` checked against a run's
:mod:`~negres.training.fingerprint` before resuming, batches fed from
:mod:`~negres.training.pipeline` for data larger than memory).
:mod:`~negres.training.builtin` is negres's own models and losses as one program, the one
the command line trains.
"""

from negres.errors import ResumeError
from negres.training.contract import (
    LossState,
    SeedProgram,
    loss_program,
    set_hyperparams,
)
from negres.training.driver import TrainResult, compile_training, train
from negres.training.events import TrainingProgress
from negres.training.linen import linen_apply, linen_program
from negres.training.nnx import nnx_apply, nnx_program
from negres.training.plan import Plan
from negres.training.step import EarlyStopping, SeedTrainer, make_seed_trainer

__all__ = [
    "EarlyStopping",
    "LossState",
    "Plan",
    "ResumeError",
    "SeedProgram",
    "SeedTrainer",
    "TrainResult",
    "TrainingProgress",
    "compile_training",
    "linen_apply",
    "linen_program",
    "loss_program",
    "make_seed_trainer",
    "nnx_apply",
    "nnx_program",
    "set_hyperparams",
    "train",
]
