"""Training S seeds: negres against the loops and ensembles a user would otherwise write.

One workload (``--workload mlp_digits`` or ``cnn_mnist1d``, see compare_common.py): Adam
1e-2, batches of 128 drawn uniformly with replacement, 200 steps, for S in {1, 8, 64, 256}:

  negres            ``train_seeds``: one jitted ``vmap`` over seeds of a ``lax.scan`` over steps;
  negres loop       a Python loop over seeds of the same jitted single-seed training
                    (``train_seeds(seed_indices=[i])`` with one shared trainer);
  JAX step loop     the usual JAX loop: a jitted single step, a Python loop over steps, per
                    seed. Batches are drawn inside the step from negres's keys, so it
                    computes what negres computes (checked) and pays no host-side batching;
  torch loop        a PyTorch loop over seeds of the usual per-step training loop;
  torch.func        all seeds at once in PyTorch: ``stack_module_state`` + ``vmap`` of
                    ``functional_call``, and ``torch.optim.Adam`` on the stacked leaf
                    parameters (Adam is elementwise, so this is a per-seed Adam).

Timed is initialisation plus training, not the final accuracy. Every method is warmed
up first (jit compilation, and PyTorch's first-call costs, are excluded). At each S the
methods are timed in interleaved rounds (``--repeats``) and the median is reported, so a
shared machine's load falls on all of them alike. The sequential methods time at most
``--max-loop-seeds`` seeds and extrapolate linearly to S (the "timed seeds" column). The
accuracy of every trained seed is checked to lie in the same band as negres's.

    python bench/compare_training.py [--workload mlp_digits] [--seeds 1,8,64,256]
        [--steps 200] [--repeats 3] [--max-loop-seeds 32]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from compare_common import (
    BATCH_SIZE,
    LEARNING_RATE,
    STEPS,
    WORKLOADS,
    Workload,
    flax_like_init_,
    interleaved_medians,
    machine,
    machine_line,
    markdown_table,
    parse_ints,
    write_json,
)
from torch.func import functional_call, stack_module_state

from negres.engine import make_evaluate, make_seed_trainer, train_seeds
from negres.losses import LOSSES
from negres.seeds import over_seeds, seed_key, stream_key, take_rows

METHODS = ("negres", "negres loop", "JAX step loop", "torch loop", "torch.func")
SEQUENTIAL = {"negres loop", "JAX step loop", "torch loop"}
# Mean accuracy of every method must lie within this of negres's (same workload, same band).
ACCURACY_BAND = 0.03


class JaxTrainer:
    """negres's workload on JAX, three ways: one call, a loop of calls, a loop of steps."""

    def __init__(self, workload: Workload, data, steps: int) -> None:
        self.model = workload.flax_model()
        self.optimizer = optax.adam(LEARNING_RATE)
        self.steps = steps
        self.x = jnp.asarray(data.x_train)
        self.y = jnp.asarray(data.y_train)
        self.trainer = make_seed_trainer(
            self.model, self.optimizer, kind="classification",
            input_shape=data.x_train.shape[1:], batch_size=BATCH_SIZE, eval_every=steps,
            has_eval=False,
        )
        evaluate = make_evaluate(self.model, "classification")
        x_eval, y_eval = jnp.asarray(data.x_eval), jnp.asarray(data.y_eval)
        self._accuracy = jax.jit(over_seeds(lambda p: evaluate(p, x_eval, y_eval)[1]))
        self._init_one = jax.jit(self._make_init_one(data.x_train.shape[1:]))
        self._step = jax.jit(self._make_step())

    def negres(self, seeds: list[int]) -> Any:
        """``params (S, ...)`` of seeds ``seeds`` trained in one call."""
        return train_seeds(self.model, self.optimizer, self.x, self.y, steps=self.steps,
                           batch_size=BATCH_SIZE, eval_every=self.steps, seed_indices=seeds,
                           trainer=self.trainer).params

    def negres_loop(self, seeds: list[int]) -> Any:
        """The same, one ``train_seeds`` call per seed; rows stacked afterwards (untimed)."""
        return [self.negres([i]) for i in seeds]

    def _make_init_one(self, input_shape):
        dummy = jnp.zeros((1, *input_shape), jnp.float32)

        def init_one(key):
            params = self.model.init(stream_key(key, "init"), dummy, train=False)["params"]
            return params, self.optimizer.init(params)

        return init_one

    def _make_step(self):
        loss_fn = LOSSES["classification"]

        def step(params, opt_state, key, step_index, x, y):
            # negres's draws: the batch of step t is addressed by fold_in(data key, t).
            batch_key = jax.random.fold_in(stream_key(key, "data"), step_index)
            idx = jax.random.randint(batch_key, (BATCH_SIZE,), 0, x.shape[0])

            def batch_loss(p):
                return loss_fn(self.model.apply({"params": p}, x[idx], train=True), y[idx])

            (loss, _), grads = jax.value_and_grad(batch_loss, has_aux=True)(params)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return step

    def step_loop(self, seeds: list[int], steps: int | None = None) -> list[Any]:
        """The usual loop: for each seed, for each step, one jitted step call."""
        out = []
        for i in seeds:
            key = seed_key(0, i)
            params, opt_state = self._init_one(key)
            for t in range(self.steps if steps is None else steps):
                params, opt_state, _ = self._step(params, opt_state, key, t, self.x, self.y)
            out.append(jax.block_until_ready(params))
        return out

    def accuracy(self, stacked_params: Any) -> np.ndarray:
        return np.asarray(self._accuracy(stacked_params))


class TorchTrainer:
    """The same workload in PyTorch: a loop over seeds, and ``torch.func`` ensembling."""

    def __init__(self, workload: Workload, data, steps: int) -> None:
        self.workload = workload
        self.steps = steps
        self.x = torch.from_numpy(workload.to_torch_layout(data.x_train))
        self.y = torch.from_numpy(data.y_train.astype(np.int64))
        self.x_eval = torch.from_numpy(workload.to_torch_layout(data.x_eval))
        self.y_eval = torch.from_numpy(data.y_eval.astype(np.int64))

    def _model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return flax_like_init_(self.workload.torch_model())

    def loop(self, seeds: list[int], steps: int | None = None) -> list[torch.nn.Module]:
        """For each seed the textbook loop: sample, forward, backward, ``Adam.step``."""
        models = []
        n = self.x.shape[0]
        for i in seeds:
            model = self._model(i)
            opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
            for _ in range(self.steps if steps is None else steps):
                idx = torch.randint(0, n, (BATCH_SIZE,))
                loss = torch.nn.functional.cross_entropy(model(self.x[idx]), self.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            models.append(model)
        return models

    def ensemble(self, seeds: list[int], steps: int | None = None) -> dict[str, torch.Tensor]:
        """All seeds at once: stacked parameters ``(S, ...)`` trained under ``torch.vmap``."""
        params, buffers = stack_module_state([self._model(i) for i in seeds])
        base = self.workload.torch_model().to("meta")
        num_seeds, n = len(seeds), self.x.shape[0]

        def forward(p, b, xb):
            return functional_call(base, (p, b), (xb,))

        batched = torch.vmap(forward)
        opt = torch.optim.Adam(list(params.values()), lr=LEARNING_RATE)
        for _ in range(self.steps if steps is None else steps):
            idx = torch.randint(0, n, (num_seeds, BATCH_SIZE))
            logits = batched(params, buffers, self.x[idx])  # (S, B, 10)
            per_example = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), self.y[idx].reshape(-1), reduction="none")
            # Summing the per-seed means gives each seed's stacked slice its own gradient.
            loss = per_example.reshape(num_seeds, BATCH_SIZE).mean(dim=1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self._ensemble_parts = (base, buffers)
        return params

    def loop_accuracy(self, models: list[torch.nn.Module]) -> np.ndarray:
        with torch.no_grad():
            return np.array([(m(self.x_eval).argmax(1) == self.y_eval).float().mean().item()
                             for m in models])

    def ensemble_accuracy(self, params: dict[str, torch.Tensor]) -> np.ndarray:
        base, buffers = self._ensemble_parts
        with torch.no_grad():
            logits = torch.vmap(lambda p, b: functional_call(base, (p, b), (self.x_eval,)))(
                params, buffers)
        return (logits.argmax(-1) == self.y_eval).float().mean(dim=1).numpy()


def concat_seeds(rows: list[Any]) -> Any:
    """Seed rows ``(1, ...)`` from separate calls concatenated into ``(S, ...)``."""
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *rows)


def stack_seeds(rows: list[Any]) -> Any:
    """Single-seed pytrees stacked into ``(S, ...)``."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *rows)


def max_param_difference(a: Any, b: Any) -> float:
    diffs = jax.tree_util.tree_map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a, b)
    return max(jax.tree_util.tree_leaves(diffs))


def run(workload: Workload, seeds_list: list[int], steps: int, repeats: int,
        max_loop_seeds: int) -> dict[str, Any]:
    data = workload.load()
    jx = JaxTrainer(workload, data, steps)
    tt = TorchTrainer(workload, data, steps)
    # Warm-up: compile the single-seed shapes and touch PyTorch's kernels once.
    jx.negres_loop([0])
    jx.step_loop([0], steps=2)
    tt.loop([0], steps=2)
    rows, accuracies, checks = [], {m: {} for m in METHODS}, []
    for num_seeds in seeds_list:
        seeds = list(range(num_seeds))
        loop_seeds = seeds[:max_loop_seeds]
        jx.negres(seeds)  # compile this S
        tt.ensemble(seeds, steps=2)
        methods: dict[str, Callable[[], Any]] = {
            "negres": lambda s=seeds: jax.block_until_ready(jx.negres(s)),
            "negres loop": lambda s=loop_seeds: jax.block_until_ready(jx.negres_loop(s)),
            "JAX step loop": lambda s=loop_seeds: jx.step_loop(s),
            "torch loop": lambda s=loop_seeds: tt.loop(s),
            "torch.func": lambda s=seeds: tt.ensemble(s),
        }
        medians, all_times, results = interleaved_medians(methods, repeats)
        acc = {
            "negres": jx.accuracy(results["negres"]),
            "negres loop": jx.accuracy(concat_seeds(results["negres loop"])),
            "JAX step loop": jx.accuracy(stack_seeds(results["JAX step loop"])),
            "torch loop": tt.loop_accuracy(results["torch loop"]),
            "torch.func": tt.ensemble_accuracy(results["torch.func"]),
        }
        first = take_rows(results["negres"], slice(0, len(loop_seeds)))
        checks.append({
            "num_seeds": num_seeds,
            "negres_loop_max_param_diff": max_param_difference(
                first, concat_seeds(results["negres loop"])),
            "step_loop_max_param_diff": max_param_difference(
                first, stack_seeds(results["JAX step loop"])),
        })
        for name in METHODS:
            timed_seeds = len(loop_seeds) if name in SEQUENTIAL else num_seeds
            wall = medians[name] * num_seeds / timed_seeds
            accuracies[name][num_seeds] = acc[name].tolist()
            rows.append({
                "num_seeds": num_seeds, "method": name, "timed_seeds": timed_seeds,
                "measured_s": medians[name], "all_measured_s": all_times[name],
                "wall_s": wall, "seeds_per_s": num_seeds / wall,
                "mean_accuracy": float(acc[name].mean()),
            })
        negres_wall = next(r["wall_s"] for r in rows
                           if r["num_seeds"] == num_seeds and r["method"] == "negres")
        for r in rows:
            if r["num_seeds"] == num_seeds:
                r["wall_over_negres"] = r["wall_s"] / negres_wall
                r["speed_over_negres"] = negres_wall / r["wall_s"]
    return {"rows": rows, "accuracies": accuracies, "same_computation_checks": checks,
            "eval_name": data.eval_name}


def accuracy_summary(accuracies: dict[str, dict[int, list[float]]]) -> list[dict[str, Any]]:
    """Per method, every seed it trained (all S pooled): mean, sd, min, max, band verdict."""
    pooled = {m: np.concatenate([np.asarray(v) for v in by_s.values()])
              for m, by_s in accuracies.items()}
    reference = pooled["negres"].mean()
    out = []
    for name, acc in pooled.items():
        out.append({"method": name, "seeds": int(acc.size), "mean": float(acc.mean()),
                    "sd": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
                    "min": float(acc.min()), "max": float(acc.max()),
                    "in_band": bool(abs(acc.mean() - reference) <= ACCURACY_BAND)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mlp_digits")
    parser.add_argument("--seeds", default="1,8,64,256")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-loop-seeds", type=int, default=32)
    args = parser.parse_args()

    workload = WORKLOADS[args.workload]
    info = machine()
    out = run(workload, parse_ints(args.seeds), args.steps, args.repeats, args.max_loop_seeds)
    summary = accuracy_summary(out["accuracies"])

    print(f"\n### Training: {workload.description}")
    print(f"Adam {LEARNING_RATE:g}, batch {BATCH_SIZE}, {args.steps} steps; "
          f"median of {args.repeats} interleaved rounds, compilation excluded; "
          f"{machine_line(info)}\n")
    table = [
        (r["num_seeds"], r["method"], r["timed_seeds"], f"{r['wall_s']:.3f}",
         f"{r['seeds_per_s']:.1f}", f"{r['wall_over_negres']:.2f}",
         f"{r['speed_over_negres']:.2f}", f"{r['mean_accuracy']:.3f}")
        for r in out["rows"]
    ]
    print(markdown_table(["S", "method", "timed seeds", "wall s", "seeds/s",
                          "wall / negres", "seeds/s / negres", "mean accuracy"], table))
    print(f"\nAccuracy on {out['eval_name']}, every trained seed of every S pooled "
          f"(band: mean within {ACCURACY_BAND:.2f} of negres's):\n")
    print(markdown_table(
        ["method", "seeds", "mean", "sd", "min", "max", "same band"],
        [(s["method"], s["seeds"], f"{s['mean']:.3f}", f"{s['sd']:.3f}", f"{s['min']:.3f}",
          f"{s['max']:.3f}", "yes" if s["in_band"] else "NO") for s in summary]))
    worst = max(max(c["negres_loop_max_param_diff"], c["step_loop_max_param_diff"])
                for c in out["same_computation_checks"])
    print(f"\nnegres loop and JAX step loop against the same seeds of the negres run: "
          f"largest parameter difference {worst:.2e} (same keys, same batches)")
    path = write_json(f"compare_training_{workload.name}", {
        "workload": workload.name, "description": workload.description, "machine": info,
        "steps": args.steps, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
        "repeats": args.repeats, "max_loop_seeds": args.max_loop_seeds,
        "accuracy_band": ACCURACY_BAND, "accuracy_summary": summary, **out,
    })
    print(f"written {path}")
    if not all(s["in_band"] for s in summary):
        raise SystemExit("a method left the accuracy band: the timings do not compare like "
                         "with like")


if __name__ == "__main__":
    main()
