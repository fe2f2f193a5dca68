"""Every benchmark at the README's sizes, then the README's tables; under 20 minutes on 2 cores.

Runs, each in its own process (so that thread settings and compiled code do not leak
from one benchmark into the next); every script that times negres calls
``negres.use_all_cores()`` first, so negres runs on one JAX CPU device per core as
``main.py`` gives it to a user, and records the device count in its JSON:

  1. compare_training.py, digits MLP: S in {1, 8, 64, 256}, 3 interleaved rounds, the
     sequential methods timed on at most 32 seeds and extrapolated to S;
  2. compare_training.py, MNIST-1D CNN: S in {1, 8, 64} (3, 3 and 2 rounds), sequential
     methods timed on 4 seeds. S = 256 is left out even with the convolutions computed as
     matmuls (``conv_impl="auto"`` on a CPU) and both cores: in 20-step trials on the
     2-core CPU (shared with other jobs), 256 seeds took negres's one-chunk ``vmap`` 12-15
     s (4.5-6.5 times its 64-seed time; ``layout="map"`` with 16 seeds per step took 2.5-3.7
     s) and ``torch.func`` 41 s, so one 200-step round would cost 3 to 9 minutes, past the
     budget;
  3. compare_training.py, 2-D digits CNN: S in {1, 8, 64} (3, 3 and 1 rounds), sequential
     methods timed on 2 seeds. Its steps cost about 6 to 20 ms per seed for every method
     on the 2-core CPU, so the 64-seed round alone (negres and ``torch.func`` each train
     64 x 200 seed-steps) takes 2 to 4 minutes;
  4. compare_saliency.py: integrated gradients, S in {1, 2, 4, 8, 64}, 5 rounds;
  5. fraction_of_peak.py: the MLP's training FLOP/s at S in {64, 256} against the
     all-core peak of a 2048 x 2048 matmul (the faster of one on the default device and
     one per device at once);
  6. engine_overhead.py: negres's engine against a bare ``jit(vmap(scan))`` at S in
     {64, 256}, with ablations at 64;
  7. training_loop.py: the training-loop options at 64 seeds (epochs against
     with-replacement sampling, Grain-fed against in-memory data, early stopping on
     against off), 3 interleaved rounds. A script that is not there is skipped with a
     message.

Estimated on the 2-core CPU, idle: about 18 minutes in all (the 2-D CNN about 6, the
MNIST-1D CNN about 3, engine overhead about 3, the training loop about 3, the rest about
3); more while other jobs share the machine (its load average is printed before each
run).

Each writes its JSON into bench/results/ (gitignored); this script then prints the
README's tables from those files, with a table of the issue's targets (each measured
value against its threshold), and writes them to bench/results/summary.md (and
summary.json), with the load average before and after, since other jobs may share the
machine. ``--quick`` runs tiny sizes into bench/results/quick/ to check that everything
works (a few minutes; its numbers mean nothing, and its targets are read at S = 2);
``--summary-only`` reprints the tables from the last run's files.

    pip install -r bench/requirements.txt
    python bench/run_all.py [--quick | --summary-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tables import load_average, markdown_table

BENCH = Path(__file__).resolve().parent
BUDGET_S = 20 * 60

# Smoke runs of a few steps have not converged: any accuracy band would be noise.
QUICK_BAND = ["--accuracy-band", "0.5"]

# (name, script, arguments at the README's sizes, arguments of --quick); "{results}" in an
# argument is the results folder (for scripts that do not read NEGRES_BENCH_RESULTS).
RUNS: list[tuple[str, str, list[str], list[str]]] = [
    ("compare_training_mlp_digits", "compare_training.py",
     ["--workload", "mlp_digits", "--seeds", "1,8,64,256", "--repeats", "3",
      "--max-loop-seeds", "32"],
     ["--workload", "mlp_digits", "--seeds", "1,2", "--repeats", "1", "--steps", "20",
      "--max-loop-seeds", "2", *QUICK_BAND]),
    ("compare_training_cnn_mnist1d", "compare_training.py",
     ["--workload", "cnn_mnist1d", "--seeds", "1,8,64", "--repeats", "3,3,2",
      "--max-loop-seeds", "4"],
     ["--workload", "cnn_mnist1d", "--seeds", "1,2", "--repeats", "1", "--steps", "10",
      "--max-loop-seeds", "1", *QUICK_BAND]),
    ("compare_training_cnn_digits", "compare_training.py",
     ["--workload", "cnn_digits", "--seeds", "1,8,64", "--repeats", "3,3,1",
      "--max-loop-seeds", "2"],
     ["--workload", "cnn_digits", "--seeds", "1,2", "--repeats", "1", "--steps", "10",
      "--max-loop-seeds", "1", *QUICK_BAND]),
    ("compare_saliency", "compare_saliency.py", ["--seeds", "1,2,4,8,64", "--repeats", "5"],
     ["--seeds", "1,2,4", "--repeats", "1", "--examples", "16"]),
    ("fraction_of_peak", "fraction_of_peak.py", ["--seeds", "64,256", "--repeats", "3"],
     ["--seeds", "2", "--repeats", "1", "--matmul-size", "512"]),
    ("engine_overhead", "engine_overhead.py",
     ["--seeds", "64,256", "--out", "{results}/engine_overhead.json"],
     ["--quick", "--out", "{results}/engine_overhead.json"]),
    ("training_loop", "training_loop.py",
     ["--rounds", "3", "--out", "{results}/training_loop.json"],
     ["--quick", "--out", "{results}/training_loop.json"]),
]

TRAINING_SECTIONS = {
    "compare_training_mlp_digits": "Training, digits MLP",
    "compare_training_cnn_mnist1d": "Training, MNIST-1D CNN",
    "compare_training_cnn_digits": "Training, 2-D digits CNN",
}


# The timing columns of every training and saliency row, and their cells.
SPEED_HEADERS = ["wall s", "seeds/s", "negres speed-up"]


def speed_cells(row: dict[str, Any], wall_digits: int = 3) -> list[str]:
    return [f"{row['wall_s']:.{wall_digits}f}", f"{row['seeds_per_s']:.1f}",
            f"{row['wall_over_negres']:.2f}x"]


def training_tables(result: dict[str, Any], headline_seeds: int) -> str:
    """The full S x method table, the accuracy bands, and the headline row set."""
    rows = result["rows"]
    full = markdown_table(
        ["S", "method", "seeds timed", "rounds", *SPEED_HEADERS],
        [[r["num_seeds"], r["method"],
          r["timed_seeds"] if r["timed_seeds"] == r["num_seeds"]
          else f"{r['timed_seeds']} (extrapolated)",
          r["rounds"], *speed_cells(r)] for r in rows])
    bands = markdown_table(
        ["method", "seeds trained", "accuracy mean", "sd", "min", "max", "same band"],
        [[s["method"], s["seeds"], f"{s['mean']:.3f}", f"{s['sd']:.3f}", f"{s['min']:.3f}",
          f"{s['max']:.3f}", "yes" if s["in_band"] else "NO"]
         for s in result["accuracy_summary"]])
    threads = ", ".join(f"S={t['num_seeds']}: loop {t['torch loop']}, torch.func "
                        f"{t['torch.func']}" for t in result["torch_threads"])
    plans = "; ".join(f"S={n}: {plan_text(p)}" for n, p in result.get("negres_plans", {}).items())
    devices = result["machine"].get("jax_device_count", 1)
    at = [r for r in rows if r["num_seeds"] == headline_seeds]
    headline = markdown_table(
        ["method", *SPEED_HEADERS, "mean accuracy"],
        [[r["method"], *speed_cells(r), f"{r['mean_accuracy']:.3f}"] for r in at])
    drift = []
    for c in result["same_computation_checks"]:
        n = c["num_seeds"]
        first = result["accuracies"]["negres"][str(n)]
        accuracy = max(abs(a - b) for method in ("negres loop", "JAX step loop")
                       for a, b in zip(result["accuracies"][method][str(n)], first, strict=False))
        params = max(c["negres_loop_max_param_diff"], c["step_loop_max_param_diff"])
        drift.append(f"S={n}: {params:.1e} / {accuracy:.3f}")
    conv = (f" (convolutions: conv_impl=\"{result['conv_impl']}\", i.e. "
            f"{result['conv_impl_used']}, in negres and both JAX loops)"
            if result.get("conv_impl") else "")
    return (f"{result['description']}{conv}; Adam {result['learning_rate']:g}, batch "
            f"{result['batch_size']}, {result['steps']} steps; accuracy on "
            f"{result['eval_name']}.\n\n"
            f"S = {headline_seeds}:\n\n{headline}\n\nAll S:\n\n{full}\n\n"
            f"Accuracy of every trained seed, all S pooled (same band: mean within "
            f"{result['accuracy_band']:.2f} of negres's):\n\n{bands}\n\n"
            f"negres trains on the seeds mesh of all {devices} JAX CPU device(s) (one per core, "
            f"negres.use_all_cores()); the negres loop and the JAX step loop run each seed on "
            f"JAX's default device, as plain jax.jit does. negres's plan (layout, chunks x "
            f"seeds, devices): {plans or 'not recorded'}. "
            f"PyTorch threads chosen by trial ({threads}). Same computation: negres loop and "
            f"JAX step loop train negres's first seeds with the same keys and batches; they "
            f"differ from negres's seeds only by float32 rounding (seed-batched or not, scanned "
            f"or not, XLA sums in other orders), which {result['steps']} Adam steps amplify: "
            f"largest parameter / per-seed accuracy difference {', '.join(drift)}. The PyTorch "
            f"twin on ported weights matches flax's logits to {result['port_max_logit_diff']:.1e}, "
            f"and after {result['replay_steps']} training step(s) from the same weights on the "
            f"same batch to {result['replay_max_relative_logit_diff']:.1e} of the largest logit.")


def plan_text(plan: dict[str, Any]) -> str:
    """One ``TrainResult.plan`` in a few words."""
    layout = plan["layout"] if plan["layout"] == "vmap" else (
        f"map ({plan['seeds_per_map_step']}/step)")
    pad = f", +{plan['padded_seeds']} padding" if plan.get("padded_seeds") else ""
    return (f"{layout}, {plan['num_chunks']} x {plan['seeds_per_chunk']} on "
            f"{plan['num_devices']} device(s){pad}")


def saliency_tables(result: dict[str, Any]) -> str:
    """The S x method table of integrated gradients, and Captum's agreement with negres."""
    rows = result["rows"]
    full = markdown_table(["S", "method", *SPEED_HEADERS],
                          [[r["num_seeds"], r["method"], *speed_cells(r, 4)] for r in rows])
    worst = max(c["captum_max_abs_diff"] for c in result["agreement"])
    scale = max(c["max_abs_attribution"] for c in result["agreement"])
    mismatches = sum(c["target_mismatches"] for c in result["agreement"])
    threads = ", ".join(f"S={c['num_seeds']}: {c['torch_threads']}" for c in result["agreement"])
    devices = result["machine"].get("jax_device_count", 1)
    split = [c["num_seeds"] for c in result["agreement"] if c.get("negres_devices", 1) > 1]
    return (f"Integrated gradients, {result['ig_steps']} steps, {result['rule']}, "
            f"{result['baseline']} baseline, {result['target']} class, {result['examples']} "
            f"digits per seed, median of {result['repeats']} interleaved rounds, each method "
            f"called back to back for at least "
            f"{1e3 * result.get('min_seconds_per_round', 0):.0f} ms per round (time per call). "
            f"negres: one call (on a CPU each device's seeds one at a time), its params split "
            f"over the seeds mesh of {devices} JAX CPU "
            f"device(s) where the devices divide S (S = {', '.join(map(str, split)) or 'none'}),"
            f" else on JAX's default device; negres, 1 device: the same call on the default "
            f"device; negres loop: single-seed calls on the default device:\n\n{full}\n\n"
            f"Captum and negres on the same (ported) weights agree for every seed and "
            f"example: largest |difference| {worst:.1e} against a largest |attribution| of "
            f"{scale:.2f}; asserted with rtol={result['rtol']:g} and atol="
            f"{result['atol_relative']:g} x the largest |attribution| ({mismatches} examples "
            f"left out where the frameworks predicted different classes). Captum's PyTorch "
            f"threads chosen by trial: {threads}.")


def peak_table(result: dict[str, Any]) -> str:
    """The training FLOP/s at each S against the all-core matmul peak."""
    mm = result["matmul"]
    one, every = mm.get("one_device"), mm.get("all_devices")
    rows = markdown_table(
        ["S", "wall s", "MFLOP per step (XLA)", "achieved GFLOP/s", "peak GFLOP/s",
         "fraction of peak", "matmul-only count"],
        [[r["num_seeds"], f"{r['wall_s']:.3f}",
          f"{(r['flops_per_step_cost_analysis'] or float('nan')) / 1e6:.1f}",
          f"{r['achieved_flops_per_s'] / 1e9:.2f}", f"{mm['flops_per_s'] / 1e9:.1f}",
          f"{r['fraction_of_peak']:.1%}", f"{r['fraction_of_peak_matmul_only']:.1%}"]
         for r in result["rows"]])
    if one and every:
        peak = (f"the all-core peak: the faster of a jitted float32 {mm['size']} x "
                f"{mm['size']} matmul on JAX's default device ({one['flops_per_s'] / 1e9:.1f} "
                f"GFLOP/s) and one such matmul per device on all {every['num_devices']} at "
                f"once ({every['flops_per_s'] / 1e9:.1f} GFLOP/s), here {mm['peak_source']}; "
                f"medians of {len(one['all_measured_s'])} each")
    else:  # a result file from before both were measured
        peak = (f"a jitted float32 {mm['size']} x {mm['size']} matmul "
                f"({mm['median_s'] * 1e3:.0f} ms, median of {len(mm['all_measured_s'])})")
    devices = result.get("num_devices", 1)
    return (f"negres training the digits MLP ({result['steps']} steps, batch "
            f"{result['batch_size']}, median of {result['repeats']}, on {devices} JAX "
            f"device(s)) against {peak}, same process, interleaved. FLOPs per step from "
            f"XLA's cost analysis of one seed-batched training step (all operations); the "
            f"last column counts matmul FLOPs only (4 B P + 2 B 640 per seed and step, "
            f"B = 128, P = 4,736):\n\n{rows}")


CNN_BASELINES = ("JAX step loop", "torch loop", "torch.func")


def ratio(result: dict[str, Any], num_seeds: int, method: str) -> float | None:
    """``method``'s wall time over negres's at ``num_seeds``, or None where not measured."""
    return next((r["wall_over_negres"] for r in result["rows"]
                 if r["num_seeds"] == num_seeds and r["method"] == method), None)


def target_row(target: str, threshold: float, unit: str, value: float | None,
               measured: str) -> dict[str, Any]:
    if value is None:
        return {"target": target, "measured": "not measured", "value": None,
                "threshold": f">= {threshold:g}{unit}", "met": None}
    shown = f"{value:.1%}" if unit == "%" else f"{value:.2f}{unit}"
    bound = f"{threshold:.0%}" if unit == "%" else f"{threshold:g}{unit}"
    return {"target": target, "measured": f"{measured} = {shown}", "value": value,
            "threshold": f">= {bound}", "met": bool(value >= threshold)}


def engine_overhead_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """negres's wall time over a bare ``jit(vmap(scan))``'s at each S of engine_overhead.py
    (its variant "negres": ``train_seeds`` as compare_training.py calls it)."""
    name = "digits MLP: negres's train_seeds over a bare jit(vmap(scan)) of the same step"
    rows = [r for r in (result or {}).get("rows", []) if r.get("variant") == "negres"]
    if not rows:
        return [{"target": name, "measured": "not measured", "value": None,
                 "threshold": "-", "met": None}]
    return [{"target": f"{name}, S={r['num_seeds']}",
             "measured": f"negres wall / bare wall at S={r['num_seeds']} = "
                         f"{r['over_bare']:.2f}x (median of per-round ratios "
                         f"{r['over_bare_per_round']:.2f}x)",
             "value": r["over_bare"], "threshold": "-", "met": None} for r in rows]


def targets(results: dict[str, Any], headline: int) -> list[dict[str, Any]]:
    """One row per target of the issue, from the result files (None: not measured)."""
    rows = []
    mlp = results.get("compare_training_mlp_digits")
    for method, threshold in (("torch loop", 15.0), ("torch.func", 4.0)):
        value = ratio(mlp, headline, method) if mlp else None
        rows.append(target_row(f"digits MLP, S={headline}: negres against the {method}",
                               threshold, "x", value,
                               f"{method} wall / negres wall at S={headline}"))
    for name, label in (("compare_training_cnn_mnist1d", "MNIST-1D CNN"),
                        ("compare_training_cnn_digits", "2-D digits CNN")):
        result = results.get(name)
        found = {m: ratio(result, headline, m) for m in CNN_BASELINES} if result else {}
        found = {m: v for m, v in found.items() if v is not None}
        value = min(found.values()) if found else None
        parts = ", ".join(f"{m} {v:.2f}x" for m, v in found.items())
        rows.append(target_row(
            f"{label}, S={headline}: negres against the best of the JAX step loop, the "
            f"torch loop and torch.func", 1.5, "x", value,
            f"min wall / negres wall ({parts})"))
    saliency = results.get("compare_saliency")
    found = {r["num_seeds"]: r["wall_over_negres"] for r in (saliency or {}).get("rows", [])
             if r["method"] == "negres loop" and r["num_seeds"] >= 2}
    worst = min(found, key=found.get) if found else None
    rows.append(target_row(
        "integrated gradients: negres never slower than the loop of single-seed calls, "
        "any S >= 2", 1.0, "x", found[worst] if found else None,
        f"min over S = {', '.join(map(str, found))} of loop wall / negres wall "
        f"(at S={worst})"))
    peak = results.get("fraction_of_peak")
    peak_rows = (peak or {}).get("rows", [])
    at = next((r for r in peak_rows if r["num_seeds"] == 256), None) or (
        max(peak_rows, key=lambda r: r["num_seeds"]) if peak_rows else None)
    rows.append(target_row(
        "digits MLP at 256 seeds: fraction of the all-core matmul peak", 0.5, "%",
        at["fraction_of_peak"] if at else None,
        f"XLA-counted FLOP/s / peak at S={at['num_seeds']}" if at else ""))
    rows += engine_overhead_rows(results.get("engine_overhead"))
    return rows


def targets_table(rows: list[dict[str, Any]]) -> str:
    met = {True: "yes", False: "**no**", None: "-"}
    return markdown_table(["target", "measured", "threshold", "met"],
                          [[r["target"], r["measured"], r["threshold"], met[r["met"]]]
                           for r in rows])


def load_results(results_dir: Path, names: list[str]) -> dict[str, Any]:
    return {name: json.loads((results_dir / f"{name}.json").read_text()) for name in names
            if (results_dir / f"{name}.json").exists()}


def summarize(results: dict[str, Any], total: float, load_before: str, load_after: str,
              headline: int, missing: dict[str, str]) -> str:
    """The README's tables from the results of each run (``missing``: run name -> why not)."""
    info = next(r["machine"] for r in results.values() if "machine" in r) if any(
        "machine" in r for r in results.values()) else None
    devices = (f"JAX on {info.get('jax_device_count', 1)} CPU device(s) "
               f"({info.get('jax_devices_reason', 'JAX default')})") if info else ""
    sections = [
        f"Measured in one run of `python bench/run_all.py` ({total / 60:.1f} minutes)"
        + (f" on {info['cpu']}, {info['cpu_count']} cores; JAX {info['jax']} (CPU), "
           f"{devices}, PyTorch {info['torch']}, Captum {info['captum']}" if info else "")
        + f". Load average before {load_before}, after {load_after} (other jobs may have "
        f"shared the machine). Compilation excluded; negres speed-up = the method's wall "
        f"time / negres's (above 1: negres is faster).",
        "### Targets\n\n" + targets_table(targets(results, headline)),
    ]
    for name, title in TRAINING_SECTIONS.items():
        if name in results:
            sections.append(f"### {title}\n\n" + training_tables(results[name], headline))
    if "compare_saliency" in results:
        sections.append("### Integrated gradients\n\n"
                        + saliency_tables(results["compare_saliency"]))
    if "fraction_of_peak" in results:
        sections.append("### Fraction of peak\n\n" + peak_table(results["fraction_of_peak"]))
    if "training_loop" in results:
        # training_loop.py writes its table and the breakdown of each variant's extra time.
        sections.append("### Training loop: epochs, Grain-fed data, early stopping\n\n"
                        + results["training_loop"]["table_md"].rstrip("\n"))
    if missing:
        sections.append("### Not measured\n\n" + "\n".join(
            f"- {name}: {why}" for name, why in missing.items()))
    return "\n\n".join(sections) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes into bench/results/quick/, to check it all works")
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing; print the tables from the last run's JSON files")
    args = parser.parse_args()

    results_dir = BENCH / "results" / ("quick" if args.quick else "")
    results_dir.mkdir(parents=True, exist_ok=True)
    headline = 2 if args.quick else 64
    names = [name for name, *_ in RUNS]
    if args.summary_only:
        last = json.loads((results_dir / "summary.json").read_text())
        missing = last.get("missing", {})
        results = load_results(results_dir, [n for n in names if n not in missing])
        print(summarize(results, last["total_s"], last["load_average_before"],
                        last["load_average_after"], headline, missing))
        return

    env = dict(os.environ, NEGRES_BENCH_RESULTS=str(results_dir))
    load_before = load_average()
    start = time.perf_counter()
    durations: dict[str, float] = {}
    missing: dict[str, str] = {}
    for name, script, full_args, quick_args in RUNS:
        if not (BENCH / script).exists():
            missing[name] = f"bench/{script} does not exist; skipped"
            print(f"\n=== {name}: skipped, bench/{script} does not exist", flush=True)
            continue
        command = [sys.executable, str(BENCH / script),
                   *(a.format(results=results_dir) for a in (quick_args if args.quick
                                                             else full_args))]
        print(f"\n=== {name}: {' '.join(command[1:])} (load average {load_average()})",
              flush=True)
        began = time.perf_counter()
        # A stale file must not stand in for a run that fails.
        (results_dir / f"{name}.json").unlink(missing_ok=True)
        code = subprocess.run(command, env=env, cwd=BENCH.parent).returncode
        durations[name] = time.perf_counter() - began
        if code != 0 or not (results_dir / f"{name}.json").exists():
            missing[name] = f"bench/{script} failed (exit code {code})"
        print(f"=== {name} took {durations[name]:.0f} s"
              + (f"; FAILED (exit code {code})" if name in missing else ""), flush=True)
    total = time.perf_counter() - start
    load_after = load_average()

    results = load_results(results_dir, [n for n in names if n not in missing])
    summary = summarize(results, total, load_before, load_after, headline, missing)
    print("\n\n" + summary)
    (results_dir / "summary.md").write_text(summary)
    (results_dir / "summary.json").write_text(json.dumps({
        "total_s": total, "durations_s": durations, "load_average_before": load_before,
        "load_average_after": load_after, "quick": args.quick, "missing": missing,
        "targets": targets(results, headline),
    }, indent=1))
    print(f"total {total:.0f} s ({total / 60:.1f} min; budget {BUDGET_S // 60} min); "
          f"written {results_dir / 'summary.md'}")
    if not args.quick and total > BUDGET_S:
        print(f"warning: over the {BUDGET_S // 60}-minute budget", file=sys.stderr)
    failed = {n: why for n, why in missing.items() if "failed" in why}
    if failed:
        raise SystemExit("failed: " + "; ".join(f"{n}: {why}" for n, why in failed.items()))


if __name__ == "__main__":
    main()
