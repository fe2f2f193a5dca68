"""DeepLIFT (rescale rule) and its DeepExplainer form: negres against Captum, same weights.

The digits MLP of compare_common.py (64 -> 64 -> 10, Adam 1e-2, batch 128, 200 steps),
with ReLU and with tanh, is trained for ``--seeds`` seeds by negres; each seed's weights
are ported exactly into the PyTorch twin (``nn.Flatten, nn.Linear, act, nn.Linear``). For
``--examples`` digits and their true labels as targets:

  DeepLift      ``negres.measures.deeplift.deeplift`` with the all-zeros baseline, vmapped
                over the seeds, against ``captum.attr.DeepLift`` (rescale rule) per seed;
  DeepLiftShap  the same with ``background=`` ``--background`` other digits, against
                ``captum.attr.DeepLiftShap`` with those digits as its baselines (both the
                mean over background rows of the rescale attributions against each).

Reported: the largest |difference| between the two, each side's largest |difference| from
the rule computed in float64 by numpy (``float64_deeplift``: the closed form of a
one-hidden-layer network), against the largest |attribution|, and each side's
completeness gap ``max |sum(attr) - (f(x) - f(reference))|``. Captum switches from the
secant to the gradient below ``|dz| = 1e-10`` and negres below ``sqrt(eps) (|z_x| + |z_r|)``,
so the two can differ only on units whose ``|dz|`` lies between the two; there a float32
secant carries a rounding error of about ``eps |a| / |dz|``, which the float64 column shows.

    python bench/compare_deeplift.py [--seeds 4] [--examples 256] [--background 32]
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import compare_common as common
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from captum.attr import DeepLift, DeepLiftShap
from torch import nn

from negres.measures.deeplift import deeplift
from negres.models import MLP
from negres.seeds import over_seeds, take_seed
from negres.training.builtin import train_seeds
from negres.training.linen import linen_apply


class TorchTanhMLP(nn.Sequential):
    """64 -> 64 (tanh) -> 10, the tanh twin of compare_common.TorchMLP."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


# Each hidden activation, and its derivative, in float64.
ACTIVATIONS = {"relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
               "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)}
RELU = common.WORKLOADS["mlp_digits"]
TANH = dataclasses.replace(
    RELU, name="mlp_digits_tanh", description=RELU.description.replace("ReLU", "tanh"),
    flax_model=lambda: MLP(num_outputs=10, hidden_sizes=(64,), activation="tanh"),
    torch_model=TorchTanhMLP)


def float64_deeplift(params: Any, activation: str, x: np.ndarray, y: np.ndarray,
                     refs: np.ndarray) -> np.ndarray:
    """The rescale rule of a one-hidden-layer MLP in float64, averaged over ``refs``.

    ``attr = mean_r (x - r) * (W1 @ (m_r * W2[:, y]))`` with the secant ``m_r`` of every
    hidden unit between ``x`` and ``r`` (the derivative at ``z`` where ``z_x == z_r``).
    """
    act, slope = ACTIVATIONS[activation]
    w1, b1, w2 = (np.asarray(params[name][leaf], np.float64) for name, leaf in
                  (("Dense_0", "kernel"), ("Dense_0", "bias"), ("Dense_1", "kernel")))
    xs, rs = x.reshape(len(x), -1).astype(np.float64), refs.reshape(len(refs), -1)
    z_x, z_r = (xs @ w1 + b1)[:, None], (rs.astype(np.float64) @ w1 + b1)[None]
    dz = z_x - z_r  # (N, R, H)
    same = dz == 0
    m = np.where(same, slope(z_x + 0 * z_r), (act(z_x) - act(z_r)) / np.where(same, 1.0, dz))
    per_ref = (xs[:, None] - rs[None]) * ((m * w2[:, y].T[:, None, :]) @ w1.T)
    return per_ref.mean(axis=1).reshape(x.shape)


def compare(workload: common.Workload, num_seeds: int, examples: int,
            background: int) -> dict[str, Any]:
    data = workload.load()
    model = workload.flax_model()
    params = train_seeds(model, optax.adam(common.LEARNING_RATE), data.x_train, data.y_train,
                         num_seeds=num_seeds, steps=common.STEPS,
                         batch_size=common.BATCH_SIZE).params
    params = jax.device_get(params)
    apply_fn = linen_apply(model)
    x, y = data.x_eval[:examples], data.y_eval[:examples]
    # Background digits disjoint from the explained ones.
    bg = data.x_eval[examples:examples + background]
    ours = jax.jit(over_seeds(lambda p: (
        deeplift(apply_fn, p, x, y),
        deeplift(apply_fn, p, x, y, background=bg))))(params)
    ours = [np.asarray(a) for a in ours]

    x_t = torch.from_numpy(workload.to_torch_layout(x))
    bg_t = torch.from_numpy(workload.to_torch_layout(bg))
    y_t = torch.from_numpy(y.astype(np.int64))
    out: dict[str, Any] = {"workload": workload.name, "num_seeds": num_seeds}
    port = max(common.check_port(workload, take_seed(params, s), x) for s in range(num_seeds))
    out["port_max_logit_diff"] = port
    activation = model.activation
    for name, method, ref_kwargs, mine, refs in [
        ("DeepLift", DeepLift, {"baselines": torch.zeros_like(x_t)}, ours[0],
         np.zeros_like(x[:1])),
        ("DeepLiftShap", DeepLiftShap, {"baselines": bg_t}, ours[1], bg),
    ]:
        theirs, exact, gaps = [], [], {"negres": 0.0, "captum": 0.0}
        for s in range(num_seeds):
            torch_model = common.port_params(workload, take_seed(params, s))
            attr = method(torch_model).attribute(x_t, target=y_t, **ref_kwargs)
            theirs.append(attr.detach().numpy().reshape(x.shape))
            exact.append(float64_deeplift(take_seed(params, s), activation, x, y, refs))
            logits = np.asarray(apply_fn(take_seed(params, s), x))[np.arange(examples), y]
            reference = (np.asarray(apply_fn(take_seed(params, s), jnp.zeros_like(x[:1])))
                         if name == "DeepLift" else
                         np.asarray(apply_fn(take_seed(params, s), bg)).mean(0, keepdims=True))
            change = logits - reference[0, y]
            for who, a in (("negres", mine[s]), ("captum", theirs[-1])):
                gap = np.abs(a.reshape(examples, -1).sum(axis=1) - change).max()
                gaps[who] = max(gaps[who], float(gap))
        theirs, exact = np.stack(theirs), np.stack(exact)
        out[name] = {"max_abs_diff": float(np.abs(theirs - mine).max()),
                     "negres_max_abs_diff_float64": float(np.abs(mine - exact).max()),
                     "captum_max_abs_diff_float64": float(np.abs(theirs - exact).max()),
                     "max_abs_attribution": float(np.abs(mine).max()),
                     "completeness_gap": gaps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--background", type=int, default=32)
    args = parser.parse_args()

    info = common.machine()
    results = [compare(w, args.seeds, args.examples, args.background) for w in (RELU, TANH)]
    print(f"\n### DeepLIFT rescale: negres against Captum on the same weights "
          f"({args.seeds} seeds, {args.examples} digits, true-label targets, "
          f"{args.background} background digits)\n{common.machine_line(info)}\n")
    print(common.markdown_table(
        ["model", "method", "max abs negres - Captum", "negres - float64", "Captum - float64",
         "max abs attribution", "completeness gap negres", "completeness gap Captum"],
        [(r["workload"], m, f"{r[m]['max_abs_diff']:.1e}",
          f"{r[m]['negres_max_abs_diff_float64']:.1e}",
          f"{r[m]['captum_max_abs_diff_float64']:.1e}", f"{r[m]['max_abs_attribution']:.2f}",
          f"{r[m]['completeness_gap']['negres']:.1e}",
          f"{r[m]['completeness_gap']['captum']:.1e}")
         for r in results for m in ("DeepLift", "DeepLiftShap")]))
    path = common.write_json("compare_deeplift", {"machine": info, **vars(args),
                                                  "results": results})
    print(f"written {path}")


if __name__ == "__main__":
    main()
