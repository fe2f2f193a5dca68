"""negres: vectorized seed studies in JAX.

Train many seeds of a model in one ``jit(vmap(scan))`` call, evaluate every seed with
pure functions, and compare conditions with statistics that can say "inconclusive".
Every stacked object has the seed axis first.
"""

from negres import agreement, findings, interpretability, models, saliency, stats
from negres.engine import (
    SeedTrainer,
    TrainResult,
    make_apply,
    make_evaluate,
    make_seed_trainer,
    train_seeds,
)
from negres.errors import ConfigError
from negres.seeds import num_seeds_of, over_seeds, seed_key, seed_keys, stream_key, take_seed
from negres.tasks import TASKS, Task, load_task

__version__ = "0.1.0"

__all__ = [
    "TASKS",
    "ConfigError",
    "SeedTrainer",
    "Task",
    "TrainResult",
    "agreement",
    "findings",
    "interpretability",
    "load_task",
    "make_apply",
    "make_evaluate",
    "make_seed_trainer",
    "models",
    "num_seeds_of",
    "over_seeds",
    "saliency",
    "seed_key",
    "seed_keys",
    "stats",
    "stream_key",
    "take_seed",
    "train_seeds",
]
