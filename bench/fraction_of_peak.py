"""How close negres's training comes to the device's matmul speed: achieved FLOP/s / peak.

Peak: the all-core matmul peak, the faster of two jitted float32 matmuls of size ``n``
(``--matmul-size``, 2048 by default), each the median of ``--matmul-repeats`` runs per
round over all rounds: one ``(n, n) @ (n, n)`` on JAX's default device (``2 n^3`` FLOPs;
XLA:CPU may run one large matmul on every core by itself), and a ``(D, n, n)`` batch split
over the ``seeds`` mesh of all ``D`` devices, one product per device at once (``2 D n^3``
FLOPs, as seeds_scaling.py measures it). Both are reported, and which one is the peak. JAX
has one CPU device per core (``negres.use_all_cores()``, called by compare_common.py
before JAX starts), as ``main.py`` gives a user. Achieved: negres training the reference
MLP workload (digits, 64 -> 64 -> 10, Adam 1e-2, batch 128, 200 steps) for S seeds in one
call on that mesh, median of ``--repeats`` runs, FLOPs counted by XLA's cost analysis of
one training step lifted over the S seeds
(``jit(...).lower(...).compile().cost_analysis()["flops"]``) times the number of steps.
The step analysed is the step compare_training.py's "JAX step loop" runs, which that
script checks computes what negres's scanned step computes. One step is analysed rather
than negres's whole ``lax.scan``, because XLA counts a while loop's body once whatever its
trip count. The FLOP count is of all S seeds (not per device). Peak and training are
measured in the same process, interleaved, so the machine's load falls on all alike.

The cost analysis counts every operation (Adam, ReLU, softmax included). The matmul-only
count it is compared with is, per seed and step, ``2 B P`` forward + ``2 B P`` for the
weight gradients + ``2 B (64 x 10)`` for the one input gradient needed (of the output
layer; the first layer's input gradient is never formed): ``4 B P + 2 B 640`` with
``B = 128`` and ``P = 64 x 64 + 64 x 10 = 4,736`` dense weights, 2.59 MFLOP (the usual
``6 B P`` rule would say 3.64 MFLOP).

    python bench/fraction_of_peak.py [--seeds 64,256] [--repeats 3] [--matmul-size 2048]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import compare_common as common
import jax
import jax.numpy as jnp
import numpy as np
from compare_training import JaxTrainer

from negres.seeds import over_seeds, seed_keys
from negres.sharding import put, seed_mesh, seeded

WORKLOAD = common.WORKLOADS["mlp_digits"]
DENSE_WEIGHTS = 64 * 64 + 64 * 10


def matmul_only_flops_per_step(batch: int = common.BATCH_SIZE) -> int:
    """Forward, weight-gradient and needed input-gradient matmul FLOPs of one seed's step."""
    return 4 * batch * DENSE_WEIGHTS + 2 * batch * 64 * 10


def cost_analysis_flops(compiled: Any) -> float | None:
    """``flops`` from a compiled executable's cost analysis, or None where not reported."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


def step_flops(jx: JaxTrainer, num_seeds: int) -> float | None:
    """XLA's FLOP count of one training step of ``num_seeds`` seeds."""
    keys = seed_keys(0, np.arange(num_seeds))
    params, opt_state = jax.vmap(jx._init_one)(keys)
    step = over_seeds(jx._make_step(), seeded_args=(0, 1, 2))
    compiled = jax.jit(step).lower(params, opt_state, keys, jnp.int32(0), jx.x, jx.y).compile()
    return cost_analysis_flops(compiled)


def median_matmul(fn: Any, flops: float, times: list[float]) -> dict[str, Any]:
    median = statistics.median(times)
    return {"flops": flops, "cost_analysis_flops": cost_analysis_flops(fn.compile()),
            "median_s": median, "all_measured_s": times, "flops_per_s": flops / median}


def run(seeds_list: list[int], repeats: int, matmul_size: int,
        matmul_repeats: int) -> dict[str, Any]:
    n = matmul_size
    matmul = jax.jit(jnp.matmul)
    # One matmul on the default device.
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    jax.block_until_ready(matmul(a, b))
    # One matmul per device at once: a (D, n, n) batch split over the seeds mesh.
    mesh = seed_mesh()
    rng = np.random.default_rng(0)
    a_all, b_all = (put(rng.standard_normal((mesh.size, n, n), np.float32), seeded(mesh))
                    for _ in range(2))
    jax.block_until_ready(matmul(a_all, b_all))

    data = WORKLOAD.load()
    jx = JaxTrainer(WORKLOAD, data, common.STEPS)
    rows, one_times, all_times = [], [], []
    for num_seeds in seeds_list:
        seeds = list(range(num_seeds))
        jax.block_until_ready(jx.negres(seeds))  # compile this S
        per_step = step_flops(jx, num_seeds)
        analytic = matmul_only_flops_per_step() * num_seeds
        train_times = []
        for _ in range(repeats):  # interleaved: a few matmuls of each kind, one training run
            one_times += [common.timed(lambda: jax.block_until_ready(matmul(a, b)))[0]
                          for _ in range(matmul_repeats)]
            all_times += [common.timed(lambda: jax.block_until_ready(matmul(a_all, b_all)))[0]
                          for _ in range(matmul_repeats)]
            train_times.append(common.timed(lambda s=seeds: jax.block_until_ready(jx.negres(s)))[0])
        wall = statistics.median(train_times)
        flops = (per_step if per_step is not None else analytic) * common.STEPS
        rows.append({"num_seeds": num_seeds, "wall_s": wall, "all_measured_s": train_times,
                     "plan": jx.plans.get(num_seeds),
                     "flops_source": "cost_analysis" if per_step is not None else "analytic",
                     "flops_per_step_cost_analysis": per_step,
                     "flops_per_step_matmul_only": analytic,
                     "achieved_flops_per_s": flops / wall,
                     "achieved_matmul_only_flops_per_s": analytic * common.STEPS / wall})
    one = median_matmul(matmul.lower(a, b), 2.0 * n**3, one_times)
    every = median_matmul(matmul.lower(a_all, b_all), 2.0 * mesh.size * n**3, all_times)
    source = "all devices" if every["flops_per_s"] >= one["flops_per_s"] else "one device"
    chosen = every if source == "all devices" else one
    peak = chosen["flops_per_s"]
    for row in rows:
        row["fraction_of_peak"] = row["achieved_flops_per_s"] / peak
        row["fraction_of_peak_matmul_only"] = row["achieved_matmul_only_flops_per_s"] / peak
    return {"rows": rows, "num_devices": mesh.size, "matmul": {
        "size": n, "peak_source": source, "flops": chosen["flops"],
        "cost_analysis_flops": chosen["cost_analysis_flops"], "median_s": chosen["median_s"],
        "all_measured_s": chosen["all_measured_s"], "flops_per_s": peak,
        "one_device": one, "all_devices": every | {"num_devices": mesh.size}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="64,256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=3,
                        help="matmuls timed before each training run")
    args = parser.parse_args()

    info = common.machine()
    out = run(common.parse_ints(args.seeds), args.repeats, args.matmul_size, args.matmul_repeats)
    mm = out["matmul"]
    print(f"\n### Fraction of peak: negres training {WORKLOAD.description}")
    one, every = mm["one_device"], mm["all_devices"]
    print(f"batch {common.BATCH_SIZE}, {common.STEPS} steps, median of {args.repeats}, on "
          f"{out['num_devices']} JAX device(s); jitted float32 {mm['size']}x{mm['size']} "
          f"matmuls: one on the default device {one['flops_per_s'] / 1e9:.1f} GFLOP/s, one per "
          f"device at once ({every['num_devices']} devices) {every['flops_per_s'] / 1e9:.1f} "
          f"GFLOP/s (medians of {len(one['all_measured_s'])}); peak = the faster, "
          f"{mm['peak_source']}: {mm['flops_per_s'] / 1e9:.1f} GFLOP/s; "
          f"{common.machine_line(info)}\n")
    print(common.markdown_table(
        ["S", "wall s", "MFLOP / step (XLA)", "MFLOP / step (matmuls)", "GFLOP/s (XLA)",
         "fraction of peak (XLA)", "fraction of peak (matmuls)"],
        [(r["num_seeds"], f"{r['wall_s']:.3f}",
          f"{(r['flops_per_step_cost_analysis'] or float('nan')) / 1e6:.1f}",
          f"{r['flops_per_step_matmul_only'] / 1e6:.1f}",
          f"{r['achieved_flops_per_s'] / 1e9:.2f}", f"{r['fraction_of_peak']:.1%}",
          f"{r['fraction_of_peak_matmul_only']:.1%}") for r in out["rows"]]))
    source = out["rows"][0]["flops_source"] if out["rows"] else "none"
    print(f"\nFLOPs from {source}; XLA's own count for the matmul: "
          f"{(mm['cost_analysis_flops'] or float('nan')) / 1e9:.1f} GFLOP")
    path = common.write_json("fraction_of_peak", {"workload": WORKLOAD.name, "machine": info,
                                           "steps": common.STEPS, "batch_size": common.BATCH_SIZE,
                                           "repeats": args.repeats, **out})
    print(f"written {path}")


if __name__ == "__main__":
    main()
