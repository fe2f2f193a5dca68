"""Integrated gradients for many seeds: negres's one vmapped call against Captum per seed.

The reference workload (digits MLP 64 -> 64 -> 10, Adam 1e-2, batch 128, 200 steps,
see compare_common.py) is trained for the largest S by negres; then, for S in
{1, 2, 4, 8, 64}, integrated gradients with 32 steps explain the predicted class of 256
digits for seeds ``0..S-1``:

  negres         ``attribute_over_seeds("integrated_gradients", ...)``: one jitted call over
                 seeds (on a CPU, by default, each device's seeds one after another with
                 ``lax.map``), params ``(S, ...)`` -> attributions ``(S, 256, 8, 8, 1)``,
                 with the params split over the ``seeds`` mesh as ``train_seeds`` leaves
                 them (one JAX CPU device per core, ``negres.use_all_cores()``; an S the
                 device count does not divide stays on the default device);
  negres, 1 device  the same call with the params on JAX's default device alone (a
                 diagnostic: what splitting the seeds over the cores gains or costs);
  negres loop    a Python loop over seeds of the same jitted single-seed ``attribute``,
                 plain ``jax.jit`` on the default device as a user writes it;
  Captum loop    a Python loop over seeds of ``captum.attr.IntegratedGradients`` on the
                 PyTorch twin holding the same seed's trained weights (ported exactly).

Both compute the same thing: the midpoint rule (negres's default ``rule="midpoint"``,
Captum's ``method="riemann_middle"``: gradients at ``(k + 1/2) / 32``, weights 1/32), the
all-zeros baseline, and the target each seed predicts at the clean input. The attributions
of every seed are compared numerically (``--rtol``/``--atol``, atol relative to the largest
attribution) before anything is timed. Timing excludes compilation and weight porting
(a Captum user already holds torch models); methods are timed in interleaved rounds, each
called back to back for at least 50 ms per round (time per call), and the median is
reported. Captum runs with the faster of 1 and all cores' PyTorch threads.

    python bench/compare_saliency.py [--seeds 1,2,4,8,64] [--examples 256] [--ig-steps 32]
        [--repeats 5]
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
from captum.attr import IntegratedGradients

from negres.measures.saliency import attribute, attribute_over_seeds, seed_devices
from negres.seeds import take_rows, take_seed
from negres.sharding import put, seed_mesh, seeded, to_host
from negres.training.builtin import train_seeds
from negres.training.linen import linen_apply

ONE_DEVICE = "negres, 1 device"
# Each method is called back to back for about this long per round (the time per call is
# reported): a few-millisecond call timed alone measures waking the thread pools too.
MIN_SECONDS = 0.05
METHODS = ("negres", ONE_DEVICE, "negres loop", "Captum loop")
WORKLOAD = common.WORKLOADS["mlp_digits"]


def captum_attributions(models: list[torch.nn.Module], x: torch.Tensor,
                        ig_steps: int) -> list[torch.Tensor]:
    """Captum IG of each model's predicted class at ``x``, zero baseline, midpoint rule."""
    out = []
    for model in models:
        with torch.no_grad():
            target = model(x).argmax(dim=1)
        out.append(IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=ig_steps,
            method="riemann_middle"))
    return out


def predicted(models: list[torch.nn.Module], x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.stack([m(x).argmax(dim=1).numpy() for m in models])


def run(seeds_list: list[int], examples: int, ig_steps: int, repeats: int,
        rtol: float, atol: float) -> dict[str, Any]:
    data = WORKLOAD.load()
    model = WORKLOAD.flax_model()
    trained = train_seeds(model, optax.adam(common.LEARNING_RATE), data.x_train, data.y_train,
                          num_seeds=max(seeds_list), steps=common.STEPS,
                          batch_size=common.BATCH_SIZE).params
    trained = to_host(trained)  # every S below is placed from the host
    mesh, default = seed_mesh(), jax.devices()[0]
    apply_fn = linen_apply(model)
    x = jnp.asarray(data.x_eval[:examples])  # uncommitted: follows the params' devices
    x_torch = torch.from_numpy(WORKLOAD.to_torch_layout(np.array(x)))
    port_gap = max(common.check_port(WORKLOAD, take_seed(trained, s), np.asarray(x))
                   for s in range(max(seeds_list)))
    every_model = [common.port_params(WORKLOAD, take_seed(trained, s))
                   for s in range(max(seeds_list))]

    jitted: dict[int, Callable[..., Any]] = {}

    def over_seeds_ig(p: Any, xs: jax.Array) -> jax.Array:
        """negres's call as its attributions evaluator makes it: the seeds' device count read
        outside jit (inside, params are traced), the schedule its "auto" default."""
        devices = seed_devices(p)[0]
        if devices not in jitted:
            jitted[devices] = jax.jit(lambda q, ys: attribute_over_seeds(
                "integrated_gradients", apply_fn, q, ys, "predicted", steps=ig_steps,
                rule="midpoint", num_devices=devices))
        return jitted[devices](p, xs)

    one_seed_ig = jax.jit(lambda p, xs: attribute(
        "integrated_gradients", apply_fn, p, xs, "predicted", steps=ig_steps, rule="midpoint"))

    rows, checks = [], []
    for num_seeds in seeds_list:
        rows_s = take_rows(trained, slice(0, num_seeds))
        one_device = jax.device_put(rows_s, default)
        # Where train_seeds leaves S seeds: split over the mesh when its devices divide S.
        split = num_seeds % mesh.size == 0
        params = put(rows_s, seeded(mesh)) if split else one_device
        one_params = [jax.device_put(take_seed(trained, s), default) for s in range(num_seeds)]
        models = every_model[:num_seeds]
        jax.block_until_ready(over_seeds_ig(params, x))  # compile this S
        jax.block_until_ready(over_seeds_ig(one_device, x))
        jax.block_until_ready(one_seed_ig(one_params[0], x))
        threads, trial = common.fastest_torch_threads(
            lambda m=models: captum_attributions(m[:1], x_torch, ig_steps))

        def captum_loop(m=models, n=threads):
            torch.set_num_threads(n)
            return captum_attributions(m, x_torch, ig_steps)

        methods: dict[str, Callable[[], Any]] = {
            "negres": lambda p=params: jax.block_until_ready(over_seeds_ig(p, x)),
            ONE_DEVICE: lambda p=one_device: jax.block_until_ready(over_seeds_ig(p, x)),
            "negres loop": lambda ps=one_params: jax.block_until_ready(
                [one_seed_ig(p, x) for p in ps]),
            "Captum loop": captum_loop,
        }
        medians, all_times, results = common.interleaved_medians(methods, repeats,
                                                                 min_seconds=MIN_SECONDS)

        ours = np.asarray(results["negres"]).reshape(num_seeds, examples, -1)
        loop = np.stack([np.asarray(a) for a in results["negres loop"]]).reshape(ours.shape)
        theirs = np.stack([a.numpy() for a in results["Captum loop"]]).reshape(ours.shape)
        # The target is each seed's own prediction; compare where both frameworks agree on it
        # (a near-tie of two logits can flip the argmax between float32 implementations).
        ours_target = np.argmax(np.asarray(jax.vmap(apply_fn, (0, None))(params, x)), axis=-1)
        same_target = ours_target == predicted(models, x_torch)
        scale = float(np.max(np.abs(ours)))
        np.testing.assert_allclose(theirs[same_target], ours[same_target], rtol=rtol,
                                   atol=atol * scale, err_msg="Captum and negres disagree")
        np.testing.assert_allclose(loop, ours, rtol=rtol, atol=atol * scale,
                                   err_msg="negres's loop and vmapped call disagree")
        np.testing.assert_allclose(np.asarray(results[ONE_DEVICE]).reshape(ours.shape), ours,
                                   rtol=rtol, atol=atol * scale,
                                   err_msg="negres on one device and on the mesh disagree")
        checks.append({
            "num_seeds": num_seeds, "max_abs_attribution": scale,
            "captum_max_abs_diff": float(np.max(np.abs(theirs - ours)[same_target])),
            "loop_max_abs_diff": float(np.max(np.abs(loop - ours))),
            "target_mismatches": int((~same_target).sum()), "torch_threads": threads,
            "negres_devices": mesh.size if split else 1,
            "torch_thread_trial_s": trial,
        })
        for name in METHODS:
            rows.append({"num_seeds": num_seeds, "method": name, "wall_s": medians[name],
                         "all_measured_s": all_times[name],
                         "seeds_per_s": num_seeds / medians[name],
                         "wall_over_negres": medians[name] / medians["negres"],
                         "torch_threads": threads if name == "Captum loop" else None})
    return {"rows": rows, "agreement": checks, "port_max_logit_diff": port_gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,4,8,64")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-5,
                        help="absolute tolerance as a fraction of the largest |attribution|")
    args = parser.parse_args()

    info = common.machine()
    out = run(common.parse_ints(args.seeds), args.examples, args.ig_steps, args.repeats,
              args.rtol, args.atol)
    print(f"\n### Integrated gradients: {WORKLOAD.description}")
    print(f"{args.ig_steps} midpoint steps, zero baseline, predicted class, {args.examples} "
          f"digits per seed; median of {args.repeats} interleaved rounds (each method called "
          f"back to back for at least {MIN_SECONDS * 1e3:.0f} ms per round; time per call), "
          f"compilation excluded; {common.machine_line(info)}\n")
    print(common.markdown_table(
        ["S", "method", "torch threads", "wall s", "seeds/s", "wall / negres"],
        [(r["num_seeds"], r["method"], r["torch_threads"] or "", f"{r['wall_s']:.3f}",
          f"{r['seeds_per_s']:.1f}", f"{r['wall_over_negres']:.2f}") for r in out["rows"]]))
    worst = max(out["agreement"], key=lambda c: c["captum_max_abs_diff"])
    mismatches = sum(c["target_mismatches"] for c in out["agreement"])
    print(f"\nCaptum against negres on the same weights, every seed and example: largest "
          f"|difference| {worst['captum_max_abs_diff']:.1e} (largest |attribution| "
          f"{worst['max_abs_attribution']:.2f}); asserted rtol={args.rtol:g}, "
          f"atol={args.atol:g} x largest |attribution|; {mismatches} examples left out where "
          f"the two frameworks predict different classes")
    path = common.write_json("compare_saliency", {
        "workload": WORKLOAD.name, "machine": info, "examples": args.examples,
        "ig_steps": args.ig_steps, "rule": "midpoint rule (Captum's riemann_middle)",
        "baseline": "zeros", "target": "predicted", "repeats": args.repeats,
        "min_seconds_per_round": MIN_SECONDS,
        "rtol": args.rtol, "atol_relative": args.atol, **out,
    })
    print(f"written {path}")


if __name__ == "__main__":
    main()
