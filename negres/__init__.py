"""negres: vectorized seed studies in JAX.

Train many seeds of a model in one ``jit(vmap(scan))`` call, evaluate every seed with
pure functions, and compare conditions with statistics that can say "inconclusive".
Every stacked object has the seed axis first.
"""

from negres import agreement, findings, interpretability, models, saliency, stats
from negres.checkpoint import TrainingCheckpoints
from negres.engine import (
    Plan,
    SeedTrainer,
    TrainResult,
    compile_training,
    make_apply,
    make_evaluate,
    make_seed_trainer,
    train_seeds,
)
from negres.errors import ConfigError
from negres.seeds import num_seeds_of, over_seeds, seed_key, seed_keys, stream_key, take_seed
from negres.sharding import initialize_distributed, seed_mesh
from negres.tasks import TASKS, Task, load_task

__version__ = "0.1.0"

__all__ = [
    "TASKS",
    "ConfigError",
    "Plan",
    "SeedTrainer",
    "Task",
    "TrainResult",
    "TrainingCheckpoints",
    "agreement",
    "compile_training",
    "findings",
    "initialize_distributed",
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
    "seed_mesh",
    "stats",
    "stream_key",
    "take_seed",
    "train_seeds",
]
