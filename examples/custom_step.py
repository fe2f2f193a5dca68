"""A fully custom update step: sharpness-aware minimisation (SAM) as your own SeedProgram.

``negres.SeedProgram(init, step, evaluate, streams)`` is the open contract under
``linen_program`` and ``loss_program``: write the per-seed functions yourself and negres
still owns everything around them: the seed axis (one ``jit(vmap)`` call), each seed's
batches, the random streams (``rngs["dropout"]`` here, a fresh key per seed and step),
grids of your own hyperparameters (``hyper["rho"]``), curves, and divergence freezing
(a seed whose loss or state stops being finite is frozen at its last finite state and
reported in ``result.diverged_at``; the other seeds train on).

SAM (Foret et al., 2021) takes the gradient at ``w + rho * g / |g|``, the worst point
nearby, and applies it at ``w``. ``rho = 0`` is plain SGD on the very same seeds, so the
grid over ``rho`` gives a paired comparison. Data: scikit-learn's 8x8 digits, flat.

    PYTHONPATH=. python examples/custom_step.py [--steps 500] [--seeds 8] [--rho 0 0.05]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import optax

import negres

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, curve_spacing, digits  # flat (N, 64) digits


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(128)(x))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(10)(x)


def sam_program(model: nn.Module, optimizer: optax.GradientTransformation, rho: float = 0.05):
    """SAM of radius ``rho``, or a grid's ``hyper["rho"]``; the state is ``(params, opt_state)``."""
    def loss_fn(params, batch, rngs):
        x, y = batch
        logits = model.apply({"params": params}, x, train=True, rngs=rngs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits.argmax(-1) == y).mean()

    def init(key, batch, hyper):
        params = model.init(key, batch[0])["params"]
        return params, optimizer.init(params)

    def step(state, batch, rngs, hyper):
        params, opt_state = state
        (loss, accuracy), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rngs)
        scale = hyper.get("rho", rho) / (optax.tree.norm(g) + 1e-12)
        nearby = jax.tree.map(lambda p, gi: p + scale * gi, params, g)  # ascend
        sam_g, _ = jax.grad(loss_fn, has_aux=True)(nearby, batch, rngs)
        updates, opt_state = optimizer.update(sam_g, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss,
                                                                  "accuracy": accuracy}

    def evaluate(state, batch, hyper):
        x, y = batch
        logits = model.apply({"params": state[0]}, x)
        return {"accuracy": (logits.argmax(-1) == y).mean()}

    return negres.SeedProgram(init=init, step=step, evaluate=evaluate, streams=("dropout",),
                              name="sam_mlp")


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, steps=500)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--rho", type=float, nargs="+", default=[0.0, 0.05],
                        help="SAM radii, a grid axis (0: plain SGD)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train_data, test_data = digits()

    program = sam_program(MLP(), optax.sgd(args.learning_rate, momentum=0.9))
    result = negres.train(program, train_data, steps=args.steps, batch_size=args.batch_size,
                          num_seeds=args.seeds, grid={"rho": args.rho},
                          eval_data=test_data, eval_every=curve_spacing(args.steps, 5))
    accuracy = result.final("eval_accuracy")  # (len(rho), S)

    print(f"{len(args.rho)} rho x {args.seeds} seeds x {args.steps} steps in one call: "
          f"{result.train_time_s:.1f} s; curves {result.curves['eval_accuracy'].shape}")
    width = 6 * args.seeds
    print(f"{'rho':7s} {'test accuracy per seed':{width}s} diverged_at (-1: never)")
    for rho, acc, div in zip(result.grid["rho"], accuracy, result.diverged_at, strict=True):
        print(f"{rho:<7g} {' '.join(f'{a:.3f}' for a in acc):{width}s} {div.tolist()}")
    if len(args.rho) >= 2:
        c = negres.statistics.compare(accuracy[-1], accuracy[0], paired=True, seed=0)
        low, high = c["ci_bca"]
        # Over seeds alone: the test set is held fixed (negres.evaluate's per-example
        # values would let the interval cover the test examples too).
        print(f"rho={args.rho[-1]:g} vs rho={args.rho[0]:g} (paired over seeds, this test "
              f"set held fixed): difference "
              f"{c['difference']:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}], "
              f"p={c['p_value']:.3g} -> {c['verdict']}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"result": result, "accuracy": accuracy}


if __name__ == "__main__":
    main()
