"""Scale and durability: sharded, chunked, mapped and resumed runs equal the plain run per seed;
diverging seeds are isolated and left out of the statistics."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import KILL_AFTER_CHECKPOINT, tree_allclose
from jax.sharding import SingleDeviceSharding
from ml_collections import ConfigDict
from tests_configs import LIGHT

from negres.errors import ArgumentError, ResumeError
from negres.models import build_model
from negres.results import ConditionResults
from negres.seeds import lift_over_seeds, take_seed
from negres.statistics.study import analyze, without_diverged
from negres.training.builtin import builtin_program, train_seeds
from negres.training.checkpoint import Checkpointing, TrainingCheckpoints
from negres.training.layout import check_layout, is_convolutional
from negres.training.optimizers import build_optimizer
from negres.training.plan import Scale

REPO = Path(__file__).resolve().parents[1]
# Single-seed results and many-seed rows differ by float reassociation only.
ATOL = 2e-5


def _subprocess_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **extra)


def test_sharded_chunked_and_mapped_runs_on_8_devices_equal_the_plain_run():
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "sharded_runs.py")], capture_output=True,
        text=True, cwd=REPO, timeout=400,
        env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["device_count"] == 8
    cases = {k: v for k, v in out.items() if k != "device_count"}
    assert len(cases) == 8
    for name, case in cases.items():
        assert case["params_max_abs_diff"] < ATOL, name
        assert case["curves_max_abs_diff"] < ATOL, name
        assert case["num_seeds_out"] == case["params_rows"], name
        assert case["plan"]["num_devices"] == 8, name
    # S not a multiple of the device count: padded to a whole row, padding dropped.
    assert cases["sharded_5_seeds"]["plan"]["padded_seeds"] == 3
    assert cases["sharded_5_seeds"]["num_seeds_out"] == 5
    chunks = cases["sharded_chunks_of_8_for_12_seeds"]["plan"]
    assert (chunks["seeds_per_chunk"], chunks["num_chunks"], chunks["padded_seeds"]) == (8, 2, 4)
    # A budget no compiled step fits: the smallest chunk, one seed per device.
    auto = cases["sharded_auto_chunks_small_budget"]["plan"]
    assert (auto["seeds_per_chunk"], auto["num_chunks"]) == (8, 2)
    assert "budget" in auto["reason"]
    # The open path: a user's linen grid (2 x 5 rows on 8 devices) and an NNX model.
    assert cases["open_linen_grid_2x5_seeds"]["shape"] == [2, 5, 2]
    assert cases["open_linen_grid_2x5_seeds"]["plan"]["padded_seeds"] == 6
    assert cases["open_nnx_5_seeds"]["shape"] == [5, 2]
    loop = cases["open_linen_loop_5_seeds"]
    assert loop["nan_curves_agree"] and loop["stopped_at"] == loop["stopped_at_plain"]
    assert max(loop["stopped_at"]) > 0  # some seed stopped: the stopping path ran
    mix = cases["sharded_cnn_mix_5_seeds"]["plan"]
    assert (mix["layout"], mix["seeds_per_map_step"], mix["seeds_per_chunk"]) == ("map", 2, 16)


@pytest.fixture(scope="module")
def mlp_setup(small_digits):
    model = build_model(ConfigDict({"name": "mlp", "hidden_sizes": (16,)}), 10)
    optimizer = optax.adam(1e-2)
    program = builtin_program(model, optimizer)
    common = dict(steps=20, batch_size=16, eval_every=5, seed=1, program=program,
                  x_eval=small_digits.x_test, y_eval=small_digits.y_test)

    def train(**kwargs):
        return train_seeds(model, optimizer, small_digits.x_train, small_digits.y_train,
                           **(common | kwargs))

    return train, train(num_seeds=5)


def test_chunked_run_equals_the_unchunked_run_per_seed(mlp_setup):
    train, plain = mlp_setup
    chunked = train(num_seeds=5, scale=Scale(seeds_per_chunk=2))
    assert (chunked.plan["num_chunks"], chunked.plan["padded_seeds"]) == (3, 1)
    tree_allclose(chunked.params, plain.params, atol=ATOL)
    for name, curve in plain.curves.items():
        np.testing.assert_allclose(chunked.curves[name], curve, atol=ATOL)


def test_automatic_chunks_follow_the_memory_budget(mlp_setup):
    train, plain = mlp_setup
    assert plain.plan["num_chunks"] == 1 and "MiB" in plain.plan["reason"]
    # Room for about two seeds' worth: the compiled step of all five does not fit.
    needed = float(plain.plan["reason"].split("needs ")[1].split(" MiB")[0]) * 2**20
    squeezed = train(num_seeds=5, scale=Scale(memory_budget_bytes=int(needed * 0.45)))
    assert 1 <= squeezed.plan["seeds_per_chunk"] < 5
    assert "over the" in squeezed.plan["reason"]
    tree_allclose(squeezed.params, plain.params, atol=ATOL)


def test_resumed_run_equals_the_uninterrupted_run(mlp_setup, tmp_path):
    train, plain = mlp_setup
    with TrainingCheckpoints(tmp_path / "full") as full:
        complete = train(num_seeds=5,
                         checkpointing=Checkpointing(full, every=5, fingerprint="a"))
        assert full.all_steps() == [10, 15, 20]  # the last three of 5, 10, 15, 20
    tree_allclose(complete.params, plain.params, atol=0)
    # Drop the newest checkpoints: what a run killed after step 10 leaves behind.
    for step in (15, 20):
        shutil.rmtree(tmp_path / "full" / str(step))
    with TrainingCheckpoints(tmp_path / "full") as partial:
        resumed = train(num_seeds=5,
                        checkpointing=Checkpointing(partial, every=5, fingerprint="a"))
    assert resumed.plan["resumed_from_step"] == 10
    tree_allclose(resumed.params, plain.params, atol=0)
    tree_allclose(resumed.opt_state, plain.opt_state, atol=0)
    for name, curve in plain.curves.items():
        np.testing.assert_array_equal(resumed.curves[name], curve)
    with (TrainingCheckpoints(tmp_path / "full") as other,
          pytest.raises(ResumeError, match='fingerprint \\(saved "a", now')):
        train(num_seeds=5, checkpointing=Checkpointing(other, fingerprint="another config"))


def test_diverging_seeds_are_frozen_flagged_and_leave_the_others_alone(regression_task):
    # Plain SGD on least squares blows up geometrically above its stable step size: the
    # middle seed's loss overflows some twenty steps in, mid-run.
    model = build_model(ConfigDict({"name": "linear"}), 1)
    optimizer = build_optimizer(ConfigDict({"name": "sgd", "learning_rate": 0.05}))
    task = regression_task

    def train(**kwargs):
        return train_seeds(model, optimizer, task.x_train, task.y_train, kind="regression",
                           batch_size=32, **kwargs)

    mixed = train(seed_indices=[0, 1, 2], hyperparams={"learning_rate": [0.05, 3.0, 0.05]},
                  steps=60, eval_every=5)
    assert mixed.diverged_at[0] == -1 and mixed.diverged_at[2] == -1
    step = int(mixed.diverged_at[1])
    assert 5 < step < 60
    # Curve points before the one holding the diverging step are finite; from it on, NaN.
    for curve in mixed.curves.values():
        assert np.all(np.isfinite(curve[1, :step // 5]))
        assert np.all(np.isnan(curve[1, step // 5:]))
        assert np.all(np.isfinite(curve[[0, 2]]))
    # Frozen at its last finite state: the parameters after exactly `step` steps.
    before = train(seed_indices=[1], hyperparams={"learning_rate": [3.0]}, steps=step)
    tree_allclose(take_seed(mixed.params, 1), take_seed(before.params, 0), atol=0, rtol=1e-4)
    assert before.diverged_at[0] == -1
    # The other seeds trained as if alone.
    alone = train(seed_indices=[0, 2], steps=60, eval_every=5)
    for row, seed in ((0, 0), (2, 1)):
        tree_allclose(take_seed(mixed.params, row), take_seed(alone.params, seed), atol=ATOL)


def _condition(seeds, diverged_at, values):
    agreement = np.random.default_rng(len(seeds)).uniform(size=(len(seeds), len(seeds)))
    np.fill_diagonal(agreement, 1.0)
    per_seed = (agreement.sum(axis=1) - 1.0) / (len(seeds) - 1)
    return ConditionResults.from_json({
            "seed_indices": np.asarray(seeds), "diverged_at_step": np.asarray(diverged_at),
            "metrics": {"test_accuracy": np.asarray(values, float),
                        "ig_agreement_spearman_abs": per_seed},
            "metric_info": {
                "test_accuracy": {"direction": "higher", "evaluator": "performance"},
                "ig_agreement_spearman_abs": {"direction": "higher", "evaluator": "attributions",
                                              "pairwise": "agreement/ig/spearman_abs"}},
            "evaluations": {
                "attributions": {"pairwise": {"agreement": {"ig": {"spearman_abs": agreement}}}},
                "robustness": {
                    "per_seed": {"curves": {"noise": {
                        "accuracy": np.stack([values, np.asarray(values) - 0.1], 1)}}},
                    "shared": {"severities": {"noise": [0.0, 0.5]}}}}})


def test_statistics_leave_out_diverged_seeds_and_say_how_many():
    conditions = {
        "a": _condition([0, 1, 2, 3], [-1, 7, -1, -1], [0.9, 0.1, 0.8, 0.85]),
        "b": _condition([0, 1, 2, 3], [-1, -1, -1, 3], [0.7, 0.75, 0.72, 0.2]),
    }
    unpaired, excluded = without_diverged(conditions)
    assert excluded["count"] == {"a": 1, "b": 1}
    assert excluded["seed_indices"] == {"a": [1], "b": [3]}
    np.testing.assert_array_equal(unpaired["a"].metrics["test_accuracy"], [0.9, 0.8, 0.85])
    robustness = unpaired["a"].evaluations["robustness"]
    assert robustness.per_seed["curves"]["noise"]["accuracy"].shape == (3, 2)
    assert robustness.shared["severities"]["noise"] == [0.0, 0.5]  # not per seed: kept
    # Paired: a seed that diverged anywhere leaves everywhere, so rows still pair by seed.
    paired, excluded = without_diverged(conditions, paired=True)
    assert excluded["count"] == {"a": 2, "b": 2}
    np.testing.assert_array_equal(paired["b"].metrics["test_accuracy"], [0.7, 0.72])
    # A seed's agreement is its mean agreement with the others: recomputed without seed 1.
    matrix = np.asarray(
        conditions["a"].evaluations["attributions"].pairwise["agreement"]["ig"]["spearman_abs"])
    kept = matrix[np.ix_([0, 2, 3], [0, 2, 3])]
    expected = (kept.sum(axis=1) - np.diag(kept)) / 2
    np.testing.assert_allclose(unpaired["a"].metrics["ig_agreement_spearman_abs"], expected)
    assert unpaired["a"].evaluations["attributions"].pairwise["agreement"]["ig"][
        "spearman_abs"].shape == (3, 3)
    summary = analyze(unpaired, "a", num_resamples=200, num_permutations=200).summaries
    assert summary["a"]["test_accuracy"]["n"] == 3
    assert summary["a"]["test_accuracy"]["mean"] == pytest.approx(np.mean([0.9, 0.8, 0.85]))


def test_a_condition_whose_every_seed_diverged_gets_no_verdict():
    conditions = {"a": _condition([0, 1, 2], [-1, -1, -1], [0.9, 0.8, 0.85]),
                  "b": _condition([0, 1, 2], [4, 2, 9], [0.1, 0.1, 0.1])}
    finite, _ = without_diverged(conditions)
    analysis = analyze(finite, "a", num_resamples=200, num_permutations=200)
    assert analysis.summaries["b"]["test_accuracy"]["n"] == 0
    assert analysis.comparisons["test_accuracy"]["b"]["verdict"] != "better"
    assert analysis.comparisons["test_accuracy"]["b"]["verdict"] != "worse"


def test_map_layout_computes_what_vmap_computes():
    def one(w, b, key, start, x):
        return {"y": jax.numpy.tanh(x @ w + b) * start, "k": jax.random.normal(key, (3,))}

    rng = np.random.default_rng(0)
    args = (rng.normal(size=(12, 4, 3)).astype(np.float32),
            rng.normal(size=(12, 3)).astype(np.float32),
            np.asarray(jax.random.split(jax.random.PRNGKey(0), 12)),
            np.float32(2.0), rng.normal(size=(5, 4)).astype(np.float32))
    reference = lift_over_seeds(one, (0, 1, 2), "vmap")(*args[:3], *args[3:])

    def padded(*a):  # the lifted function takes four seeded arguments in the engine
        return lift_over_seeds(lambda w, b, k, _, s, x: one(w, b, k, s, x), (0, 1, 2, 3), "map",
                               num_devices=2, seeds_per_map_step=3)(*a)

    mapped = padded(*args[:3], np.zeros(12), *args[3:])
    tree_allclose(mapped, reference, atol=1e-6)


def test_convolutions_are_detected_in_the_traced_step(small_digits):
    x = small_digits.x_train[:4]
    for name, conv_impl, expected in (("cnn", "lax", True), ("cnn", "matmul", False),
                                      ("mlp", "auto", False)):
        model = build_model(ConfigDict({"name": name, "channels": (2,), "dense_size": 4,
                                        "conv_impl": conv_impl}), 10)
        params = model.init(jax.random.PRNGKey(0), x)["params"]
        assert is_convolutional(lambda p, m=model: m.apply({"params": p}, x), params) is expected


@pytest.mark.parametrize(("field", "layout", "width"), [
    ("layout", "pmap", 1), ("seeds_per_map_step", "map", 0),
    ("seeds_per_map_step", "map", 2.5),
])
def test_bad_layout_knobs_name_the_field(field, layout, width):
    with pytest.raises(ArgumentError) as err:
        check_layout(layout, width)
    assert err.value.field == field


@pytest.mark.parametrize(("field", "make"), [
    ("scale.seeds_per_chunk", lambda: Scale(seeds_per_chunk=-1)),
    ("checkpointing.every", lambda: Checkpointing("unused", every=2.5)),
    ("scale.layout", lambda: Scale(layout="sequential")),
])
def test_bad_scale_arguments_fail_before_compiling(field, make):
    with pytest.raises(ArgumentError) as err:
        make()
    assert err.value.field == field


def _main(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO,
                          env=_subprocess_env(**env), timeout=300)


def _final_params(workdir: Path) -> dict:
    group = next((workdir / "checkpoints").iterdir())
    last = max(int(p.name) for p in group.iterdir() if p.name.isdigit())
    path = group / str(last) / "state"
    # Restored onto this process's one device, whatever devices main.py saved it from.
    checkpointer, here = ocp.StandardCheckpointer(), SingleDeviceSharding(jax.devices()[0])
    target = jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=here),
        checkpointer.metadata(path).item_metadata)
    return checkpointer.restore(path, target)["state"]["params"]


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, main_forked):
    # LIGHT: 40 steps, checkpoints every 10, light evaluation; the runs of test_workdir and
    # test_workdir_lock compile the same programs (conftest: JAX's persistent cache).
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    argv = [str(REPO / "main.py"), *LIGHT, "--workdir", str(killed)]
    code = KILL_AFTER_CHECKPOINT.format(kill_step=20, argv=argv)
    proc = _main(["-c", code])
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "results.json").exists()
    resumed = _main(argv)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from the checkpoint at step 20 of 40" in resumed.stderr
    uninterrupted = _main([str(REPO / "main.py"), *LIGHT, "--workdir", str(whole)])
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((whole / "results.json").read_text())
    assert a["conditions"]["mlp"]["training_plan"]["resumed_from_step"] == 20
    assert b["conditions"]["mlp"]["training_plan"]["resumed_from_step"] is None
    for metric, values in b["metrics"].items():
        np.testing.assert_array_equal(a["metrics"][metric], values, err_msg=metric)
    for name, curve in b["curves"].items():
        np.testing.assert_array_equal(a["curves"][name], curve, err_msg=name)
    tree_allclose(_final_params(killed), _final_params(whole), atol=0)
    # The same workdir with another config is refused before anything compiles.
    os.unlink(killed / "results.json")
    other = main_forked(*argv[1:], "--config.optimizer.learning_rate=0.5")
    assert other.returncode != 0
    assert "holds checkpoints of a run of another config" in other.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_their_share_and_gather_the_single_process_result(tmp_path):
    script = str(REPO / "tests" / "multihost_runs.py")
    # JAX warns that proxies may hang its coordination service's gRPC.
    env = {k: v for k, v in _subprocess_env().items() if "proxy" not in k.lower()}
    reference = subprocess.run(
        [sys.executable, script, "--checkpoints", str(tmp_path / "ref_ckpt"),
         "--out", str(tmp_path / "reference.npz")],
        capture_output=True, text=True, env=env, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    port = _free_port()
    processes = [subprocess.Popen(
        [sys.executable, script, "--process_id", str(i), "--port", str(port),
         "--checkpoints", str(tmp_path / "shared_ckpt"), "--out", str(tmp_path / "multi.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()  # SIGKILL: JAX catches SIGTERM once distributed
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    ref, multi = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "multi.npz")
    assert (int(multi["processes"]), int(multi["devices"])) == (2, 4)
    assert int(multi["padded"]) == 3  # five seeds on four devices: two rows of four
    assert int(multi["resumed_from"]) == 5 and int(ref["resumed_from"]) == 5
    np.testing.assert_array_equal(multi["diverged_at"], [-1] * 5)
    np.testing.assert_allclose(multi["resumed_curve"], ref["train_loss"], rtol=1e-6, atol=1e-6)
    num_leaves = int(ref["num_leaves"])
    for i in range(2 * num_leaves):  # trained, then resumed from step 5
        np.testing.assert_allclose(multi[f"arr_{i}"], ref[f"arr_{i % num_leaves}"],
                                   rtol=1e-6, atol=1e-6)
    for name in ("train_loss", "eval_accuracy"):
        np.testing.assert_allclose(multi[name], ref[name], rtol=1e-6, atol=1e-6)


def test_a_study_flags_diverged_seeds_and_leaves_them_out_of_its_statistics(tmp_path):
    from tests_configs import tiny_config

    from negres.study import experiment

    config = tiny_config()
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
    config.evaluation.attributions.attribution_methods = ("gradient",)
    config.evaluation.attributions.max_sensitivity = False
    config.evaluation.attributions.randomization_check = False
    # One huge learning rate on the seed axis: same compiled call, its rows diverge.
    config.conditions = ({"name": "ok"}, {"name": "exploding", "optimizer.learning_rate": 1e30})
    results = experiment.run(config, str(tmp_path))
    ok, exploding = results.conditions["ok"], results.conditions["exploding"]
    assert ok.trained_in_one_call_with == ["exploding"]
    assert ok.diverged.count == 0 and ok.diverged_at_step.tolist() == [-1, -1, -1]
    assert exploding.diverged.count == 3
    assert all(0 <= s < config.train.steps for s in exploding.diverged_at_step)
    excluded = results.statistics.excluded_diverged_seeds
    assert excluded["count"] == {"ok": 0, "exploding": 3}
    summaries = results.statistics.summaries
    assert summaries["ok"]["test_accuracy"]["n"] == 3
    assert summaries["exploding"]["test_accuracy"]["n"] == 0
    verdict = results.statistics.comparisons["test_accuracy"]["exploding"]["verdict"]
    assert verdict == "inconclusive"
    report = (tmp_path / "report.md").read_text()
    assert "**3 of 3 seeds diverged**" in report
    assert "layout vmap" in report


def test_main_on_two_hosts_writes_once_what_one_host_computes(tmp_path):
    """Two processes of main.py (two CPU devices each) against one process: same numbers."""
    # Two devices a process, at the XLA optimisation level of the one-host run (conftest).
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {k: v for k, v in _subprocess_env(XLA_FLAGS=xla_flags.strip()).items()
           if "proxy" not in k.lower()}
    argv = [sys.executable, str(REPO / "main.py"), "--config", "configs/default.py",
            "--config.num_seeds=5", "--config.train.steps=40", "--config.train.eval_every=10",
            "--config.evaluation.attributions.attribution_examples=8",
            "--config.stats.num_resamples=200", "--config.stats.num_permutations=200",
            "--config.evaluation.attributions.randomization_check=False",
            "--config.evaluation.robustness.severities=(0.0, 0.3)"]
    port = _free_port()
    processes = [subprocess.Popen(
        [*argv, "--workdir", str(tmp_path / "multi"), f"--coordinator_address=localhost:{port}",
         "--num_processes=2", f"--process_id={i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        for i in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "results:" in outputs[0][0] and "results:" not in outputs[1][0]  # process 0 writes
    single = _main([*argv[1:], "--workdir", str(tmp_path / "single")], JAX_NUM_CPU_DEVICES="1")
    assert single.returncode == 0, single.stderr[-2000:]
    a = json.loads((tmp_path / "multi" / "results.json").read_text())
    b = json.loads((tmp_path / "single" / "results.json").read_text())
    assert a["device"]["count"] == 4 and b["device"]["count"] == 1
    assert a["conditions"]["mlp"]["training_plan"]["num_devices"] == 4
    assert set(a["metrics"]) == set(b["metrics"])
    for metric, values in b["metrics"].items():
        np.testing.assert_allclose(a["metrics"][metric], values, rtol=1e-5, atol=1e-5,
                                   err_msg=metric)
    for name, curve in b["curves"].items():
        np.testing.assert_allclose(a["curves"][name], curve, rtol=1e-5, atol=1e-5, err_msg=name)
    assert a["conditions"]["mlp"]["diverged_at_step"] == [-1] * 5
