"""Seeds per second on an accelerator: one run, one process, the tables a reader wants.

Measured on JAX's default backend, on its first device (one ``seeds`` mesh of one device):

1. Scaling. Two workloads trained by negres's public entry point (``train_seeds`` with one
   ``builtin_program`` and its ``SeedTrainer`` reused across S): the digits MLP
   (64 -> 64 -> 10) and the MNIST-1D CNN (3 x conv 25, k=3, stride 2 -> 64 -> 10), both
   Adam 1e-2, batch 128, ``--steps`` steps (100; 5 in a dry run), for S = 1, 2, 4, ...,
   ``--max-seeds`` (4096). Each S is called once untimed (compilation, the layout probe,
   the memory analysis of the chunk choice), then timed ``--repeats`` times; the median is
   reported. A timed call is a whole ``train_seeds`` call: data placement, initialisation,
   training, results back on the host. S stops growing for a workload when the next S
   (predicted to cost twice the last one) would not fit in the workload's share of
   ``--budget-s``; the table says which S were not reached.
2. Fraction of peak. A jitted float32 ``(n, n) @ (n, n)`` (n = 8192; 256 in a dry run),
   ``2 n^3`` FLOPs, median of ``MATMUL_REPEATS`` calls, before and after the training, at
   JAX's default matmul precision (what the training uses; on GPUs XLA may compute float32
   dots in TF32 there) and at ``Precision.HIGHEST`` (true float32). Which one the default
   is gets measured too: the error of each against a float64 product on the host. The
   training's FLOPs are XLA's cost analysis of one negres training step (batch draw,
   forward, backward, Adam, divergence guard) lifted over the S seeds, times the steps;
   one step is analysed on its own because XLA counts a loop body once, whatever its trip
   count, and its lowered HLO is analysed rather than a compilation of it (see
   ``step_flops``). Achieved FLOP/s / the default-precision peak is the fraction of peak.
3. Chunks chosen from device memory: every S's ``TrainResult.plan`` (layout, chunks x
   seeds per chunk, devices, padding, and negres's reason, with the compiled segment's
   memory need against its per-device budget), and that budget.
4. wall(S) / wall(1): the price of S seeds in units of one seed's.
5. Convolutions: the CNN's ``conv_impl="auto"`` means ``"matmul"`` (products of unfolded
   patches) on a CPU, where that was measured 5-25x faster, and ``"lax"`` (native
   convolutions) elsewhere, unmeasured there. The CNN workload is timed with each, at
   ``--conv-seeds`` (64 and 512; 2 in a dry run): per S one untimed call of each
   (compilation; an impl that is section 1's own reuses its compiled code), then
   ``--repeats`` timed ``train_seeds`` calls of each, interleaved, median reported.
   At most ``CONV_SHARE`` of ``--budget-s``: an S predicted not to fit is not measured,
   and the table says so. Reports matmul / lax and whether ``auto`` picked the faster.

Writes ``results.json`` and ``results.md`` into ``--out`` and prints the markdown.
Torch-free on purpose (``compare_common`` imports torch, which an accelerator environment
does not need): the two workloads are ``compare_common.WORKLOADS``' own definitions,
restated here and checked equal to them by tests/test_accelerator_bench.py.

    bash bench/accelerator.sh                    # installs the GPU build of JAX, then runs this
    PYTHONPATH=. python bench/accelerator.py [--out DIR] [--budget-s 420] [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, SingleDeviceSharding
from tables import markdown_table

from negres.models import CNN, MLP, conv_impl_for
from negres.seeds import over_seeds
from negres.sharding import seed_mesh
from negres.training.builtin import builtin_data, builtin_program, train_seeds
from negres.training.driver import TrainResult
from negres.training.plan import Scale, memory_budget
from negres.training.step import SeedTrainer, make_seed_trainer

LEARNING_RATE = 1e-2
BATCH_SIZE = 128
# The MNIST-1D CNN of configs/mnist1d.py, as compare_common.py defines it.
CNN_CHANNELS, CNN_KERNEL, CNN_STRIDE, CNN_DENSE = (25, 25, 25), 3, 2, 64
MATMUL_REPEATS = 10
# Predicted cost of the next S relative to the last one: S doubles, and once the device is
# busy so does the time; below that compilation dominates and this overestimates.
GROWTH = 2.0
# Kept back from the budget for the second peak measurement and writing the results.
RESERVE_S = 10.0
# Relative error of a float32 (n x n) product above which the precision is not full
# float32: float32 rounding gives about 4e-7 at n = 512, TF32 (10-bit mantissa) 1e-4 or more.
REDUCED_PRECISION_ERROR = 1e-5
NOT_REACHED = "not reached within budget"
CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin")
# Section 5: the workload, the implementations compared and their share of --budget-s.
CONV_WORKLOAD = "cnn_mnist1d"
CONV_IMPLS = ("lax", "matmul")
CONV_SHARE = 0.15

Row = dict[str, Any]


@dataclass(frozen=True)
class Workload:
    """A model, its training data and what to call it in the tables."""

    name: str
    description: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (x_train, y_train)
    model: Callable[[], nn.Module]


def load_digits_train() -> tuple[np.ndarray, np.ndarray]:
    """compare_common.load_digits_data's training arrays: all 1,797 digits, (N, 8, 8, 1)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32)[..., None], bunch.target.astype(np.int32)


def load_mnist1d_train() -> tuple[np.ndarray, np.ndarray]:
    """compare_common.load_mnist1d_data's training arrays: 4,000 signals generated
    locally (never downloaded), (N, 40, 1)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # make_dataset reseeds NumPy's global generator
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    return data["x"].astype(np.float32)[..., None], data["y"].astype(np.int32)


WORKLOADS: dict[str, Workload] = {
    "mlp_digits": Workload(
        "mlp_digits", "digits (1797 x 8x8 in [0, 1]), MLP 64 -> 64 (ReLU) -> 10",
        load_digits_train, lambda: MLP(num_outputs=10, hidden_sizes=(64,))),
    "cnn_mnist1d": Workload(
        "cnn_mnist1d", "MNIST-1D (4000 train x 40 x 1), the MNIST-1D CNN: 3 x conv 25 "
        "(k=3, stride 2) -> 64 -> 10", load_mnist1d_train,
        lambda: CNN(num_outputs=10, channels=CNN_CHANNELS, kernel_size=CNN_KERNEL,
                    strides=CNN_STRIDE, dense_size=CNN_DENSE)),
}


# --------------------------------------------------------------------------- pure logic


def seed_counts(max_seeds: int) -> list[int]:
    """1, 2, 4, ... up to ``max_seeds``."""
    return [2**k for k in range(max(0, int(math.log2(max_seeds))) + 1)]


def next_fits(spent_s: float, last_cost_s: float, share_s: float,
              growth: float = GROWTH) -> bool:
    """Whether the next S, predicted to cost ``growth`` times the last S, ends within
    ``share_s`` of a workload that has spent ``spent_s``."""
    return spent_s + growth * last_cost_s <= share_s


def grow_seeds(counts: list[int], measure: Callable[[int, float], Row], share_s: float,
               clock: Callable[[], float] = time.perf_counter) -> tuple[list[Row], list[int]]:
    """``measure(S, deadline)`` for each S of ``counts`` in turn while the next one is
    predicted to fit in ``share_s`` seconds (the first S is always measured); ``deadline``
    is the ``clock()`` time the share ends. Returns the rows and the counts not reached."""
    begin = clock()
    rows: list[Row] = []
    last_cost = 0.0
    for i, num_seeds in enumerate(counts):
        if rows and not next_fits(clock() - begin, last_cost, share_s):
            return rows, counts[i:]
        started = clock()
        rows.append(measure(num_seeds, begin + share_s))
        last_cost = clock() - started
    return rows, []


def predicted_conv_cost(num_seeds: int, repeats: int, last: Row | None = None,
                        section_1: list[Row] | None = None) -> float | None:
    """Seconds section 5 is predicted to spend at S = ``num_seeds`` (one untimed and
    ``repeats`` timed calls of each implementation), or None without a basis.

    From ``last``, the section's row of a smaller S, else from the workload's section 1
    row of the largest S up to ``num_seeds`` (else its smallest), standing in for each
    implementation: per implementation, its compilation (first call less the median call)
    again, plus the calls, whose time grows in proportion to S (an overestimate until the
    device is busy).
    """
    if last is None and section_1:
        below = [r for r in section_1 if r["num_seeds"] <= num_seeds]
        row = (max(below, key=lambda r: r["num_seeds"]) if below
               else min(section_1, key=lambda r: r["num_seeds"]))
        last = {"num_seeds": row["num_seeds"], **dict.fromkeys(CONV_IMPLS, row)}
    if last is None:
        return None
    scale = num_seeds / last["num_seeds"]
    return sum(max(0.0, last[impl]["first_call_s"] - last[impl]["wall_s"])
               + (1 + repeats) * scale * last[impl]["wall_s"] for impl in CONV_IMPLS)


def cost_analysis_flops(stage: Any) -> float | None:
    """``flops`` of a lowered or compiled computation's cost analysis (as
    fraction_of_peak.py reads it), or None where the backend reports none."""
    analysis = stage.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


# --------------------------------------------------------------------------- peak


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call; ``fn`` must block until its work is done."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def matmul_peak(size: int, precision: jax.lax.Precision | None, device: jax.Device,
                repeats: int = MATMUL_REPEATS) -> dict[str, Any]:
    """FLOP/s of a jitted float32 ``(size, size) @ (size, size)`` on ``device``."""
    keys = jax.random.split(jax.random.PRNGKey(0))
    a, b = (jax.device_put(jax.random.normal(k, (size, size), jnp.float32), device)
            for k in keys)
    matmul = jax.jit(partial(jnp.matmul, precision=precision))
    jax.block_until_ready(matmul(a, b))  # compile
    times = [timed(lambda: jax.block_until_ready(matmul(a, b)))[0] for _ in range(repeats)]
    seconds = statistics.median(times)
    return {"size": size, "median_s": seconds, "all_measured_s": times,
            "flops_per_s": 2.0 * size**3 / seconds,
            # Compiled: the GPU plugins do not analyse lowered HLO.
            "cost_analysis_flops": cost_analysis_flops(matmul.lower(a, b).compile())}


def precision_error(precision: jax.lax.Precision | None, device: jax.Device,
                    size: int = 512) -> float:
    """Relative Frobenius error of a float32 product on ``device`` against float64."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    got = np.asarray(jax.jit(partial(jnp.matmul, precision=precision))(
        jax.device_put(a, device), jax.device_put(b, device)), np.float64)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    return float(np.linalg.norm(got - exact) / np.linalg.norm(exact))


# --------------------------------------------------------------------------- training


def step_flops(trainer: SeedTrainer, data: dict[str, np.ndarray],
               num_seeds: int) -> tuple[float | None, str]:
    """XLA's FLOP count of one negres training step of ``num_seeds`` seeds (the step the
    trainer scans: batch draw, forward, backward, optimizer update, divergence guard), and
    what was analysed.

    Counted on the lowered HLO, before XLA's optimisations: a tenth of a second instead of
    a compilation per S (seconds; more with a GPU's convolution autotuning), and within 1%
    of the compiled count (on CPU, the MLP at S = 4: 11.02 MFLOP lowered, 11.08 compiled;
    fraction_of_peak.step_flops, whose step has no divergence guard, counts 10.91). It is
    lowered for the host's CPU: JAX analyses lowered HLO only on backends built in, not on
    plugins such as CUDA's; the program is the one the accelerator runs (traced while the
    accelerator is the default backend, so the CNN keeps its native convolutions), lowered
    by the same rules. The compiled count where the lowered one is not reported.
    """
    try:
        device, where = jax.devices("cpu")[0], "lowered HLO, for the host CPU"
    except (RuntimeError, ValueError):  # JAX_PLATFORMS without cpu
        device, where = jax.devices()[0], "lowered HLO"
    sharding = SingleDeviceSharding(device)

    def abstract(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    data_shapes = jax.tree_util.tree_map(lambda a: abstract(a.shape, a.dtype), data)
    example = jax.tree_util.tree_map(
        lambda a: abstract((trainer.batch_size, *a.shape[1:]), a.dtype), data)
    keys = abstract((num_seeds, 2), jnp.uint32)
    state = jax.tree_util.tree_map(lambda a: abstract(a.shape, a.dtype),
                                   jax.eval_shape(trainer.init, keys, {}, example))
    step = jax.jit(over_seeds(trainer.steps_one(1), seeded_args=(0, 1, 2, 3, 4)))
    lowered = step.lower(state, abstract((num_seeds,), jnp.int32), keys, {}, (),
                         abstract((), jnp.int32), data_shapes)
    try:
        flops = cost_analysis_flops(lowered)
    except NotImplementedError:
        flops = None
    if flops is None:
        flops, where = cost_analysis_flops(lowered.compile()), "compiled executable"
    return flops, where


@dataclass(frozen=True)
class Prepared:
    """A workload's model, optimizer and training data with its negres program and trainer,
    built once: ``train_seeds`` calls given the same program and trainer reuse their
    compiled code (and the layout measured for the model)."""

    model: nn.Module
    optimizer: optax.GradientTransformation
    x: np.ndarray
    y: np.ndarray
    steps: int
    program: Any
    trainer: SeedTrainer

    def run(self, num_seeds: int, mesh: Mesh, layout: str = "auto") -> TrainResult:
        """One whole ``train_seeds`` call, blocked until its state is computed."""
        result = train_seeds(self.model, self.optimizer, self.x, self.y, num_seeds=num_seeds,
                             steps=self.steps, batch_size=BATCH_SIZE, program=self.program,
                             scale=Scale(trainer=self.trainer, mesh=mesh, layout=layout))
        jax.block_until_ready(result.state)
        return result


def prepare(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int) -> Prepared:
    optimizer = optax.adam(LEARNING_RATE)
    program = builtin_program(model, optimizer)
    trainer = make_seed_trainer(program, batch_size=BATCH_SIZE, eval_every=steps,
                                has_eval=False)
    return Prepared(model, optimizer, x, y, steps, program, trainer)


def measure_workload(workload: Workload, prepared: Prepared, *, max_seeds: int, repeats: int,
                     share_s: float, mesh: Mesh) -> dict[str, Any]:
    """Sections 1, 3 and 4 for one workload, and its FLOPs for section 2."""
    begin = time.perf_counter()
    model, steps, trainer = prepared.model, prepared.steps, prepared.trainer
    data = builtin_data(prepared.x, prepared.y)
    run = partial(prepared.run, mesh=mesh)

    def measure(num_seeds: int, deadline: float) -> Row:
        first_s, result = timed(partial(run, num_seeds))
        walls: list[float] = []
        while len(walls) < repeats:
            wall, result = timed(partial(run, num_seeds))
            walls.append(wall)
            # At least one timed call; more only while the share lasts.
            if time.perf_counter() + wall > deadline:
                break
        flops_step, flops_source = step_flops(trainer, data, num_seeds)
        wall = statistics.median(walls)
        print(f"{workload.name} S={num_seeds:>5}: {wall:8.4f} s ({len(walls)} timed, first "
              f"call {first_s:.1f} s), {plan_text(result.plan)}", flush=True)
        return {
            "num_seeds": num_seeds, "wall_s": wall, "all_measured_s": walls,
            "first_call_s": first_s, "seeds_per_s": num_seeds / wall,
            "seed_steps_per_s": num_seeds * steps / wall,
            "plan": result.plan, "flops_per_step": flops_step, "flops_source": flops_source,
            "achieved_flops_per_s": None if flops_step is None else flops_step * steps / wall,
        }

    rows, not_reached = grow_seeds(seed_counts(max_seeds), measure,
                                   share_s - (time.perf_counter() - begin))
    for row in rows:
        row["wall_vs_one"] = row["wall_s"] / rows[0]["wall_s"]
    return {"description": workload.description, "steps": steps, "batch_size": BATCH_SIZE,
            # CNN's "auto" means matmuls on a CPU and native convolutions elsewhere.
            "conv_impl": (conv_impl_for(model.conv_impl, mesh.devices.flat[0].platform)
                          if isinstance(model, CNN) else None),
            "share_s": share_s, "spent_s": time.perf_counter() - begin,
            "rows": rows, "not_reached": not_reached}


def measure_convolutions(workload: Workload, prepared: Prepared, *, counts: list[int],
                         repeats: int, share_s: float, mesh: Mesh, layout: str,
                         section_1: list[Row]) -> dict[str, Any]:
    """Section 5: the workload's training with ``conv_impl`` ``"lax"`` and ``"matmul"``.

    ``prepared`` is section 1's: the implementation its model resolves to reuses its
    program, trainer and compiled code; the other gets a clone of the model.
    ``section_1``: the workload's section 1 rows, to predict the cost of the first S.
    """
    begin = time.perf_counter()
    platform = mesh.devices.flat[0].platform
    auto = conv_impl_for("auto", platform)
    own = conv_impl_for(prepared.model.conv_impl, platform)
    runs = {impl: prepared if impl == own else prepare(
        prepared.model.clone(conv_impl=impl), prepared.x, prepared.y, prepared.steps)
        for impl in CONV_IMPLS}

    def measure(num_seeds: int, deadline: float) -> Row:
        first_s: dict[str, float] = {}
        plans: dict[str, dict[str, Any]] = {}
        for impl in CONV_IMPLS:  # compilation (or cached code) and the layout choice
            first_s[impl], result = timed(partial(runs[impl].run, num_seeds, mesh, layout))
            plans[impl] = result.plan
        walls: dict[str, list[float]] = {impl: [] for impl in CONV_IMPLS}
        for i in range(repeats):
            # Interleaved, in alternating order, so a drift of the machine hits both alike.
            for impl in CONV_IMPLS if i % 2 == 0 else CONV_IMPLS[::-1]:
                walls[impl].append(timed(partial(runs[impl].run, num_seeds, mesh, layout))[0])
            # At least one timed call of each; more only while the share lasts.
            if time.perf_counter() + sum(w[-1] for w in walls.values()) > deadline:
                break
        row: Row = {"num_seeds": num_seeds}
        for impl in CONV_IMPLS:
            row[impl] = {"wall_s": statistics.median(walls[impl]),
                         "all_measured_s": walls[impl], "first_call_s": first_s[impl],
                         "plan": plans[impl], "section_1_program": runs[impl] is prepared}
        ratio = row["matmul"]["wall_s"] / row["lax"]["wall_s"]
        faster = "matmul" if ratio < 1 else "lax"
        row |= {"matmul_over_lax": ratio, "faster": faster, "auto_picks": auto,
                "auto_picked_faster": auto == faster}
        print(f"convolutions S={num_seeds:>5}: lax {row['lax']['wall_s']:.4f} s, matmul "
              f"{row['matmul']['wall_s']:.4f} s ({len(walls['lax'])} timed each): "
              f"matmul / lax {ratio:.2f}, auto picks {auto}", flush=True)
        return row

    rows: list[Row] = []
    not_reached: list[int] = []
    predicted_s = left_s = None
    for i, num_seeds in enumerate(counts):
        spent = time.perf_counter() - begin
        predicted = predicted_conv_cost(num_seeds, repeats, rows[-1] if rows else None,
                                        section_1)
        if predicted is not None and spent + predicted > share_s:
            not_reached, predicted_s, left_s = counts[i:], predicted, share_s - spent
            print(f"convolutions S={num_seeds:>5}: not measured, predicted {predicted:.0f} s "
                  f"with {left_s:.0f} s of the share left", flush=True)
            break
        rows.append(measure(num_seeds, begin + share_s))
    return {"workload": workload.name, "description": workload.description,
            "steps": prepared.steps, "batch_size": BATCH_SIZE, "layout": layout,
            "platform": platform, "auto_picks": auto, "share_s": share_s,
            "spent_s": time.perf_counter() - begin, "rows": rows,
            "not_reached": not_reached, "not_reached_predicted_s": predicted_s,
            "not_reached_left_s": left_s}


# --------------------------------------------------------------------------- report


def plan_text(plan: dict[str, Any]) -> str:
    layout = plan["layout"] if plan["layout"] == "vmap" else (
        f"map ({plan['seeds_per_map_step']}/step)")
    pad = f", +{plan['padded_seeds']} pad" if plan["padded_seeds"] else ""
    devices = plan["num_devices"]
    return (f"{plan['num_chunks']} x {plan['seeds_per_chunk']} ({layout}{pad}, {devices} "
            f"device{'s' if devices > 1 else ''})")


def _fraction(value: float | None, peak: float) -> str:
    return "n/a" if value is None else f"{value / peak:.2%}"


def workload_table(result: dict[str, Any], peak: float, peak_highest: float) -> str:
    headers = ["S", "wall s", "seeds/s", "seed-steps/s", "wall / wall(1)",
               "plan: chunks x seeds (layout, devices)", "GFLOP/s", "fraction of peak",
               "fraction of f32 peak"]
    rows = [(r["num_seeds"], f"{r['wall_s']:.4f}", f"{r['seeds_per_s']:.1f}",
             f"{r['seed_steps_per_s']:.0f}", f"{r['wall_vs_one']:.2f}", plan_text(r["plan"]),
             "n/a" if r["achieved_flops_per_s"] is None
             else f"{r['achieved_flops_per_s'] / 1e9:.2f}",
             _fraction(r["achieved_flops_per_s"], peak),
             _fraction(r["achieved_flops_per_s"], peak_highest)) for r in result["rows"]]
    missing = result["not_reached"]
    if missing:
        counts = str(missing[0]) if len(missing) == 1 else f"{missing[0]} to {missing[-1]}"
        rows.append((counts, NOT_REACHED, *["-"] * (len(headers) - 2)))
    return markdown_table(headers, rows)


def convolutions_table(result: dict[str, Any]) -> str:
    headers = ["S", "lax s", "matmul s", "matmul / lax", "auto picks", "auto picked the faster",
               "layout (lax, matmul)"]
    rows = [(r["num_seeds"], f"{r['lax']['wall_s']:.4f}", f"{r['matmul']['wall_s']:.4f}",
             f"{r['matmul_over_lax']:.2f}", r["auto_picks"],
             "yes" if r["auto_picked_faster"] else f"**no** ({r['faster']} is faster)",
             f"{r['lax']['plan']['layout']}, {r['matmul']['plan']['layout']}")
            for r in result["rows"]]
    rows += [(n, NOT_REACHED, *["-"] * (len(headers) - 2)) for n in result["not_reached"]]
    return markdown_table(headers, rows)


def convolutions_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "", f"### convolutions: `conv_impl` lax vs matmul in {result['workload']}'s training",
        "",
        f"`conv_impl=\"auto\"` picks {result['auto_picks']} on this backend "
        f"({result['platform']}). The {result['workload']} training of section 1 "
        f"({result['steps']} steps, layout {result['layout']}) with native convolutions "
        "(lax) and with matmuls of unfolded patches (matmul): per S one untimed call of each "
        "(compilation), then the median of the timed calls, interleaved; "
        f"{result['spent_s']:.0f} s of its {result['share_s']:.0f} s share.",
        "", convolutions_table(result),
    ]
    if result["not_reached"]:
        lines += ["", f"S = {result['not_reached'][0]} and above not measured: predicted "
                  f"{result['not_reached_predicted_s']:.0f} s, with "
                  f"{result['not_reached_left_s']:.0f} s of the share left."]
    return lines


def report(out: dict[str, Any]) -> str:
    mm = out["matmul"]
    peak, highest = mm["default"]["flops_per_s"], mm["highest"]["flops_per_s"]
    budget = out["memory_budget_bytes"]
    sources = ", ".join(sorted({r["flops_source"] for w in out["workloads"].values()
                                for r in w["rows"]}))
    lines = [
        f"## negres on {out['device_kind']}: seeds per second, fraction of peak, chunks",
        "",
        f"{out['date_utc']}; {out['device_kind']} ({out['platform']}, {out['devices']}); "
        f"JAX {out['jax_version']}, jaxlib {out['jaxlib_version']}, Python {out['python']}; "
        f"whole run {out['total_s']:.0f} s of a {out['budget_s']:.0f} s budget"
        + (" (**dry run**: CPU, tiny sizes, the numbers mean nothing)" if out["dry_run"] else "")
        + ".",
        "",
        f"Peak: jitted float32 {mm['size']}x{mm['size']} matmul, median of {MATMUL_REPEATS} "
        f"before and after the training: {peak / 1e12:.2f} TFLOP/s at JAX's default matmul "
        f"precision (`jax_default_matmul_precision` = {mm['default_precision_setting']!r}; "
        f"error vs float64 {mm['default_error']:.1e}: {mm['default_verdict']}), "
        f"{highest / 1e12:.2f} TFLOP/s at `Precision.HIGHEST` (error "
        f"{mm['highest_error']:.1e}). The training runs at the default precision: "
        "\"fraction of peak\" is against the default's peak, \"fraction of f32 peak\" "
        "against HIGHEST's.",
        "",
        "Each S: one untimed call (compilation), then the median of up to "
        f"{out['arguments']['repeats']} timed `train_seeds` calls (placement, init, training, "
        "results on the host). FLOPs: XLA's cost analysis of one negres training step over "
        f"the S seeds ({sources}), times the steps. Chunks: negres's automatic plan against its "
        "per-device memory budget of "
        + ("(none reported)" if budget is None else f"{budget / 2**30:.1f} GiB") + ".",
    ]
    for name, result in out["workloads"].items():
        rows = result["rows"]
        cheap = [r["num_seeds"] for r in rows if r["wall_vs_one"] <= 2.0]
        lines += [
            "", f"### {name}: {result['description']}", "",
            f"Adam {LEARNING_RATE:g}, batch {result['batch_size']}, {result['steps']} steps"
            + (f", convolutions: {result['conv_impl']}" if result["conv_impl"] else "")
            + f"; {result['spent_s']:.0f} s of its {result['share_s']:.0f} s share.",
            "", workload_table(result, peak, highest), "",
            f"Largest S within twice one seed's wall time: {max(cheap)}; the largest S "
            f"measured, {rows[-1]['num_seeds']}, took {rows[-1]['wall_vs_one']:.1f}x.",
            "", f"Plan of the largest S: {rows[-1]['plan']['reason']}.",
        ]
        chunked = [r for r in rows if r["plan"]["num_chunks"] > 1]
        if chunked:
            lines += ["", f"Chunked from S = {chunked[0]['num_seeds']}: "
                      f"{chunked[0]['plan']['reason']}."]
    lines += convolutions_lines(out["convolutions"])
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                              / "accelerator"))
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="wall-clock budget of the whole run, seconds")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, the same files: checks that the script works")
    parser.add_argument("--steps", type=int, default=0, help="steps per run (0: 100; dry 5)")
    parser.add_argument("--max-seeds", type=int, default=0, help="largest S (0: 4096; dry 2)")
    parser.add_argument("--repeats", type=int, default=0, help="timed calls per S (0: 3; dry 2)")
    parser.add_argument("--matmul-size", type=int, default=0,
                        help="n of the peak matmul (0: 8192; dry 256)")
    parser.add_argument("--conv-seeds", default="",
                        help="S of the convolutions section, comma-separated (default: 64,512; "
                             "dry 2)")
    parser.add_argument("--conv-layout", default="", choices=("", "auto", "vmap", "map"),
                        help="layout of the convolutions section (default: auto, as users "
                             "get; dry vmap: the layout probe of lax would double its time)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="measure even when JAX's default backend is the CPU")
    args = parser.parse_args(argv)
    dry = args.dry_run
    args.steps = args.steps or (5 if dry else 100)
    args.max_seeds = args.max_seeds or (2 if dry else 4096)
    args.repeats = args.repeats or (2 if dry else 3)
    args.matmul_size = args.matmul_size or (256 if dry else 8192)
    args.conv_seeds = sorted(int(s) for s in (args.conv_seeds or ("2" if dry else "64,512"))
                             .split(","))
    args.conv_layout = args.conv_layout or ("vmap" if dry else "auto")
    return args


def main(argv: list[str] | None = None) -> None:
    start = time.perf_counter()
    args = parse_args(argv)
    if args.dry_run:
        # Before anything touches a backend: a GPU machine's dry run also stays on the CPU,
        # and XLA:CPU compiles without LLVM's optimisations, about 8x faster (the dry run's
        # time is almost all compilation, and its numbers mean nothing anyway).
        jax.config.update("jax_platforms", "cpu")
        os.environ["XLA_FLAGS"] = " ".join(
            [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()
    devices = jax.devices()
    device = devices[0]
    print(f"jax.devices(): {devices}\ndevice kind: {device.device_kind}", flush=True)
    if device.platform == "cpu" and not (args.dry_run or args.allow_cpu):
        # A GPU build that failed to find its GPU falls back to the CPU with a warning;
        # minutes of CPU numbers labelled as an accelerator's would be worse than nothing.
        sys.exit("accelerator.py: JAX's default backend is the CPU; install the GPU build "
                 "(bench/accelerator.sh) or pass --allow-cpu / --dry-run")
    mesh = seed_mesh([device])

    precision_setting = jax.config.jax_default_matmul_precision
    errors = {name: precision_error(p, device)
              for name, p in (("default", None), ("highest", jax.lax.Precision.HIGHEST))}
    peaks_before = {name: matmul_peak(args.matmul_size, p, device)
                    for name, p in (("default", None), ("highest", jax.lax.Precision.HIGHEST))}

    workloads: dict[str, Any] = {}
    prepared: dict[str, Prepared] = {}
    names = list(WORKLOADS)
    conv_share = CONV_SHARE * args.budget_s
    for i, name in enumerate(names):
        workload = WORKLOADS[name]
        prepared[name] = prepare(workload.model(), *workload.load(), args.steps)
        # Each workload gets an equal part of what is left, so time the first leaves
        # unused goes to the next.
        left = args.budget_s - RESERVE_S - conv_share - (time.perf_counter() - start)
        workloads[name] = measure_workload(
            workload, prepared[name], max_seeds=args.max_seeds, repeats=args.repeats,
            share_s=max(0.0, left / (len(names) - i)), mesh=mesh)

    left = args.budget_s - RESERVE_S - (time.perf_counter() - start)
    convolutions = measure_convolutions(
        WORKLOADS[CONV_WORKLOAD], prepared[CONV_WORKLOAD], counts=args.conv_seeds,
        repeats=args.repeats, share_s=max(0.0, min(conv_share, left)), mesh=mesh,
        layout=args.conv_layout,
        section_1=workloads[CONV_WORKLOAD]["rows"])

    matmul: dict[str, Any] = {"size": args.matmul_size,
                              "default_precision_setting": precision_setting}
    for name, p in (("default", None), ("highest", jax.lax.Precision.HIGHEST)):
        after = matmul_peak(args.matmul_size, p, device)
        times = peaks_before[name]["all_measured_s"] + after["all_measured_s"]
        matmul[name] = {"median_s": statistics.median(times), "all_measured_s": times,
                        "flops_per_s": 2.0 * args.matmul_size**3 / statistics.median(times),
                        "flops_per_s_before": peaks_before[name]["flops_per_s"],
                        "flops_per_s_after": after["flops_per_s"],
                        "cost_analysis_flops": after["cost_analysis_flops"]}
        matmul[f"{name}_error"] = errors[name]
    matmul["default_verdict"] = (
        "reduced precision (TF32 or bfloat16 passes)" if errors["default"] >
        REDUCED_PRECISION_ERROR else "full float32")
    peak = matmul["default"]["flops_per_s"]
    for result in workloads.values():
        for row in result["rows"]:
            achieved = row["achieved_flops_per_s"]
            row["fraction_of_peak"] = None if achieved is None else achieved / peak
            row["fraction_of_f32_peak"] = (None if achieved is None
                                           else achieved / matmul["highest"]["flops_per_s"])

    out = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device_kind": device.device_kind, "platform": device.platform,
        "devices": [str(d) for d in devices], "num_devices_used": mesh.size,
        "jax_version": jax.__version__, "jaxlib_version": package_version("jaxlib"),
        "cuda_plugin": {p: package_version(p) for p in CUDA_PLUGINS if package_version(p)},
        "flax_version": flax.__version__, "optax_version": optax.__version__,
        "python": platform.python_version(), "dry_run": args.dry_run,
        "arguments": vars(args), "budget_s": args.budget_s,
        "memory_budget_bytes": memory_budget(mesh),
        "matmul": matmul, "workloads": workloads, "convolutions": convolutions,
    }
    out["total_s"] = time.perf_counter() - start
    markdown = report(out)
    directory = Path(args.out)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(out, indent=1, default=str))
    (directory / "results.md").write_text(markdown + "\n")
    print("\n" + markdown + f"\n\nwritten {directory / 'results.json'} and results.md")


if __name__ == "__main__":
    main()
