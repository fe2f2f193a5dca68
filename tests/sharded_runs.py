"""Run by tests/test_scale.py in a subprocess with 8 CPU devices: sharded, chunked and
mapped runs against the plain run on one device, per seed; prints one JSON line."""

import json
import sys

import jax
import numpy as np
import optax
from ml_collections import ConfigDict

from negres.models import build_model
from negres.sharding import seed_mesh
from negres.tasks import load_task
from negres.training.builtin import builtin_program, train_seeds
from negres.training.plan import Scale

MODELS = {
    "mlp": {"name": "mlp", "hidden_sizes": (16,), "dropout_rate": 0.1},
    "cnn": {"name": "cnn", "channels": (4,), "dense_size": 8},
}
# name -> (model, num_seeds, settings of the run compared with the plain one)
CASES = {
    "sharded_8_seeds": ("mlp", 8, {}),
    "sharded_5_seeds": ("mlp", 5, {}),
    "sharded_chunks_of_8_for_12_seeds": ("mlp", 12, {"seeds_per_chunk": 8}),
    "sharded_auto_chunks_small_budget": ("mlp", 12, {"memory_budget_bytes": 1}),
    "sharded_cnn_mix_5_seeds": ("cnn", 5, {"layout": "map", "seeds_per_map_step": 2}),
}


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                               strict=True))


def open_path_cases(x, y, x_eval, y_eval, one_device, all_devices) -> dict:
    """A user's linen model with BatchNorm and dropout over a grid, and an NNX model: the
    8-device runs against one device."""
    import flax.linen as nn
    from flax import nnx

    from negres.training.driver import train
    from negres.training.linen import linen_program
    from negres.training.nnx import nnx_program

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Dense(16, use_bias=False)(x.reshape(x.shape[0], -1))
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(10)(nn.Dropout(0.1, deterministic=not train)(nn.relu(x)))

    class NnxNet(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(64, 16, use_bias=False, rngs=rngs)
            self.norm = nnx.BatchNorm(16, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)
            self.out = nnx.Linear(16, 10, rngs=rngs)

        def __call__(self, x):
            x = self.norm(self.hidden(x.reshape(x.shape[0], -1)))
            return self.out(self.drop(nnx.relu(x)))

    def loss(logits, batch):
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    data, eval_data = {"x": x, "y": y}, {"x": x_eval, "y": y_eval}
    programs = {
        "open_linen_grid_2x5_seeds": (
            linen_program(Net(), loss, optax.adam, hyperparams={"learning_rate": 1e-2}),
            {"grid": {"learning_rate": [1e-2, 3e-3]}, "num_seeds": 5}),
        "open_nnx_5_seeds": (nnx_program(NnxNet, loss, optax.adam(1e-2)), {"num_seeds": 5}),
    }
    out = {}
    for name, (program, extra) in programs.items():
        common = dict(steps=10, batch_size=16, eval_every=5, seed=3, eval_data=eval_data) | extra
        plain = train(program, data, scale=Scale(mesh=one_device), **common)
        other = train(program, data, scale=Scale(mesh=all_devices), **common)
        out[name] = {"params_max_abs_diff": _max_diff(plain.state, other.state),
                     "curves_max_abs_diff": max(float(np.max(np.abs(plain.curves[c]
                                                                   - other.curves[c])))
                                                for c in plain.curves),
                     "num_seeds_out": int(other.seed_indices.size),
                     "params_rows": int(other.seed_indices.size),
                     "shape": list(other.curves["train_loss"].shape),
                     "plan": other.plan}
        if name == "open_linen_grid_2x5_seeds":
            one_state = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[0, 0],
                                               plain.state.params)
    # The training loop's options together: epochs, early stopping, a warm start and data
    # fed through Grain on 8 devices, against the same in memory on one.
    from negres.training.contract import LossState
    from negres.training.pipeline import ArraySource
    from negres.training.step import EarlyStopping

    program = linen_program(Net(), loss, optax.adam(1e-2))
    common = dict(steps=20, batch_size=16, eval_every=5, seed=3, eval_data=eval_data,
                  num_seeds=5, sampling="epochs", init_state=LossState(one_state, None, None),
                  early_stopping=EarlyStopping("eval_loss", 1, mode="min", min_delta=1.0))
    plain = train(program, data, scale=Scale(mesh=one_device), **common)
    other = train(program, ArraySource(data), scale=Scale(mesh=all_devices), **common)
    out["open_linen_loop_5_seeds"] = {
        "params_max_abs_diff": _max_diff(plain.state, other.state),
        "curves_max_abs_diff": max(float(np.nanmax(np.abs(plain.curves[c] - other.curves[c])))
                                   for c in plain.curves),
        "nan_curves_agree": all(np.array_equal(np.isnan(plain.curves[c]),
                                               np.isnan(other.curves[c]))
                                for c in plain.curves),
        "stopped_at": other.stopped_at.tolist(), "stopped_at_plain": plain.stopped_at.tolist(),
        "num_seeds_out": int(other.seed_indices.size),
        "params_rows": int(other.seed_indices.size), "plan": other.plan}
    return out


def main() -> None:
    task = load_task(ConfigDict({"name": "digits"}))
    x, y = task.x_train[:256], task.y_train[:256]
    x_eval, y_eval = task.x_test[:64], task.y_test[:64]
    one_device, all_devices = seed_mesh(jax.devices()[:1]), seed_mesh()
    optimizer = optax.adam(1e-2)
    out = {"device_count": jax.device_count()}
    programs, plain = {}, {}
    for name, (model_name, num_seeds, settings) in CASES.items():
        model = build_model(ConfigDict(MODELS[model_name]), task.num_outputs)
        if model_name not in programs:
            programs[model_name] = builtin_program(model, optimizer)
        common = dict(num_seeds=num_seeds, steps=10, batch_size=16, eval_every=5, seed=3,
                      x_eval=x_eval, y_eval=y_eval, program=programs[model_name])
        key = (model_name, num_seeds)
        if key not in plain:
            plain[key] = train_seeds(model, optimizer, x, y,
                                     scale=Scale(mesh=one_device, layout="vmap"), **common)
        other = train_seeds(model, optimizer, x, y, scale=Scale(mesh=all_devices, **settings),
                            **common)
        params_diff = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree_util.tree_leaves(plain[key].params),
                            jax.tree_util.tree_leaves(other.params), strict=True))
        # np.max, not nanmax: a curve point left unfilled (NaN) must fail the comparison.
        curves_diff = max(float(np.max(np.abs(plain[key].curves[c] - other.curves[c])))
                          for c in plain[key].curves)
        out[name] = {"params_max_abs_diff": params_diff, "curves_max_abs_diff": curves_diff,
                     "num_seeds_out": int(other.seed_indices.size),
                     "params_rows": int(jax.tree_util.tree_leaves(other.params)[0].shape[0]),
                     "plan": other.plan}
    out |= open_path_cases(x, y, x_eval, y_eval, one_device, all_devices)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
