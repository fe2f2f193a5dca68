"""Training S seeds: negres against the loops and ensembles a user would otherwise write.

One workload (``--workload mlp_digits``, ``cnn_mnist1d`` or ``cnn_digits``, see
compare_common.py): Adam 1e-2, batches of 128 drawn uniformly with replacement, 200 steps,
for S in {1, 8, 64, 256}:

  negres            ``train_seeds``: one jitted ``vmap`` over seeds of a ``lax.scan`` over
                    steps, as a user gets it: JAX has one CPU device per core
                    (``negres.use_all_cores()``, called by compare_common.py before JAX
                    starts) and the default ``seeds`` mesh splits the seeds over them;
  negres loop       a Python loop over seeds of the same jitted single-seed training
                    (``train_seeds(seed_indices=[i])`` with one shared trainer), each seed on
                    JAX's default device (a one-device mesh: one seed has nothing to split,
                    and the default mesh would pad it with a copy on the other core);
  JAX step loop     the usual JAX loop: a jitted single step, a Python loop over steps, per
                    seed, plain ``jax.jit`` on the default device as a user writes it.
                    Batches are drawn inside the step from negres's keys, so it computes
                    what negres computes (checked) and pays no host-side batching;
  torch loop        a PyTorch loop over seeds of the usual per-step training loop;
  torch.func        all seeds at once in PyTorch: ``stack_module_state`` + ``vmap`` of
                    ``functional_call``, and ``torch.optim.Adam`` on the stacked leaf
                    parameters (Adam is elementwise, so this is a per-seed Adam).

Timed is initialisation plus training, not the final accuracy. Every method is warmed
up first (jit compilation, and PyTorch's first-call costs, are excluded). Each PyTorch
method runs with the faster of 1 and all cores' threads, chosen at each S by a short trial
(the "torch threads" column). The PyTorch twin is checked to compute
the same function as the flax model on ported weights, and to do the same arithmetic (a
training step from the same weights on the same batch gives the same logits), before
anything is timed. At each S the methods are timed in interleaved rounds (``--repeats``: one
count, or one per S) and the median is reported, so a shared machine's load falls on all of
them alike. The sequential methods time at most
``--max-loop-seeds`` seeds and extrapolate linearly to S (the "timed seeds" column). The
accuracy of every trained seed is checked to lie in the same band as negres's. The JSON
records the JAX device count (``machine.jax_device_count``) and negres's plan at each S.

    python bench/compare_training.py [--workload mlp_digits] [--seeds 1,8,64,256]
        [--steps 200] [--repeats 3 | 3,3,3,1] [--max-loop-seeds 32]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import compare_common as common
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch.func import functional_call, stack_module_state

from negres.measures.losses import LOSSES
from negres.models import conv_impl_for
from negres.seeds import over_seeds, seed_key, stream_key, take_rows, take_seed
from negres.sharding import seed_mesh
from negres.training.builtin import builtin_data, builtin_program, make_evaluate, train_seeds
from negres.training.driver import compile_training
from negres.training.plan import Scale

METHODS = ("negres", "negres loop", "JAX step loop", "torch loop", "torch.func")
SEQUENTIAL = {"negres loop", "JAX step loop", "torch loop"}
# Mean accuracy of every method must lie within this of negres's (same workload, same band).
ACCURACY_BAND = 0.03
# JAX and PyTorch from the same weights on the same batches: steps compared, and the largest
# logit difference allowed, relative to the largest logit.
REPLAY_STEPS = 1
REPLAY_TOLERANCE = 1e-4


class JaxTrainer:
    """negres's workload on JAX, three ways: one call, a loop of calls, a loop of steps."""

    def __init__(self, workload: common.Workload, data, steps: int) -> None:
        self.model = workload.flax_model()
        self.optimizer = optax.adam(common.LEARNING_RATE)
        self.steps = steps
        self.x = jnp.asarray(data.x_train)
        self.y = jnp.asarray(data.y_train)
        self.trainer = builtin_program(self.model, self.optimizer)
        evaluate = make_evaluate(self.model, "classification")
        x_eval, y_eval = jnp.asarray(data.x_eval), jnp.asarray(data.y_eval)
        self._accuracy = jax.jit(over_seeds(lambda p: evaluate(p, x_eval, y_eval)[1]))
        self._init_one = jax.jit(self._make_init_one(data.x_train.shape[1:]))
        self._step = jax.jit(self._make_step())
        # The negres loop's mesh: JAX's default device alone.
        self.one_device = seed_mesh(jax.devices()[:1])
        self.plans: dict[int, dict[str, Any]] = {}

    def negres(self, seeds: list[int], mesh: Any = None) -> Any:
        """``params (S, ...)`` of seeds ``seeds`` trained in one call (default mesh: every
        device)."""
        result = train_seeds(self.model, self.optimizer, self.x, self.y, steps=self.steps,
                             batch_size=common.BATCH_SIZE, eval_every=self.steps,
                             seed_indices=seeds, program=self.trainer,
                             scale=Scale(mesh=mesh))
        if mesh is None:
            self.plans[len(seeds)] = result.plan
        return result.params

    def compile(self, seeds: list[int]) -> None:
        """Compile negres's call for ``len(seeds)`` seeds without running the training.

        :func:`negres.training.driver.compile_training` with the arguments ``negres`` passes
        ``train_seeds`` compiles (and picks the layout of) exactly what the timed call runs;
        running the training once instead would cost minutes for the CNN at S = 64.
        """
        compile_training(self.trainer, builtin_data(self.x, self.y), steps=self.steps,
                         batch_size=common.BATCH_SIZE, eval_every=self.steps, seed_indices=seeds)

    def negres_loop(self, seeds: list[int]) -> Any:
        """The same, one ``train_seeds`` call per seed on the default device; rows stacked
        afterwards (untimed)."""
        return [self.negres([i], mesh=self.one_device) for i in seeds]

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
            idx = jax.random.randint(batch_key, (common.BATCH_SIZE,), 0, x.shape[0])

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

    def batch_indices(self, seed: int, steps: int) -> np.ndarray:
        """``(steps, batch)`` the rows negres's seed ``seed`` draws at each step."""
        data_key = stream_key(seed_key(0, seed), "data")
        draw = lambda t: jax.random.randint(  # noqa: E731
            jax.random.fold_in(data_key, t), (common.BATCH_SIZE,), 0, self.x.shape[0])
        return np.asarray(jax.vmap(draw)(jnp.arange(steps)))


class TorchTrainer:
    """The same workload in PyTorch: a loop over seeds, and ``torch.func`` ensembling."""

    def __init__(self, workload: common.Workload, data, steps: int) -> None:
        self.workload = workload
        self.steps = steps
        self.x = torch.from_numpy(workload.to_torch_layout(data.x_train))
        self.y = torch.from_numpy(data.y_train.astype(np.int64))
        self.x_eval = torch.from_numpy(workload.to_torch_layout(data.x_eval))
        self.y_eval = torch.from_numpy(data.y_eval.astype(np.int64))

    def _model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return common.flax_like_init_(self.workload.torch_model())

    def loop(self, seeds: list[int], steps: int | None = None) -> list[torch.nn.Module]:
        """For each seed the textbook loop: sample, forward, backward, ``Adam.step``."""
        models = []
        n = self.x.shape[0]
        for i in seeds:
            model = self._model(i)
            opt = torch.optim.Adam(model.parameters(), lr=common.LEARNING_RATE)
            for _ in range(self.steps if steps is None else steps):
                idx = torch.randint(0, n, (common.BATCH_SIZE,))
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
        opt = torch.optim.Adam(list(params.values()), lr=common.LEARNING_RATE)
        for _ in range(self.steps if steps is None else steps):
            idx = torch.randint(0, n, (num_seeds, common.BATCH_SIZE))
            logits = batched(params, buffers, self.x[idx])  # (S, B, 10)
            per_example = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), self.y[idx].reshape(-1), reduction="none")
            # Summing the per-seed means gives each seed's stacked slice its own gradient.
            loss = per_example.reshape(num_seeds, common.BATCH_SIZE).mean(dim=1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self._ensemble_parts = (base, buffers)
        return params

    def replay(self, init_params: Any, batch_indices: np.ndarray) -> torch.nn.Module:
        """The textbook loop from ported flax ``init_params`` on the given batches."""
        model = common.port_params(self.workload, init_params)
        opt = torch.optim.Adam(model.parameters(), lr=common.LEARNING_RATE)
        for idx in torch.from_numpy(batch_indices.astype(np.int64)):
            loss = torch.nn.functional.cross_entropy(model(self.x[idx]), self.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model

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
    # On the host: the two may live on different devices (the seeds mesh, the default one).
    diffs = jax.tree_util.tree_map(
        lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)))), a, b)
    return max(jax.tree_util.tree_leaves(diffs))


def same_arithmetic_gap(workload: common.Workload, jx: JaxTrainer, tt: TorchTrainer,
                        x_eval: np.ndarray, steps: int = REPLAY_STEPS) -> float:
    """Largest logit difference on ``x_eval``, relative to the largest logit, after ``steps``
    training steps of seed 0 in JAX and in PyTorch from the same weights on the same batches.

    Raises ``AssertionError`` above :data:`REPLAY_TOLERANCE`. Only the first step is
    compared by default: Adam divides each gradient by its running RMS, so a weight whose
    gradient is float32 rounding noise (of a pixel that is almost always 0) moves by about
    the learning rate either way, and the two runs drift apart within a few steps.
    """
    params, _ = jx._init_one(seed_key(0, 0))
    torch_model = tt.replay(params, jx.batch_indices(0, steps))
    reference = common.port_params(workload, jx.step_loop([0], steps=steps)[0])
    x = torch.from_numpy(workload.to_torch_layout(x_eval))
    with torch.no_grad():
        ours, theirs = reference(x), torch_model(x)
        gap = float((ours - theirs).abs().max() / ours.abs().max())
    assert gap <= REPLAY_TOLERANCE, (
        f"{workload.name}: PyTorch and JAX logits differ by {gap:.2e} after {steps} steps")
    return gap


def run(workload: common.Workload, seeds_list: list[int], steps: int, repeats: list[int],
        max_loop_seeds: int) -> dict[str, Any]:
    data = workload.load()
    jx = JaxTrainer(workload, data, steps)
    tt = TorchTrainer(workload, data, steps)
    # Warm-up: compile the single-seed shapes and touch PyTorch's kernels once.
    port_gap = common.check_port(workload, take_seed(jx.negres_loop([0])[0], 0), data.x_eval[:256])
    arithmetic_gap = same_arithmetic_gap(workload, jx, tt, data.x_eval)
    rows, accuracies, checks, threads = [], {m: {} for m in METHODS}, [], []
    for num_seeds, rounds in zip(seeds_list, repeats, strict=True):
        seeds = list(range(num_seeds))
        loop_seeds = seeds[:max_loop_seeds]
        jx.compile(seeds)
        loop_threads, loop_trial = common.fastest_torch_threads(lambda: tt.loop([0], steps=20))
        func_threads, func_trial = common.fastest_torch_threads(
            lambda s=seeds: tt.ensemble(s, steps=3))
        threads.append({"num_seeds": num_seeds, "torch loop": loop_threads,
                        "torch.func": func_threads, "trial_s": {
                            "torch loop": loop_trial, "torch.func": func_trial}})

        def torch_loop(s=loop_seeds, n=loop_threads):
            torch.set_num_threads(n)
            return tt.loop(s)

        def torch_func(s=seeds, n=func_threads):
            torch.set_num_threads(n)
            return tt.ensemble(s)

        methods: dict[str, Callable[[], Any]] = {
            "negres": lambda s=seeds: jax.block_until_ready(jx.negres(s)),
            "negres loop": lambda s=loop_seeds: jax.block_until_ready(jx.negres_loop(s)),
            "JAX step loop": lambda s=loop_seeds: jx.step_loop(s),
            "torch loop": torch_loop,
            "torch.func": torch_func,
        }
        torch_threads = {"torch loop": loop_threads, "torch.func": func_threads}
        medians, all_times, results = common.interleaved_medians(methods, rounds)
        acc = {
            "negres": jx.accuracy(results["negres"]),
            "negres loop": jx.accuracy(concat_seeds(results["negres loop"])),
            "JAX step loop": jx.accuracy(stack_seeds(results["JAX step loop"])),
            "torch loop": tt.loop_accuracy(results["torch loop"]),
            "torch.func": tt.ensemble_accuracy(results["torch.func"]),
        }
        first = take_rows(results["negres"], slice(0, len(loop_seeds)))
        # Same keys and batches as negres's first seeds: equal in exact arithmetic; in
        # float32 differently compiled kernels round differently and Adam amplifies it.
        first_acc = acc["negres"][: len(loop_seeds)]
        checks.append({
            "num_seeds": num_seeds,
            "negres_loop_max_param_diff": max_param_difference(
                first, concat_seeds(results["negres loop"])),
            "step_loop_max_param_diff": max_param_difference(
                first, stack_seeds(results["JAX step loop"])),
            "negres_loop_max_accuracy_diff": float(
                np.max(np.abs(acc["negres loop"] - first_acc))),
            "step_loop_max_accuracy_diff": float(
                np.max(np.abs(acc["JAX step loop"] - first_acc))),
        })
        for name in METHODS:
            timed_seeds = len(loop_seeds) if name in SEQUENTIAL else num_seeds
            wall = medians[name] * num_seeds / timed_seeds
            accuracies[name][num_seeds] = acc[name].tolist()
            rows.append({
                "num_seeds": num_seeds, "method": name, "timed_seeds": timed_seeds,
                "rounds": rounds,
                "measured_s": medians[name], "all_measured_s": all_times[name],
                "wall_s": wall, "seeds_per_s": num_seeds / wall,
                "mean_accuracy": float(acc[name].mean()),
                "torch_threads": torch_threads.get(name),
            })
        negres_wall = next(r["wall_s"] for r in rows
                           if r["num_seeds"] == num_seeds and r["method"] == "negres")
        for r in rows:
            if r["num_seeds"] == num_seeds:
                r["wall_over_negres"] = r["wall_s"] / negres_wall
                r["speed_over_negres"] = negres_wall / r["wall_s"]
    return {"rows": rows, "accuracies": accuracies, "same_computation_checks": checks,
            "torch_threads": threads, "port_max_logit_diff": port_gap,
            "negres_plans": {str(n): plan for n, plan in jx.plans.items()},
            "replay_steps": REPLAY_STEPS, "replay_max_relative_logit_diff": arithmetic_gap,
            "eval_name": data.eval_name}


def accuracy_summary(accuracies: dict[str, dict[int, list[float]]],
                     band: float = ACCURACY_BAND) -> list[dict[str, Any]]:
    """Per method, every seed it trained (all S pooled): mean, sd, min, max, band verdict."""
    pooled = {m: np.concatenate([np.asarray(v) for v in by_s.values()])
              for m, by_s in accuracies.items()}
    reference = pooled["negres"].mean()
    out = []
    for name, acc in pooled.items():
        out.append({"method": name, "seeds": int(acc.size), "mean": float(acc.mean()),
                    "sd": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
                    "min": float(acc.min()), "max": float(acc.max()),
                    "in_band": bool(abs(acc.mean() - reference) <= band)})
    return out


def drift_summary(checks: list[dict[str, Any]]) -> str:
    """Per S, the largest parameter and per-seed accuracy difference of the two loops."""
    parts = []
    for c in checks:
        params = max(c["negres_loop_max_param_diff"], c["step_loop_max_param_diff"])
        accuracy = max(c["negres_loop_max_accuracy_diff"], c["step_loop_max_accuracy_diff"])
        parts.append(f"S={c['num_seeds']}: {params:.1e} / {accuracy:.3f}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(common.WORKLOADS), default="mlp_digits")
    parser.add_argument("--seeds", default="1,8,64,256")
    parser.add_argument("--steps", type=int, default=common.STEPS)
    parser.add_argument("--repeats", default="3",
                        help="interleaved rounds: one count for every S, or one per S")
    parser.add_argument("--max-loop-seeds", type=int, default=32)
    parser.add_argument("--accuracy-band", type=float, default=ACCURACY_BAND,
                        help="largest allowed |mean accuracy - negres's| of any method (wide "
                        "for smoke runs of a few steps, where the seeds have not converged)")
    args = parser.parse_args()

    workload = common.WORKLOADS[args.workload]
    seeds_list, repeats = common.parse_ints(args.seeds), common.parse_ints(args.repeats)
    if len(repeats) == 1:
        repeats *= len(seeds_list)
    if len(repeats) != len(seeds_list):
        parser.error(f"--repeats gives {len(repeats)} counts for {len(seeds_list)} seed counts")
    info = common.machine()
    out = run(workload, seeds_list, args.steps, repeats, args.max_loop_seeds)
    summary = accuracy_summary(out["accuracies"], args.accuracy_band)

    print(f"\n### Training: {workload.description}")
    print(f"Adam {common.LEARNING_RATE:g}, batch {common.BATCH_SIZE}, {args.steps} steps; "
          f"median of interleaved rounds (the 'rounds' column), compilation excluded; "
          f"{common.machine_line(info)}\n")
    table = [
        (r["num_seeds"], r["method"], r["timed_seeds"], r["rounds"], r["torch_threads"] or "",
         f"{r['wall_s']:.3f}", f"{r['seeds_per_s']:.1f}", f"{r['wall_over_negres']:.2f}",
         f"{r['speed_over_negres']:.2f}", f"{r['mean_accuracy']:.3f}")
        for r in out["rows"]
    ]
    print(common.markdown_table(["S", "method", "timed seeds", "rounds", "torch threads", "wall s",
                          "seeds/s",
                          "wall / negres", "seeds/s / negres", "mean accuracy"], table))
    print(f"\nAccuracy on {out['eval_name']}, every trained seed of every S pooled "
          f"(band: mean within {args.accuracy_band:.2f} of negres's):\n")
    print(common.markdown_table(
        ["method", "seeds", "mean", "sd", "min", "max", "same band"],
        [(s["method"], s["seeds"], f"{s['mean']:.3f}", f"{s['sd']:.3f}", f"{s['min']:.3f}",
          f"{s['max']:.3f}", "yes" if s["in_band"] else "NO") for s in summary]))
    drift = drift_summary(out["same_computation_checks"])
    print("\nnegres loop and JAX step loop against the same seeds of the negres run (same "
          "keys, same batches; XLA's float32 sums differ in order between seed-batched or "
          f"scanned code and the rest, and {args.steps} Adam steps amplify that): largest "
          f"parameter / per-seed accuracy difference {drift}"
          + "; torch twin "
          f"on ported weights: largest logit difference {out['port_max_logit_diff']:.1e}; "
          f"after {out['replay_steps']} training step(s) from the same weights on the same "
          f"batches, PyTorch's and JAX's logits differ by at most "
          f"{out['replay_max_relative_logit_diff']:.1e} of the largest logit")
    conv_impl = getattr(workload.flax_model(), "conv_impl", None)
    path = common.write_json(f"compare_training_{workload.name}", {
        "workload": workload.name, "description": workload.description, "machine": info,
        "conv_impl": conv_impl, "conv_impl_used": conv_impl and conv_impl_for(conv_impl),
        "steps": args.steps, "batch_size": common.BATCH_SIZE, "learning_rate": common.LEARNING_RATE,
        "repeats": repeats, "max_loop_seeds": args.max_loop_seeds,
        "accuracy_band": args.accuracy_band, "accuracy_summary": summary, **out,
    })
    print(f"written {path}")
    if not all(s["in_band"] for s in summary):
        raise SystemExit("a method left the accuracy band: the timings do not compare like "
                         "with like")


if __name__ == "__main__":
    main()
