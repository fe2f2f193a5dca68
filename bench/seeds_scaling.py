"""Seeds per second as the number of seeds S grows, against the device's matmul peak.

Four measurements, all in one process on every device ``jax.devices()`` gives (one
``seeds`` mesh of all of them, as ``train_seeds`` uses by default; on a CPU one device per
core, from ``negres.use_all_cores()``, which compare_common.py calls before JAX starts):

1. Scaling. The reference MLP workload of fraction_of_peak.py (digits, 64 -> 64 -> 10,
   Adam 1e-2, batch 128) trained for ``--steps`` steps (100 by default) by ``train_seeds``
   for S = 1, 2, 4, ..., 1024 seeds, with the automatic plan (``layout="auto"``,
   ``seeds_per_chunk=0``: one chunk unless the compiled segment's memory analysis exceeds
   the per-device budget). One ``SeedTrainer`` is reused for every S, and each S is run
   once untimed first (compilation, allocation), so the times are of compiled code: the
   median of ``--repeats`` runs, each a whole ``train_seeds`` call (initialisation,
   training, the curves back on the host). Reported: wall seconds, seeds/s (S / time),
   seed-steps/s, and achieved FLOP/s. FLOPs are counted as fraction_of_peak.py counts
   them: XLA's cost analysis of one training step lifted over the S seeds
   (``fraction_of_peak.step_flops``, the step compare_training.py checks is negres's),
   times the steps; the matmul-only count it documents (``4 B P + 2 B 640`` per seed and
   step, 2.59 MFLOP) is given beside it. Padding seeds (several devices) are not counted.
2. Peak. A jitted float32 ``(n, n) @ (n, n)`` (``--matmul-size``; 2048 on CPU as in
   fraction_of_peak.py, 8192 on accelerators), one per device at once (a ``(D, n, n)``
   batch split over the mesh), ``2 D n^3`` FLOPs. It is measured at every S, interleaved
   with the training runs (``--matmul-repeats`` matmuls before each timed run), and each
   S's fraction of peak is taken against the peak measured beside it, so that the load
   of a shared machine falls on both alike. Both use JAX's default matmul precision.
3. Chunking. For S >= 2 x ``--chunk``, the same runs with ``seeds_per_chunk=--chunk``
   and with the automatic choice under a forced ``--small-budget-mib`` per-device budget,
   timed interleaved with the one-chunk run, to show what chunks cost.
4. Layout of convolutional models. The MNIST-1D CNN and the 2-D digits CNN of
   compare_common.WORKLOADS (negres ``cnn``, channels (16, 32), dense 64), batch 128, at S in
   ``--cnn-seeds``: ``layout="vmap"`` against ``"map"`` (1 seed per ``lax.map`` step) and
   ``"map"`` with 4 seeds per step, timed interleaved (median of ``--cnn-repeats``), and
   what ``layout="auto"`` chooses (its plan and reason; its first call includes its
   timing probe), all with ``conv_impl="lax"`` (``nn.Conv``); and the same CNN with
   ``conv_impl="matmul"`` (convolutions as matmuls of unfolded patches, what the default
   ``"auto"`` picks on a CPU) under ``vmap`` and ``map``. ``--cnn-models`` picks the models.
   Few steps (``--cnn-steps``, ``--cnn2d-steps``): XLA:CPU takes 0.1 to 0.2 s per
   seed-step on the 2-D CNN with ``nn.Conv``.

The markdown tables are printed and written next to the JSON (``.md``), with the load
average at start and end: other jobs may share the machine, so compare within one run.

    python bench/seeds_scaling.py [--seeds 1,2,4,...,1024] [--steps 100] [--repeats 3]
        [--chunk 128] [--small-budget-mib 32] [--cnn-seeds 8,32] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import compare_common as common
import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from compare_training import JaxTrainer
from fraction_of_peak import cost_analysis_flops, matmul_only_flops_per_step, step_flops
from jax.sharding import Mesh

from negres.sharding import put, seed_mesh, seeded
from negres.training.builtin import builtin_program, train_seeds
from negres.training.contract import SeedProgram
from negres.training.driver import TrainResult
from negres.training.plan import Scale

WORKLOAD = common.WORKLOADS["mlp_digits"]
DEFAULT_SEEDS = ",".join(str(2**k) for k in range(11))  # 1, 2, 4, ..., 1024
PEAK = "matmul peak"
ONE_CHUNK = "one chunk (auto)"
MAP_WIDTH = 4  # seeds vmapped per lax.map step in the third layout


class MatmulPeak:
    """fraction_of_peak.py's peak on every device of ``mesh`` at once: ``D`` float32
    ``(n, n) @ (n, n)`` products, one per device (a ``(D, n, n)`` batch split over the
    mesh), ``2 D n^3`` FLOPs per call."""

    def __init__(self, mesh: Mesh, size: int) -> None:
        rng = np.random.default_rng(0)
        shape = (mesh.size, size, size)
        self.a, self.b = (put(rng.standard_normal(shape, np.float32), seeded(mesh))
                          for _ in range(2))
        self.matmul = jax.jit(jnp.matmul)
        self.size = size
        self.flops = 2.0 * mesh.size * size**3
        self.reported_flops = cost_analysis_flops(self.matmul.lower(self.a, self.b).compile())
        self.run()

    def run(self) -> jax.Array:
        return jax.block_until_ready(self.matmul(self.a, self.b))


def seed_runner(model: fnn.Module, optimizer: optax.GradientTransformation,
                trainer: SeedProgram, data: common.Data, steps: int,
                mesh: Mesh) -> Callable[..., TrainResult]:
    """``run(num_seeds, **scale)``: one blocking ``train_seeds`` call with ``trainer``, the
    keywords fields of its :class:`negres.Scale`."""

    def run(num_seeds: int, **scale: Any) -> TrainResult:
        result = train_seeds(model, optimizer, data.x_train, data.y_train,
                             num_seeds=num_seeds, steps=steps, batch_size=common.BATCH_SIZE,
                             program=trainer, scale=Scale(mesh=mesh, **scale))
        jax.block_until_ready(result.params)
        return result

    return run


def plan_text(plan: dict[str, Any]) -> str:
    layout = plan["layout"] if plan["layout"] == "vmap" else (
        f"map ({plan['seeds_per_map_step']}/step)")
    pad = f", +{plan['padded_seeds']} pad" if plan["padded_seeds"] else ""
    return f"{layout}, {plan['num_chunks']} x {plan['seeds_per_chunk']}{pad}"


def time_variants(variants: dict[str, Callable[[], TrainResult]], peak: MatmulPeak | None,
                  matmul_repeats: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Each variant run once untimed (compile), then ``repeats`` interleaved rounds (with
    ``matmul_repeats`` peak matmuls first in each round when ``peak`` is given)."""
    first = {name: common.timed(fn)[0] for name, fn in variants.items()}
    methods: dict[str, Callable[[], Any]] = {}
    if peak is not None:
        methods[PEAK] = lambda: [peak.run() for _ in range(matmul_repeats)]
    methods |= variants
    medians, times, results = common.interleaved_medians(methods, repeats)
    out = {name: {"wall_s": medians[name], "all_measured_s": times[name],
                  "first_call_s": first[name], "plan": results[name].plan}
           for name in variants}
    if peak is not None:
        matmul_s = medians[PEAK] / matmul_repeats
        for row in out.values():
            row |= {"matmul_s": matmul_s, "peak_flops_per_s": peak.flops / matmul_s}
    return out


def scaling(args: argparse.Namespace, mesh: Mesh, peak: MatmulPeak) -> list[dict[str, Any]]:
    """Sections 1-3: the MLP at every S, with the chunked variants at the largest S."""
    data = WORKLOAD.load()
    jx = JaxTrainer(WORKLOAD, data, args.steps)
    run = seed_runner(jx.model, jx.optimizer, jx.trainer, data, args.steps, mesh)
    budget = args.small_budget_mib * 2**20
    rows = []
    for num_seeds in common.parse_ints(args.seeds):
        variants = {ONE_CHUNK: partial(run, num_seeds)}
        if num_seeds >= 2 * args.chunk:
            variants[f"seeds_per_chunk={args.chunk}"] = partial(
                run, num_seeds, seeds_per_chunk=args.chunk)
            variants[f"auto, {args.small_budget_mib} MiB budget"] = partial(
                run, num_seeds, memory_budget_bytes=budget)
        timings = time_variants(variants, peak, args.matmul_repeats, args.repeats)
        xla_step = step_flops(jx, num_seeds)
        matmul_step = matmul_only_flops_per_step() * num_seeds
        for name, row in timings.items():
            wall = row["wall_s"]
            flops = (xla_step if xla_step is not None else matmul_step) * args.steps
            rows.append({
                "num_seeds": num_seeds, "variant": name, **row,
                "seeds_per_s": num_seeds / wall, "seed_steps_per_s": num_seeds * args.steps / wall,
                "flops_source": "cost_analysis" if xla_step is not None else "matmul_only",
                "flops_per_step_cost_analysis": xla_step,
                "flops_per_step_matmul_only": matmul_step,
                "achieved_flops_per_s": flops / wall,
                "fraction_of_peak": flops / wall / row["peak_flops_per_s"],
                "fraction_of_peak_matmul_only":
                    matmul_step * args.steps / wall / row["peak_flops_per_s"],
                "vs_one_chunk": wall / timings[ONE_CHUNK]["wall_s"],
            })
            print(f"S={num_seeds:>5} {name:<28} {wall:8.3f} s  {plan_text(row['plan'])}",
                  flush=True)
    return rows


def cnn_models() -> dict[str, tuple[str, Callable[[], common.Data], Callable[[], fnn.Module]]]:
    """name -> (description, data loader, flax model) of the layout section."""
    mnist1d, digits = common.WORKLOADS["cnn_mnist1d"], common.WORKLOADS["cnn_digits"]
    return {
        mnist1d.name: (mnist1d.description, mnist1d.load, mnist1d.flax_model),
        "cnn2d_digits": (digits.description, digits.load, digits.flax_model),
    }


def layouts(args: argparse.Namespace, mesh: Mesh) -> list[dict[str, Any]]:
    """Section 4: vmap against map on the two CNNs, and what auto chooses."""
    rows = []
    models = cnn_models()
    for name in args.cnn_models.split(","):
        description, load, make_model = models[name]
        steps = args.cnn2d_steps if name == "cnn2d_digits" else args.cnn_steps
        # nn.Conv, whatever the default conv_impl: the matmul convolutions are the variants.
        model = make_model().clone(conv_impl="lax")
        data, optimizer = load(), optax.adam(common.LEARNING_RATE)
        trainer = builtin_program(model, optimizer)
        run = seed_runner(model, optimizer, trainer, data, steps, mesh)
        # The same CNN with its convolutions computed as matmuls (model.conv_impl).
        as_matmuls = model.clone(conv_impl="matmul")
        run_matmul = seed_runner(
            as_matmuls, optimizer,
            builtin_program(as_matmuls, optimizer), data, steps, mesh)
        for num_seeds in common.parse_ints(args.cnn_seeds):
            timings = time_variants({
                "vmap": partial(run, num_seeds, layout="vmap"),
                "map": partial(run, num_seeds, layout="map"),
                f"map, {MAP_WIDTH} per step": partial(run, num_seeds, layout="map",
                                                      seeds_per_map_step=MAP_WIDTH),
                "vmap, matmul conv": partial(run_matmul, num_seeds, layout="vmap"),
                "map, matmul conv": partial(run_matmul, num_seeds, layout="map"),
            }, None, 0, args.cnn_repeats)
            auto_s, auto = common.timed(partial(run, num_seeds, layout="auto"))
            for variant, row in timings.items():
                rows.append({"model": name, "description": description, "steps": steps,
                             "num_seeds": num_seeds, "variant": variant, **row,
                             "ms_per_seed_step": 1e3 * row["wall_s"] / (num_seeds * steps),
                             "vs_vmap": row["wall_s"] / timings["vmap"]["wall_s"],
                             "auto_plan": auto.plan, "auto_first_call_s": auto_s})
            print(f"{name} S={num_seeds}: " + ", ".join(
                f"{k} {v['wall_s']:.2f} s" for k, v in timings.items())
                + f"; auto chose {auto.plan['layout']}", flush=True)
    return rows


def report(out: dict[str, Any]) -> str:
    """The markdown: header, scaling table, chunking table, layout table."""
    peak, args = out["matmul"], out["arguments"]
    rows = out["scaling"]
    main_rows = [r for r in rows if r["variant"] == ONE_CHUNK]
    lines = [
        f"### Seeds per second: negres training {WORKLOAD.description}",
        "",
        f"batch {common.BATCH_SIZE}, {args['steps']} steps, median of {args['repeats']}, "
        f"compilation excluded; {out['num_devices']} device(s) ({out['device_kind']}); peak = "
        f"jitted float32 {peak['size']}x{peak['size']} matmul per device, measured beside each S "
        f"(median over the run: {peak['median_flops_per_s'] / 1e9:.1f} GFLOP/s). "
        f"FLOPs: XLA cost analysis of one step (fraction_of_peak.py's count); matmul-only "
        f"count in the last column. {common.machine_line(out['machine'])}. Shared machine: load "
        f"average {out['load_average_start']} at start, {out['load_average_end']} at end; "
        f"whole run {out['wall_s']:.0f} s.",
        "",
        common.markdown_table(
            ["S", "plan (layout, chunks x seeds)", "wall s", "seeds/s", "seed-steps/s",
             "MFLOP / seed-step (XLA)", "GFLOP/s (XLA)", "peak GFLOP/s", "fraction of peak",
             "fraction (matmuls only)"],
            [(r["num_seeds"], plan_text(r["plan"]), f"{r['wall_s']:.3f}",
              f"{r['seeds_per_s']:.1f}", f"{r['seed_steps_per_s']:.0f}",
              f"{(r['flops_per_step_cost_analysis'] or float('nan')) / r['num_seeds'] / 1e6:.2f}",
              f"{r['achieved_flops_per_s'] / 1e9:.2f}", f"{r['peak_flops_per_s'] / 1e9:.1f}",
              f"{r['fraction_of_peak']:.1%}", f"{r['fraction_of_peak_matmul_only']:.1%}")
             for r in main_rows]),
    ]
    chunked = [r for r in rows if r["num_seeds"] >= 2 * args["chunk"]]
    if chunked:
        lines += [
            "", f"#### What chunks cost (S >= {2 * args['chunk']}, timed interleaved)", "",
            common.markdown_table(
                ["S", "variant", "plan (layout, chunks x seeds)", "wall s", "seeds/s",
                 "time vs one chunk"],
                [(r["num_seeds"], r["variant"], plan_text(r["plan"]), f"{r['wall_s']:.3f}",
                  f"{r['seeds_per_s']:.1f}", f"{r['vs_one_chunk']:.2f}x") for r in chunked]),
            "", "Automatic chunk choice, largest S: "
            + "; ".join(f"{r['variant']}: {r['plan']['reason']}" for r in chunked
                        if r["num_seeds"] == chunked[-1]["num_seeds"]
                        and r["variant"] != f"seeds_per_chunk={args['chunk']}"),
        ]
    if out["layouts"]:
        lines += [
            "", f"#### Layout of convolutional models (batch {common.BATCH_SIZE}, median of "
            f"{args['cnn_repeats']}, interleaved)", "",
            common.markdown_table(
                ["model", "steps", "S", "layout", "plan", "wall s", "ms / seed-step",
                 "time vs vmap", "first call s (compile + run)"],
                [(r["model"], r["steps"], r["num_seeds"], r["variant"], plan_text(r["plan"]),
                  f"{r['wall_s']:.2f}", f"{r['ms_per_seed_step']:.1f}", f"{r['vs_vmap']:.2f}x",
                  f"{r['first_call_s']:.1f}") for r in out["layouts"]]),
            "", "`layout=\"auto\"` chose:", "",
        ]
        seen = set()
        for r in out["layouts"]:
            if (r["model"], r["num_seeds"]) not in seen:
                seen.add((r["model"], r["num_seeds"]))
                lines.append(f"- {r['model']}, S={r['num_seeds']}: **{r['auto_plan']['layout']}**"
                             f" ({r['auto_plan']['reason']}; first call "
                             f"{r['auto_first_call_s']:.1f} s)")
    return "\n".join(lines)


def save(out: dict[str, Any], path: Path, markdown: str) -> Path:
    if path.parent.resolve() == common.RESULTS_DIR.resolve():
        path = common.write_json(path.stem, out)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=float))
    path.with_suffix(".md").write_text(markdown + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=DEFAULT_SEEDS)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=128,
                        help="seeds_per_chunk of the chunked runs (at S >= 2 x this)")
    parser.add_argument("--small-budget-mib", type=int, default=32,
                        help="forced per-device memory budget of the second chunked run")
    parser.add_argument("--matmul-size", type=int, default=0,
                        help="n of the peak matmul (0: 2048 on CPU, 8192 otherwise)")
    parser.add_argument("--matmul-repeats", type=int, default=3,
                        help="matmuls timed before each training run")
    parser.add_argument("--cnn-models", default="cnn_mnist1d,cnn2d_digits")
    parser.add_argument("--cnn-seeds", default="8,32")
    parser.add_argument("--cnn-steps", type=int, default=20, help="MNIST-1D CNN steps")
    parser.add_argument("--cnn2d-steps", type=int, default=1, help="digits 2-D CNN steps")
    parser.add_argument("--cnn-repeats", type=int, default=1)
    parser.add_argument("--no-cnn", action="store_true", help="skip the layout section")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: S in {1, 4, 16}, 20 steps, 1 repeat, the MNIST-1D "
                        "CNN only, at S = 4")
    parser.add_argument("--out", default=str(common.RESULTS_DIR / "seeds_scaling.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.repeats, args.chunk = "1,4,16", 20, 1, 4
        args.small_budget_mib, args.matmul_repeats = 1, 1
        args.cnn_models, args.cnn_seeds, args.cnn_steps, args.cnn_repeats = "cnn_mnist1d", "4", 2, 1

    start, load_start = time.perf_counter(), common.load_average()
    info = common.machine()
    mesh = seed_mesh()
    device = mesh.devices.flat[0]
    size = args.matmul_size or (2048 if device.platform == "cpu" else 8192)
    peak = MatmulPeak(mesh, size)
    out: dict[str, Any] = {"workload": WORKLOAD.name, "machine": info,
                           "num_devices": mesh.size, "device_kind": device.device_kind,
                           "platform": device.platform, "arguments": vars(args)}
    out["scaling"] = scaling(args, mesh, peak)
    out["layouts"] = [] if args.no_cnn else layouts(args, mesh)
    peaks = [r["peak_flops_per_s"] for r in out["scaling"]]
    out["matmul"] = {"size": size, "flops": peak.flops, "cost_analysis_flops": peak.reported_flops,
                     "median_flops_per_s": statistics.median(peaks)}
    out |= {"load_average_start": load_start, "load_average_end": common.load_average(),
            "wall_s": time.perf_counter() - start}
    markdown = report(out)
    print("\n" + markdown)
    print(f"\nwritten {save(out, Path(args.out), markdown)}")


if __name__ == "__main__":
    main()
