"""Integrated gradients for many seeds: one vmapped call against a loop over seeds.

64 seeds of the default study's MLP (digits, 64 hidden units), 256 test examples,
integrated gradients with 32 midpoint steps. Both paths are jitted and warmed up first;
times are medians of ``--repeats`` runs taken in the same process. As ``main.py`` runs it,
``negres.use_all_cores()`` comes first (one JAX CPU device per core): the vmapped call
takes the params as ``train_seeds`` leaves them, split over the ``seeds`` mesh; the loop
runs each seed on JAX's default device, as a user's plain ``jax.jit`` would. The JSON
records the device count.

    python bench/saliency_seeds.py [--seeds 64] [--examples 256] [--steps 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import negres

# First, before anything touches JAX's devices: one CPU device per core, as main.py does.
CORE_SETUP = negres.use_all_cores()

from negres.measures.saliency import attribute, attribute_over_seeds  # noqa: E402
from negres.models import build_model  # noqa: E402
from negres.seeds import take_seed  # noqa: E402
from negres.tasks import load_task  # noqa: E402
from negres.training.builtin import train_seeds  # noqa: E402
from negres.training.linen import linen_apply  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/saliency_seeds.json")
    args = parser.parse_args()

    task = load_task(ConfigDict({"name": "digits"}))
    model = build_model(ConfigDict({"name": "mlp", "hidden_sizes": (64,)}), task.num_outputs)
    trained = train_seeds(model, optax.adam(1e-2), task.x_train, task.y_train,
                          num_seeds=args.seeds, steps=200, batch_size=128)
    apply_fn = linen_apply(model)
    x = jnp.asarray(task.x_test[: args.examples])

    vmapped = jax.jit(lambda p, xs: attribute_over_seeds(
        "integrated_gradients", apply_fn, p, xs, "predicted", steps=args.steps))
    single = jax.jit(lambda p, xs: attribute(
        "integrated_gradients", apply_fn, p, xs, "predicted", steps=args.steps))
    default = jax.devices()[0]
    seeds = [jax.device_put(take_seed(trained.params, s), default) for s in range(args.seeds)]

    def loop():
        return [single(p, x) for p in seeds]

    every = vmapped(trained.params, x)
    last = args.seeds - 1  # the same computation, checked on one seed
    np.testing.assert_allclose(np.asarray(every[last]), np.asarray(single(seeds[last], x)),
                               atol=1e-5, rtol=1e-4)
    jax.block_until_ready(loop())  # compile and warm up
    t_vmap = median_time(lambda: vmapped(trained.params, x), args.repeats)
    t_loop = median_time(loop, args.repeats)
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({CORE_SETUP.reason}); integrated gradients, {args.steps} steps, "
          f"{args.seeds} seeds x {args.examples} examples, median of {args.repeats}")
    print(f"{'one vmapped call':<22} {t_vmap:8.3f} s")
    print(f"{'loop over seeds':<22} {t_loop:8.3f} s")
    print(f"{'loop / vmapped':<22} {t_loop / t_vmap:8.2f} x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(jax.devices()[0]),
                               "num_devices": jax.device_count(),
                               "devices_reason": CORE_SETUP.reason, "seeds": args.seeds,
                               "examples": args.examples, "steps": args.steps,
                               "vmapped_s": t_vmap, "loop_s": t_loop}, indent=1))


if __name__ == "__main__":
    main()
