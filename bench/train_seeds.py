"""How the cost of training grows with the number of seeds: one vmapped call against a loop.

Trains the default study's workload (scikit-learn digits, MLP 64 -> 64 -> 10, Adam 1e-2,
batch 128, 500 steps; or ``--workload cnn_mnist1d``: the MNIST-1D CNN of
configs/mnist1d.py, batch 100) for S in {1, 8, 64, 256} seeds:
  negres:  one compiled ``jit(vmap(scan))`` call for all S seeds;
  loop:    a Python loop over seeds of the same jitted single-seed training.
Compilation is excluded from both (each is warmed up first); times are the median of
``--repeats`` runs, taken in the same process so that ratios are comparable on a noisy machine.
negres runs as ``main.py`` runs it: ``negres.use_all_cores()`` first (one JAX CPU device
per core) and the default ``seeds`` mesh over every device; the loop trains each seed on
JAX's default device alone, as a user's plain ``jax.jit`` would. The JSON records the
device count.

    python bench/train_seeds.py [--workload mlp_digits|cnn_mnist1d] [--seeds 1,8,64,256]
        [--steps 500] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import optax
from ml_collections import ConfigDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import negres

# First, before anything touches JAX's devices: one CPU device per core, as main.py does.
CORE_SETUP = negres.use_all_cores()

from negres.models import build_model  # noqa: E402
from negres.sharding import seed_mesh  # noqa: E402
from negres.tasks import load_task  # noqa: E402
from negres.training.builtin import builtin_program, train_seeds  # noqa: E402

# name -> (task config, model config, batch size)
WORKLOADS = {
    "mlp_digits": ({"name": "digits"}, {"name": "mlp", "hidden_sizes": (64,)}, 128),
    "cnn_mnist1d": ({"name": "mnist1d"}, {"name": "cnn", "channels": (25, 25, 25),
                                          "kernel_size": 3, "strides": 2, "dense_size": 64},
                    100),
}


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mlp_digits")
    parser.add_argument("--seeds", default="1,8,64,256")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    task_config, model_config, batch_size = WORKLOADS[args.workload]
    task = load_task(ConfigDict(task_config))
    model = build_model(ConfigDict(model_config), task.num_outputs)
    optimizer = optax.adam(1e-2)
    trainer = builtin_program(model, optimizer)

    one_device = seed_mesh(jax.devices()[:1])

    def run(seed_indices, mesh=None):
        result = train_seeds(
            model, optimizer, task.x_train, task.y_train, num_seeds=len(seed_indices),
            steps=args.steps, batch_size=batch_size, eval_every=args.steps,
            seed_indices=seed_indices, program=trainer, scale=negres.Scale(mesh=mesh),
        )
        return result

    rows = []
    print(f"{args.workload} on {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.devices()[0].platform}; {CORE_SETUP.reason}), "
          f"{args.steps} steps, median of {args.repeats}")
    header = f"{'S':>5} {'negres s':>10} {'loop s':>10} {'loop/negres':>12} {'seeds/s':>9}"
    print(header)
    print("-" * len(header))
    run([0], one_device)  # compile the single-seed shape once; the loop reuses it
    for num_seeds in [int(s) for s in args.seeds.split(",")]:
        indices = list(range(num_seeds))
        run(indices)  # compile this S
        t_vmap = median_time(
            lambda idx=indices: jax.block_until_ready(run(idx).params), args.repeats
        )
        loop_repeats = 1 if num_seeds >= 64 else args.repeats

        def loop(idx=indices):
            for i in idx:
                jax.block_until_ready(run([i], one_device).params)

        t_loop = median_time(loop, loop_repeats)
        rows.append({"num_seeds": num_seeds, "negres_s": t_vmap, "loop_s": t_loop,
                     "speedup": t_loop / t_vmap, "seeds_per_s": num_seeds / t_vmap})
        print(f"{num_seeds:>5} {t_vmap:>10.3f} {t_loop:>10.3f} {t_loop / t_vmap:>12.1f} "
              f"{num_seeds / t_vmap:>9.1f}")
    out = Path(args.out or f"bench/results/train_seeds_{args.workload}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"workload": args.workload, "device": str(jax.devices()[0]),
                               "num_devices": jax.device_count(),
                               "devices_reason": CORE_SETUP.reason,
                               "steps": args.steps,
                               "rows": rows, "cpu_count": os.cpu_count()}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
