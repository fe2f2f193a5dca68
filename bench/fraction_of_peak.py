"""How close negres's training comes to the device's matmul speed: achieved FLOP/s / peak.

Peak: a jitted float32 ``(n, n) @ (n, n)`` (``--matmul-size``, 2048 by default), ``2 n^3``
FLOPs, median of ``--matmul-repeats`` runs. Achieved: negres training the reference MLP
workload (digits, 64 -> 64 -> 10, Adam 1e-2, batch 128, 200 steps) for S seeds in one call,
median of ``--repeats`` runs, FLOPs counted by XLA's cost analysis of one training step
lifted over the S seeds (``jit(...).lower(...).compile().cost_analysis()["flops"]``) times
the number of steps. The step analysed is the step compare_training.py's "JAX step loop"
runs, which that script checks computes what negres's scanned step computes. One step is
analysed rather than negres's whole ``lax.scan``, because XLA counts a while loop's body
once whatever its trip count. Both are measured on the same device in the same process,
interleaved, so the machine's load falls on both alike.

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


def run(seeds_list: list[int], repeats: int, matmul_size: int,
        matmul_repeats: int) -> dict[str, Any]:
    a = jax.random.normal(jax.random.PRNGKey(0), (matmul_size, matmul_size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (matmul_size, matmul_size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul_flops = 2.0 * matmul_size**3
    reported = cost_analysis_flops(matmul.lower(a, b).compile())
    jax.block_until_ready(matmul(a, b))

    data = WORKLOAD.load()
    jx = JaxTrainer(WORKLOAD, data, common.STEPS)
    rows, matmul_times = [], []
    for num_seeds in seeds_list:
        seeds = list(range(num_seeds))
        jax.block_until_ready(jx.negres(seeds))  # compile this S
        per_step = step_flops(jx, num_seeds)
        analytic = matmul_only_flops_per_step() * num_seeds
        train_times = []
        for _ in range(repeats):  # interleaved: a few matmuls, one training run
            matmul_times += [common.timed(lambda: jax.block_until_ready(matmul(a, b)))[0]
                             for _ in range(matmul_repeats)]
            train_times.append(common.timed(lambda s=seeds: jax.block_until_ready(jx.negres(s)))[0])
        wall = statistics.median(train_times)
        flops = (per_step if per_step is not None else analytic) * common.STEPS
        rows.append({"num_seeds": num_seeds, "wall_s": wall, "all_measured_s": train_times,
                     "flops_source": "cost_analysis" if per_step is not None else "analytic",
                     "flops_per_step_cost_analysis": per_step,
                     "flops_per_step_matmul_only": analytic,
                     "achieved_flops_per_s": flops / wall,
                     "achieved_matmul_only_flops_per_s": analytic * common.STEPS / wall})
    peak = matmul_flops / statistics.median(matmul_times)
    for row in rows:
        row["fraction_of_peak"] = row["achieved_flops_per_s"] / peak
        row["fraction_of_peak_matmul_only"] = row["achieved_matmul_only_flops_per_s"] / peak
    return {"rows": rows, "matmul": {
        "size": matmul_size, "flops": matmul_flops, "cost_analysis_flops": reported,
        "median_s": statistics.median(matmul_times), "all_measured_s": matmul_times,
        "flops_per_s": peak}}


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
    print(f"batch {common.BATCH_SIZE}, {common.STEPS} steps, median of {args.repeats}; peak = "
          f"jitted float32 {mm['size']}x{mm['size']} matmul, {mm['flops'] / 1e9:.1f} GFLOP in "
          f"{mm['median_s'] * 1e3:.0f} ms (median of {len(mm['all_measured_s'])}) = "
          f"{mm['flops_per_s'] / 1e9:.1f} GFLOP/s; {common.machine_line(info)}\n")
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
