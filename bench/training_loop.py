"""What the training-loop options cost at 64 seeds: epochs, Grain-fed data, early stopping.

Workload: an MLP 784 -> ``--hidden`` (ReLU) -> 10 (negres's built-in ``mlp``; Adam 1e-3,
batch 128) on a synthetic MNIST-sized set: 60,000 x 784 float32 examples ~ N(0, 1)
(188 MB), labelled by a random linear teacher (``argmax(x @ W)``, 10 classes), and a
held-out set of 2,000 examples evaluated at every curve point (``eval_every`` steps).
The training examples are written once as a ``.npy`` file and read back: in memory
(``np.load``) for the in-memory variants, as a ``np.memmap`` in the page cache (read once
before timing) for the Grain-fed ones. Every variant trains the same ``--seeds`` seeds
for the same ``--steps`` steps with the same batch, curve spacing and eval set:

  replacement, in memory   ``sampling="replacement"`` (the default), data a pytree of
                           arrays: the baseline every ratio is taken against;
  epochs, in memory        ``sampling="epochs"``: each seed visits every example once per
                           epoch in its own order (a keyed permutation per (seed, epoch),
                           each batch's positions computed inside the compiled call);
  replacement, Grain-fed   data ``ArraySource({"x": memmap, "y": y})``: the driver draws
                           each curve point's indices ``(S, eval_every, B)`` on the host,
                           ``GrainFeed`` reads those examples (``take`` per row of ``B``,
                           2 read threads, in this process) and they are copied to the
                           devices before the point's compiled segment runs;
  epochs, Grain-fed        the same with ``sampling="epochs"``;
  early stopping on, no seed stops
                           replacement, in memory, ``EarlyStopping("eval_accuracy",
                           patience > curve points)``: no seed can stop, so this is the
                           bookkeeping alone (best state and value, wait, the select of
                           the best state at every point);
  early stopping on, most seeds stop
                           the same with ``--stop-patience`` 1 and ``min_delta``
                           ``--some-stop-min-delta`` (0.04: a point must add 4 points of
                           accuracy): most seeds stop part-way, some train to the end (how
                           many and when is recorded). Under ``vmap`` a stopped seed's
                           steps are still computed and thrown away, so this saves nothing;
  early stopping on, every seed stops
                           ``min_delta`` ``--all-stop-min-delta`` (0.05): every seed stops
                           before the end, and the driver ends the call at the first
                           segment boundary where no seed is left training: the one case
                           where early stopping saves time.

Compilation is excluded: each variant's ``SeedTrainer`` (``make_seed_trainer``) is
compiled with ``compile_training`` (negres.training.driver) and then called once untimed (first
allocations, Grain's first threads), and every timed call reuses it. The wall time is
that of the whole ``negres.train`` call a user makes (argument checks, data placed on the
devices, the segments, curves fetched), layout pinned to ``vmap`` and one chunk of all
seeds so that every variant runs the same computation. Variants are timed in ``--rounds``
interleaved rounds whose order rotates, so that other jobs on a shared machine hit them
alike; ratios to the baseline are taken per round (each variant against the baseline of
its own round) and reported as the median with the range over rounds. Process CPU time is
recorded too. What the Grain-fed variants add is timed alone in every round
(:class:`Pieces`): one curve point's examples read through ``GrainFeed.load`` and their
copy onto the devices; and the Grain-fed calls time their own reads (:class:`TimedFeed`).
The JSON records the commit and a digest of negres's sources (other work changes them).

    PYTHONPATH=. python bench/training_loop.py [--seeds 64] [--steps 60] [--eval-every 10]
        [--rounds 5] [--hidden 128] [--only 'epochs, in memory;no seed stops'] [--quick]
        [--out bench/results/training_loop.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import negres  # noqa: E402

# First, before anything touches JAX's devices: one CPU device per core, as main.py does.
CORE_SETUP = negres.use_all_cores()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tables import load_average, markdown_table  # noqa: E402

from negres.models import MLP  # noqa: E402
from negres.sharding import put, seed_mesh, seeded  # noqa: E402
from negres.training.builtin import builtin_data, builtin_program  # noqa: E402
from negres.training.driver import compile_training  # noqa: E402
from negres.training.pipeline import ArraySource, GrainFeed  # noqa: E402
from negres.training.plan import Scale  # noqa: E402
from negres.training.step import make_seed_trainer  # noqa: E402

RESULTS_DIR = Path(os.environ.get("NEGRES_BENCH_RESULTS", REPO / "bench" / "results"))
DEFAULT_OUT = RESULTS_DIR / "training_loop.json"
BASELINE = "replacement, in memory"
PIECES = "pieces timed alone"
LEARNING_RATE = 1e-3
NUM_CLASSES = 10


# --------------------------------------------------------------------------- the data


def make_data(folder: Path, examples: int, features: int, eval_examples: int,
              seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """``(x.npy path, y, x_eval, y_eval)``: ``examples`` x ``features`` float32 ~ N(0, 1)
    written to ``folder/x.npy`` in blocks, labelled by a random linear teacher."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((features, NUM_CLASSES)).astype(np.float32)
    path = folder / "x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(examples, features))
    y = np.empty(examples, np.int32)
    block = 10_000
    for lo in range(0, examples, block):
        part = rng.standard_normal((min(block, examples - lo), features), np.float32)
        x[lo:lo + len(part)] = part
        y[lo:lo + len(part)] = np.argmax(part @ teacher, axis=1)
    x.flush()
    del x
    x_eval = rng.standard_normal((eval_examples, features), np.float32)
    return path, y, x_eval, np.argmax(x_eval @ teacher, axis=1).astype(np.int32)


# --------------------------------------------------------------------------- the variants


class Variant:
    """One way of training: the data it is given and its settings."""

    def __init__(self, name: str, data: Any, sampling: str,
                 early_stopping: negres.EarlyStopping | None, fed: bool):
        self.name, self.data, self.sampling = name, data, sampling
        self.early_stopping, self.fed = early_stopping, fed


class TimedFeed(GrainFeed):
    """A :class:`GrainFeed` that adds up the seconds its :meth:`load` takes, so that the
    reads inside ``negres.train`` are timed where they happen (the driver reads a
    ``GrainFeed`` given as data as it is)."""

    def __init__(self, source: Any):
        super().__init__(source)
        self.load_s = 0.0

    def load(self, indices: np.ndarray) -> Any:
        start = time.perf_counter()
        try:
            return super().load(indices)
        finally:
            self.load_s += time.perf_counter() - start


def build_variants(x_path: Path, y: np.ndarray, num_points: int, stop_patience: int,
                   some_stop_delta: float, all_stop_delta: float) -> list[Variant]:
    in_memory = builtin_data(np.load(x_path), y)
    memmap = np.load(x_path, mmap_mode="r")
    np.asarray(memmap.sum(dtype=np.float64))  # every page read once: the page cache holds it
    source = ArraySource({"x": memmap, "y": y})
    feeds = [TimedFeed(source), TimedFeed(source)]
    no_stop = negres.EarlyStopping("eval_accuracy", patience=num_points + 1)
    some_stop = negres.EarlyStopping("eval_accuracy", patience=stop_patience,
                                     min_delta=some_stop_delta)
    all_stop = negres.EarlyStopping("eval_accuracy", patience=stop_patience,
                                    min_delta=all_stop_delta)
    return [
        Variant(BASELINE, in_memory, "replacement", None, False),
        Variant("epochs, in memory", in_memory, "epochs", None, False),
        Variant("replacement, Grain-fed", feeds[0], "replacement", None, True),
        Variant("epochs, Grain-fed", feeds[1], "epochs", None, True),
        Variant("early stopping on, no seed stops", in_memory, "replacement", no_stop, False),
        Variant("early stopping on, most seeds stop", in_memory, "replacement", some_stop,
                False),
        Variant("early stopping on, every seed stops", in_memory, "replacement", all_stop,
                False),
    ]


def make_calls(variants: list[Variant], program: Any, settings: dict[str, Any],
               compile_s: dict[str, float], first: dict[str, Any]) -> dict[str, Callable]:
    """name -> a call of ``negres.train`` reusing the variant's compiled trainer; each
    compiled (``compile_s``: seconds of compile_training and the first call) and run once
    (``first``: that call's result)."""
    calls: dict[str, Callable] = {}
    for v in variants:
        trainer = make_seed_trainer(
            program, batch_size=settings["batch_size"], eval_every=settings["eval_every"],
            has_eval=True, sampling=v.sampling, early_stopping=v.early_stopping, fed=v.fed)
        kwargs = dict(settings, sampling=v.sampling, early_stopping=v.early_stopping,
                      scale=Scale(layout="vmap", seeds_per_chunk=settings["num_seeds"],
                                  trainer=trainer))

        def call(v: Variant = v, kwargs: dict[str, Any] = kwargs) -> Any:
            result = negres.train(program, v.data, **kwargs)
            jax.block_until_ready(result.state)
            return result

        start = time.perf_counter()
        compile_training(program, v.data, **kwargs)
        first[v.name] = call()
        compile_s[v.name] = time.perf_counter() - start
        calls[v.name] = call
        print(f"  {v.name}: compiled and run once in {compile_s[v.name]:.1f} s "
              f"(plan {first[v.name].plan['layout']}, {first[v.name].plan['num_chunks']} x "
              f"{first[v.name].plan['seeds_per_chunk']})", flush=True)
    return calls


class Pieces:
    """What the Grain-fed variants add, timed alone in every round: one curve point's
    examples, ``GrainFeed.load`` of random indices ``(S, eval_every, B)`` (what the driver
    reads per point) and the copy of what it returns onto the seeds mesh (``put``, split
    over the devices, as the driver does)."""

    def __init__(self, x_path: Path, y: np.ndarray, num_seeds: int, eval_every: int,
                 batch_size: int):
        split = seeded(seed_mesh())
        self.feed = GrainFeed(ArraySource({"x": np.load(x_path, mmap_mode="r"), "y": y}))
        self.shape, self.split = (num_seeds, eval_every, batch_size), split
        self.rng = np.random.default_rng(1)
        self.nbytes = 0
        self()  # compiled, Grain's threads and the devices used once

    def __call__(self) -> dict[str, float]:
        indices = self.rng.integers(0, self.feed.num_examples, self.shape)
        loading = time.perf_counter()
        loaded = self.feed.load(indices)
        copying = time.perf_counter()
        jax.block_until_ready(put(loaded, self.split))
        end = time.perf_counter()
        self.nbytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(loaded))
        return {"load_s": copying - loading, "put_s": end - copying}


def time_rounds(calls: dict[str, Callable], rounds: int, feeds: dict[str, TimedFeed],
                pieces: Pieces) -> dict[str, dict[str, list[float]]]:
    """In ``rounds`` interleaved rounds whose order rotates (so that no variant always
    follows the same one), every call's wall and process-CPU seconds, the seconds each
    Grain-fed call spent in ``GrainFeed.load``, and the pieces timed alone."""
    names = [*calls, PIECES]
    times: dict[str, dict[str, list[float]]] = {
        "wall": {n: [] for n in calls}, "cpu": {n: [] for n in calls},
        "grain_load": {n: [] for n in feeds},
        "pieces": {"load_s": [], "put_s": []}}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if name == PIECES:
                for piece, seconds in pieces().items():
                    times["pieces"][piece].append(seconds)
                continue
            if name in feeds:
                feeds[name].load_s = 0.0
            c0, w0 = time.process_time(), time.perf_counter()
            calls[name]()
            times["wall"][name].append(time.perf_counter() - w0)
            times["cpu"][name].append(time.process_time() - c0)
            if name in feeds:
                times["grain_load"][name].append(feeds[name].load_s)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {times['wall'][n][-1]:.2f} s" for n in calls) + "; alone: " + ", ".join(
            f"{n} {v[-1]:.2f} s" for n, v in times["pieces"].items()), flush=True)
    return times


# --------------------------------------------------------------------------- reporting


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_extra(wall: dict[str, list[float]], name: str, over: str) -> float:
    """The median over rounds of how much longer ``name`` took than ``over`` that round."""
    return median([a - b for a, b in zip(wall[name], wall[over], strict=True)])


def summarize(times: dict[str, dict[str, list[float]]], compile_s: dict[str, float],
              first: dict[str, Any], num_points: int) -> list[dict[str, Any]]:
    wall, cpu = times["wall"], times["cpu"]
    base, base_cpu = wall[BASELINE], cpu[BASELINE]
    rows = []
    for name, seconds in wall.items():
        ratios = [a / b for a, b in zip(seconds, base, strict=True)]
        result = first[name]
        stopped = np.asarray(result.stopped_at)
        loads = times["grain_load"].get(name)
        rows.append({
            "variant": name, "median_s": median(seconds), "min_s": min(seconds),
            "ratio_median": median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_of_medians": median(seconds) / median(base),
            "ratio_of_mins": min(seconds) / min(base),
            "cpu_median_s": median(cpu[name]),
            "cpu_ratio": median(cpu[name]) / median(base_cpu),
            "ms_per_curve_point": 1e3 * median(seconds) / num_points,
            "grain_load_median_s": median(loads) if loads else None,
            "wall_s": seconds, "cpu_s": cpu[name], "ratios": ratios,
            "grain_load_s": loads,
            "compile_and_first_call_s": compile_s[name],
            "final_eval_accuracy_mean": float(np.nanmean(result.final("eval_accuracy"))),
            "seeds_stopped": int((stopped >= 0).sum()),
            "stopped_at_median": (float(np.median(stopped[stopped >= 0]))
                                  if (stopped >= 0).any() else None),
            "stopped_at_min": int(stopped[stopped >= 0].min()) if (stopped >= 0).any() else None,
            "stopped_at_max": int(stopped[stopped >= 0].max()) if (stopped >= 0).any() else None,
            "stopped_at_counts": {int(k): int(c) for k, c in
                                  zip(*np.unique(stopped, return_counts=True), strict=True)},
            "plan": {k: v for k, v in result.plan.items() if k != "reason"},
        })
    return rows


def explain(times: dict[str, dict[str, list[float]]], info: dict[str, Any],
            rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant's extra seconds per call over the variant it adds to, against what it
    adds timed alone in the same round (or, where every seed stopped early, the steps it
    skipped); medians over rounds."""
    wall, pieces = times["wall"], times["pieces"]
    found = []
    for name, other in (("epochs, in memory", BASELINE),
                        ("epochs, Grain-fed", "replacement, Grain-fed")):
        if name in wall and other in wall:
            found.append({
                "variant": name, "over": other,
                "extra_s": median_extra(wall, name, other),
                "accounted_s": None,
                "accounted_by": "each step computes its batch's positions of the epoch's "
                                "order (a keyed Feistel permutation, nothing sorted or "
                                "carried)"})
    name, points = "replacement, Grain-fed", info["num_points"]
    if name in wall:
        loads = times["grain_load"][name]
        accounted = median([load + points * put_s for load, put_s
                            in zip(loads, pieces["put_s"], strict=True)])
        found.append({
            "variant": name, "over": BASELINE,
            "extra_s": median_extra(wall, name, BASELINE),
            "accounted_s": accounted,
            "accounted_by": f"GrainFeed.load inside the call ({median(loads):.2f} s) + "
                            f"{points} copies of a point's examples onto the devices "
                            f"({median(pieces['put_s']):.3f} s each, timed alone) = "
                            f"{accounted:.2f} s; an extra below that is reading overlapped "
                            f"with training"})
    name = "early stopping on, every seed stops"
    row = next((r for r in rows if r["variant"] == name), None)
    if row and row["seeds_stopped"] == info["num_seeds"]:
        last = row["stopped_at_max"]
        accounted = median([-(1 - last / info["steps"]) * b for b in wall[BASELINE]])
        found.append({
            "variant": name, "over": BASELINE,
            "extra_s": median_extra(wall, name, BASELINE),
            "accounted_s": accounted,
            "accounted_by": f"the call ended once the last seed stopped (step {last} of "
                            f"{info['steps']}): {1 - last / info['steps']:.0%} of the "
                            f"baseline's time is {-accounted:.2f} s"})
    return found


def table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The markdown table: each variant's time and its ratio to the baseline."""
    body = []
    for r in rows:
        spread = ("-" if r["variant"] == BASELINE else
                  f"{r['ratio_median']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})")
        stops = (f"{r['seeds_stopped']}/{info['num_seeds']}, at steps "
                 f"{r['stopped_at_min']}-{r['stopped_at_max']}" if r["seeds_stopped"] else "-")
        body.append([r["variant"], f"{r['median_s']:.2f}", f"{r['min_s']:.2f}", spread,
                     f"{r['cpu_ratio']:.2f}x", f"{r['ms_per_curve_point']:.0f}",
                     f"{r['final_eval_accuracy_mean']:.3f}", stops])
    return markdown_table(
        ["variant", "median s", "best s", "/ baseline: median (range) of per-round ratios",
         "CPU / baseline", "ms per curve point", "final eval accuracy (mean)",
         "seeds stopped"], body)


def header(info: dict[str, Any]) -> str:
    pieces = info["pieces"]
    examples = info["num_seeds"] * info["eval_every"] * info["batch_size"]
    return (
        f"{info['num_seeds']} seeds, MLP {info['features']} -> {info['hidden']} -> 10 "
        f"(Adam {info['learning_rate']:g}), {info['examples']:,} x {info['features']} float32 "
        f"training examples ({info['examples'] * info['features'] * 4 / 1e6:.0f} MB), "
        f"{info['steps']} steps of batch {info['batch_size']}, a curve point and "
        f"{info['eval_examples']:,} held-out examples evaluated every {info['eval_every']} "
        f"steps; layout vmap, one chunk. {info['num_devices']} JAX CPU devices "
        f"({info['cores']}) on {info['cpu']}, {info['cpu_count']} cores; JAX {info['jax']}, "
        f"grain {info['grain']}; {info['date']}; compile excluded; {info['rounds']} "
        f"interleaved rounds; load average {info['load_before']} before, "
        f"{info['load_after']} after; run {info['run_s']:.0f} s. Timed alone in each round "
        f"(medians): one curve point's Grain-fed examples "
        f"({examples:,}, {info['bytes_per_point'] / 1e6:.0f} MB) GrainFeed.load "
        f"{1e3 * median(pieces['load_s']):.0f} ms "
        f"({1e6 * median(pieces['load_s']) / examples:.2f} us/example), copy onto the "
        f"devices {1e3 * median(pieces['put_s']):.0f} ms.")


def explained_text(found: list[dict[str, Any]]) -> str:
    return "Where the extra time goes (medians over rounds of per-round differences):\n\n" + (
        "\n".join(f"- {e['variant']}: {e['extra_s']:+.2f} s per call over {e['over']}; "
                  f"{e['accounted_by']}" for e in found))


def sources() -> dict[str, str]:
    """The commit and a digest of negres's working tree: the code that was timed."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "negres").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    return {"git_head": head, "negres_sources_sha256": digest.hexdigest()[:16]}


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--eval-examples", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stop-patience", type=int, default=1,
                        help="curve points without improvement before a seed stops, in the "
                             "variant whose seeds stop")
    parser.add_argument("--some-stop-min-delta", type=float, default=0.04,
                        help="the eval accuracy gain that counts as an improvement in the "
                             "variant where most seeds stop (some train to the end)")
    parser.add_argument("--all-stop-min-delta", type=float, default=0.05,
                        help="the same in the variant where every seed stops before the end")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where x.npy is written (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true",
                        help="4 seeds, 6,000 examples, 20 steps, 1 round: checks that it runs")
    parser.add_argument("--only", default="",
                        help="parts of variant names to time, separated by ';' (the "
                             "baseline always), e.g. 'epochs, in memory;no seed stops'")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.examples, args.steps, args.eval_every, args.rounds = 4, 6000, 20, 5, 1
        args.eval_examples = 500
    if args.steps % args.eval_every:
        raise SystemExit("--eval-every must divide --steps")
    begin = time.perf_counter()
    load_before = load_average()
    num_points = args.steps // args.eval_every
    print(f"{jax.device_count()} devices ({CORE_SETUP.reason}); load average {load_before}",
          flush=True)

    with tempfile.TemporaryDirectory(dir=args.data_dir) as folder:
        x_path, y, x_eval, y_eval = make_data(Path(folder), args.examples, args.features,
                                              args.eval_examples)
        print(f"data written in {time.perf_counter() - begin:.1f} s", flush=True)
        variants = build_variants(x_path, y, num_points, args.stop_patience,
                                  args.some_stop_min_delta, args.all_stop_min_delta)
        wanted = [part.strip() for part in args.only.split(";") if part.strip()]
        variants = [v for v in variants if v.name == BASELINE or not wanted
                    or any(part in v.name for part in wanted)]
        program = builtin_program(MLP(num_outputs=NUM_CLASSES, hidden_sizes=(args.hidden,)),
                                  optax.adam(LEARNING_RATE))
        settings = {"steps": args.steps, "batch_size": args.batch_size,
                    "eval_every": args.eval_every, "num_seeds": args.seeds,
                    "eval_data": builtin_data(x_eval, y_eval)}
        compile_s: dict[str, float] = {}
        first: dict[str, Any] = {}
        calls = make_calls(variants, program, settings, compile_s, first)
        # After the first calls, every negres module the timed calls run is imported: the
        # code timed is the code this digest is of, unless the sources change from here on.
        sources_before = sources()
        feeds = {v.name: v.data for v in variants if isinstance(v.data, TimedFeed)}
        pieces = Pieces(x_path, y, args.seeds, args.eval_every, args.batch_size)
        times = time_rounds(calls, args.rounds, feeds, pieces)
    import grain

    rows = summarize(times, compile_s, first, num_points)
    info = {
        "num_seeds": args.seeds, "steps": args.steps, "eval_every": args.eval_every,
        "num_points": num_points, "batch_size": args.batch_size, "hidden": args.hidden,
        "examples": args.examples, "features": args.features,
        "eval_examples": args.eval_examples, "learning_rate": LEARNING_RATE,
        "rounds": args.rounds, "stop_patience": args.stop_patience,
        "some_stop_min_delta": args.some_stop_min_delta,
        "all_stop_min_delta": args.all_stop_min_delta, "sources": sources_before,
        "num_devices": jax.device_count(),
        "cores": CORE_SETUP.reason, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "grain": grain.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "load_before": load_before,
        "load_after": load_average(), "run_s": time.perf_counter() - begin,
        "quick": args.quick, "pieces": times["pieces"], "bytes_per_point": pieces.nbytes,
        "steps_per_epoch": args.examples // args.batch_size,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if sources() != sources_before:
        info["sources_changed_during_run"] = True
        print("warning: negres's sources changed during the run; the variants may have "
              "timed different code", file=sys.stderr)
    found = explain(times, info, rows)
    text = header(info) + "\n\n" + table(rows, info) + "\n\n" + explained_text(found) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "rows": rows, "explained": found,
                                    "table_md": text}, indent=1, default=float))
    args.out.with_suffix(".md").write_text(text)
    print("\n" + text)
    print(f"written {args.out} and {args.out.with_suffix('.md')} in {info['run_s']:.0f} s")


if __name__ == "__main__":
    main()
