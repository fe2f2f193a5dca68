"""Run by tests/test_scale.py: one process of a two-process (simulated two-host) run on CPU,
or the single-process reference. Trains five seeds with checkpoints, resumes from the one
at step 5 of 10, and (process 0, or the reference) saves the gathered per-seed results."""

import argparse
import shutil
from pathlib import Path

import jax

# Devices are fixed before anything touches JAX's backend.
jax.config.update("jax_platforms", "cpu")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process_id", type=int, default=-1)  # -1: the single-process reference
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.process_id >= 0:
        jax.config.update("jax_num_cpu_devices", 2)
        from negres.sharding import initialize_distributed

        initialize_distributed(f"localhost:{args.port}", 2, args.process_id,
                               heartbeat_timeout_seconds=30, shutdown_timeout_seconds=30)

    import numpy as np
    import optax
    from ml_collections import ConfigDict

    from negres.models import build_model
    from negres.sharding import barrier, is_main_process
    from negres.tasks import load_task
    from negres.training.builtin import train_seeds
    from negres.training.checkpoint import Checkpointing, TrainingCheckpoints

    task = load_task(ConfigDict({"name": "digits"}))
    model = build_model(ConfigDict({"name": "mlp", "hidden_sizes": (16,)}), 10)
    common = dict(num_seeds=5, steps=10, batch_size=16, eval_every=5, seed=2,
                  x_eval=task.x_test[:64], y_eval=task.y_test[:64])
    with TrainingCheckpoints(args.checkpoints) as checkpoints:
        trained = train_seeds(model, optax.adam(1e-2), task.x_train[:256], task.y_train[:256],
                              checkpointing=Checkpointing(checkpoints, every=5,
                                                          fingerprint="multihost"), **common)
    # What a run killed after step 5 leaves: its first checkpoint only (one process deletes
    # the rest of the shared directory while the other waits).
    if is_main_process():
        shutil.rmtree(Path(args.checkpoints) / "10")
    barrier("negres test: checkpoint 10 removed")
    with TrainingCheckpoints(args.checkpoints) as checkpoints:
        resumed = train_seeds(model, optax.adam(1e-2), task.x_train[:256], task.y_train[:256],
                              checkpointing=Checkpointing(checkpoints, every=5,
                                                          fingerprint="multihost"), **common)
    leaves = jax.tree_util.tree_leaves(trained.params)
    again = jax.tree_util.tree_leaves(resumed.params)
    if is_main_process():
        np.savez(args.out, *leaves, *again, **trained.curves, devices=jax.device_count(),
                 processes=jax.process_count(), padded=trained.plan["padded_seeds"],
                 resumed_from=resumed.plan["resumed_from_step"], num_leaves=len(leaves),
                 diverged_at=trained.diverged_at, resumed_curve=resumed.curves["train_loss"])


if __name__ == "__main__":
    main()
