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
            plain[key] = train_seeds(model, optimizer, x, y, mesh=one_device, layout="vmap",
                                     **common)
        other = train_seeds(model, optimizer, x, y, mesh=all_devices, **common, **settings)
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
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
