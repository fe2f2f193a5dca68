"""Every benchmark at the README's sizes, then the README's tables; under 15 minutes on 2 cores.

Runs, each in its own process (so that thread settings and compiled code do not leak
from one benchmark into the next):

  1. compare_training.py, digits MLP: S in {1, 8, 64, 256}, 3 interleaved rounds, the
     sequential methods timed on at most 32 seeds and extrapolated to S;
  2. compare_training.py, MNIST-1D CNN: S in {1, 8, 64} (3, 3 and 1 rounds), sequential
     methods timed on 4 seeds. S = 256 is left out: negres alone would take about 9
     minutes there on a 2-core CPU (XLA:CPU runs the backward convolutions several times
     slower inside ``lax.scan`` than as separate calls), past the 15-minute budget;
  3. compare_saliency.py: integrated gradients, S in {1, 8, 64}, 5 rounds;
  4. fraction_of_peak.py: the MLP's training FLOP/s at S in {64, 256} against a
     2048 x 2048 matmul's.

Each writes its JSON into bench/results/ (gitignored); this script then prints the
README's tables from those files and writes them to bench/results/summary.md (and
summary.json), with the load average before and after, since other jobs may share the
machine. ``--quick`` runs tiny sizes into bench/results/quick/ to check that everything
works (a minute or two; its numbers mean nothing); ``--summary-only`` reprints the tables
from the last run's files.

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
BUDGET_S = 15 * 60

# (name, script, arguments at the README's sizes, arguments of --quick)
RUNS: list[tuple[str, str, list[str], list[str]]] = [
    ("compare_training_mlp_digits", "compare_training.py",
     ["--workload", "mlp_digits", "--seeds", "1,8,64,256", "--repeats", "3",
      "--max-loop-seeds", "32"],
     ["--workload", "mlp_digits", "--seeds", "1,2", "--repeats", "1", "--steps", "20",
      "--max-loop-seeds", "2"]),
    ("compare_training_cnn_mnist1d", "compare_training.py",
     ["--workload", "cnn_mnist1d", "--seeds", "1,8,64", "--repeats", "3,3,1",
      "--max-loop-seeds", "4"],
     ["--workload", "cnn_mnist1d", "--seeds", "1,2", "--repeats", "1", "--steps", "10",
      "--max-loop-seeds", "1"]),
    ("compare_saliency", "compare_saliency.py", ["--seeds", "1,8,64", "--repeats", "5"],
     ["--seeds", "1,2", "--repeats", "1", "--examples", "16"]),
    ("fraction_of_peak", "fraction_of_peak.py", ["--seeds", "64,256", "--repeats", "3"],
     ["--seeds", "2", "--repeats", "1", "--matmul-size", "512"]),
]


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
    return (f"{result['description']}; Adam {result['learning_rate']:g}, batch "
            f"{result['batch_size']}, {result['steps']} steps; accuracy on "
            f"{result['eval_name']}.\n\n"
            f"S = {headline_seeds}:\n\n{headline}\n\nAll S:\n\n{full}\n\n"
            f"Accuracy of every trained seed, all S pooled (same band: mean within "
            f"{result['accuracy_band']:.2f} of negres's):\n\n{bands}\n\n"
            f"PyTorch threads chosen by trial ({threads}). Same computation: negres loop and "
            f"JAX step loop train negres's first seeds with the same keys and batches; they "
            f"differ from negres's seeds only by float32 rounding (seed-batched or not, scanned "
            f"or not, XLA sums in other orders), which 200 Adam steps amplify: largest "
            f"parameter / per-seed accuracy difference {', '.join(drift)}. The PyTorch twin "
            f"on ported weights matches flax's logits to {result['port_max_logit_diff']:.1e}, "
            f"and after {result['replay_steps']} training step(s) from the same weights on the "
            f"same batch to {result['replay_max_relative_logit_diff']:.1e} of the largest logit.")


def saliency_tables(result: dict[str, Any]) -> str:
    """The S x method table of integrated gradients, and Captum's agreement with negres."""
    rows = result["rows"]
    full = markdown_table(["S", "method", *SPEED_HEADERS],
                          [[r["num_seeds"], r["method"], *speed_cells(r, 4)] for r in rows])
    worst = max(c["captum_max_abs_diff"] for c in result["agreement"])
    scale = max(c["max_abs_attribution"] for c in result["agreement"])
    mismatches = sum(c["target_mismatches"] for c in result["agreement"])
    threads = ", ".join(f"S={c['num_seeds']}: {c['torch_threads']}" for c in result["agreement"])
    return (f"Integrated gradients, {result['ig_steps']} steps, {result['rule']}, "
            f"{result['baseline']} baseline, {result['target']} class, {result['examples']} "
            f"digits per seed, median of {result['repeats']} interleaved rounds:\n\n{full}\n\n"
            f"Captum and negres on the same (ported) weights agree for every seed and "
            f"example: largest |difference| {worst:.1e} against a largest |attribution| of "
            f"{scale:.2f}; asserted with rtol={result['rtol']:g} and atol="
            f"{result['atol_relative']:g} x the largest |attribution| ({mismatches} examples "
            f"left out where the frameworks predicted different classes). Captum's PyTorch "
            f"threads chosen by trial: {threads}.")


def peak_table(result: dict[str, Any]) -> str:
    """The training FLOP/s at each S against the matmul's."""
    mm = result["matmul"]
    rows = markdown_table(
        ["S", "wall s", "MFLOP per step (XLA)", "achieved GFLOP/s", "matmul GFLOP/s",
         "fraction of peak", "matmul-only count"],
        [[r["num_seeds"], f"{r['wall_s']:.3f}",
          f"{(r['flops_per_step_cost_analysis'] or float('nan')) / 1e6:.1f}",
          f"{r['achieved_flops_per_s'] / 1e9:.2f}", f"{mm['flops_per_s'] / 1e9:.1f}",
          f"{r['fraction_of_peak']:.1%}", f"{r['fraction_of_peak_matmul_only']:.1%}"]
         for r in result["rows"]])
    return (f"negres training the digits MLP ({result['steps']} steps, batch "
            f"{result['batch_size']}, median of {result['repeats']}) against a jitted float32 "
            f"{mm['size']} x {mm['size']} matmul ({mm['median_s'] * 1e3:.0f} ms, median of "
            f"{len(mm['all_measured_s'])}), same process, interleaved. FLOPs per step from "
            f"XLA's cost analysis of one seed-batched training step (all operations); the "
            f"last column counts matmul FLOPs only (4 B P + 2 B 640 per seed and step, "
            f"B = 128, P = 4,736):\n\n{rows}")


def summarize(results_dir: Path, total: float, load_before: str, load_after: str,
              headline: int) -> str:
    """The README's tables from the JSON files in ``results_dir``."""
    results = {name: json.loads((results_dir / f"{name}.json").read_text())
               for name, *_ in RUNS}
    info = results["compare_training_mlp_digits"]["machine"]
    sections = [
        f"Measured in one run of `python bench/run_all.py` ({total / 60:.1f} minutes) on "
        f"{info['cpu']}, {info['cpu_count']} cores; JAX {info['jax']} (CPU), PyTorch "
        f"{info['torch']}, Captum {info['captum']}. Load average before {load_before}, "
        f"after {load_after} (other jobs shared the machine). Compilation excluded; "
        f"negres speed-up = the method's wall time / negres's (above 1: negres is faster).",
        "### Training, digits MLP\n\n"
        + training_tables(results["compare_training_mlp_digits"], headline),
        "### Training, MNIST-1D CNN\n\n"
        + training_tables(results["compare_training_cnn_mnist1d"], headline),
        "### Integrated gradients\n\n" + saliency_tables(results["compare_saliency"]),
        "### Fraction of peak\n\n" + peak_table(results["fraction_of_peak"]),
    ]
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
    if args.summary_only:
        last = json.loads((results_dir / "summary.json").read_text())
        print(summarize(results_dir, last["total_s"], last["load_average_before"],
                        last["load_average_after"], headline))
        return

    env = dict(os.environ, NEGRES_BENCH_RESULTS=str(results_dir))
    load_before = load_average()
    start = time.perf_counter()
    durations = {}
    for name, script, full_args, quick_args in RUNS:
        command = [sys.executable, str(BENCH / script), *(quick_args if args.quick
                                                           else full_args)]
        print(f"\n=== {name}: {' '.join(command[1:])} (load average {load_average()})",
              flush=True)
        began = time.perf_counter()
        subprocess.run(command, check=True, env=env, cwd=BENCH.parent)
        durations[name] = time.perf_counter() - began
        print(f"=== {name} took {durations[name]:.0f} s", flush=True)
    total = time.perf_counter() - start
    load_after = load_average()

    summary = summarize(results_dir, total, load_before, load_after, headline)
    print("\n\n" + summary)
    (results_dir / "summary.md").write_text(summary)
    (results_dir / "summary.json").write_text(json.dumps({
        "total_s": total, "durations_s": durations, "load_average_before": load_before,
        "load_average_after": load_after, "quick": args.quick,
    }, indent=1))
    print(f"total {total:.0f} s ({total / 60:.1f} min; budget {BUDGET_S // 60} min); "
          f"written {results_dir / 'summary.md'}")
    if not args.quick and total > BUDGET_S:
        print(f"warning: over the {BUDGET_S // 60}-minute budget", file=sys.stderr)


if __name__ == "__main__":
    main()
