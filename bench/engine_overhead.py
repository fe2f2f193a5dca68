"""negres's own overhead: its training call against a bare ``jit(vmap(scan))`` of the same step.

Workload: compare_training.py's digits MLP (1,797 digits as (8, 8, 1) in [0, 1], MLP
64 -> 64 (ReLU) -> 10, Adam 1e-2, batches of 128 drawn with replacement, ``--steps`` 200),
at S = ``--seeds`` (64 and 256), on every CPU core as one JAX CPU device per core (the
``seeds`` mesh spans them all). Variants, compile excluded, timed in interleaved rounds
(the order rotates each round) and reported as medians:

  bare              ``jit(vmap(lambda state, key: lax.scan(step, state, steps)))`` of the
                    program's own ``step`` with negres's batches (``step_key(key, "data",
                    t)`` + ``randint``), states and keys split over the ``seeds`` mesh,
                    data replicated; no divergence guard, no curves. Each call first
                    runs negres's compiled ``init`` (shared by every variant, as negres
                    calls it: a few ms), so that only the scan is compiled per variant.
  + <piece>         bare plus one piece of what negres's ``SeedTrainer`` added up to
                    26196ae, written here as a copy of its code: the dtype cast; the
                    curves (the nested scan over curve points, ``train_*`` means, the
                    eval set at each point when there is one); the finiteness check of
                    the whole state (``all_finite``, which only updates ``diverged_at``);
                    the check with the per-leaf ``jnp.where`` select that freezes a seed;
                    cheaper checks (loss only, params + loss, ``sum(leaf * 0)``, a
                    ``dot`` with zeros); a check once per curve point; the metrics' NaN
                    masking.
  old engine        every piece at once: the graph of negres's segment up to 26196ae,
                    which guarded every step (timed at every S).
  negres            ``train_seeds(...)`` as compare_training.py calls it: the wall a
                    user sees (argument checks, placing the data, keys, plan, curves
                    fetched, final state), with the engine in negres/training/step.py
                    (since f6f114a: unguarded steps with a loss check, the whole state
                    checked once per curve point, a point replayed with the per-step
                    guard where a seed diverged).
  negres compiled   negres's own compiled ``init`` and segment executables, called as
                    the driver calls them: ``negres`` minus this is the per-call host time.
  proto ...         alternatives, as ``SeedTrainer`` subclasses trained through the real
                    ``negres.train(scale=negres.Scale(trainer=...))`` and timed by their
                    compiled pieces:
                    ``dot check`` (:class:`DotCheckTrainer`: the old per-step guard with
                    the check as a GEMV) and ``replay`` (:class:`ReplayTrainer`: negres's
                    replay with an exact trigger, every step's whole state checked).

The default curves are compare_training.py's (``eval_every`` = ``steps``: one point of
``train_loss`` and ``train_accuracy``, no eval set); ``--eval-every 50`` trains with a
curve point and an evaluation of the 1,797 digits every 50 steps (the CLI's default
spacing). Ablations run at the sizes in ``--ablations-at`` (default the smallest S); the
other sizes time bare, the old engine, negres and the replay prototype. Besides the wall
time, each call's process CPU time is recorded: on a machine shared with other jobs it
moves less than the wall; "/ bare" is also given as the median of per-round ratios.

Checked before anything is reported: the prototypes give bit-identical state, curves
and ``diverged_at`` to negres's ``SeedTrainer`` on the timed workload at every S, and on
a run whose seeds diverge at different steps (:func:`verify`); the script exits non-zero
when they do not.

    python bench/engine_overhead.py [--seeds 64,256] [--steps 200] [--repeats 3]
        [--ablations-at 64] [--eval-every 200] [--quick] [--out bench/results/engine_overhead.json]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _use_all_cores() -> str:
    """One JAX CPU device per core; must run before anything touches JAX's devices."""
    try:
        from negres.sharding import use_all_cores
    except ImportError:  # a negres without it
        use_all_cores = None
    if use_all_cores is not None:
        return use_all_cores().reason
    import jax

    cores = len(os.sched_getaffinity(0))
    jax.config.update("jax_num_cpu_devices", cores)
    return f"jax_num_cpu_devices = {cores}"


CORES_REASON = _use_all_cores()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

from negres.models import MLP  # noqa: E402
from negres.seeds import seed_key, seed_keys, step_key  # noqa: E402
from negres.sharding import put, replicated, seed_mesh, seeded  # noqa: E402
from negres.training.builtin import builtin_data, builtin_program, train_seeds  # noqa: E402
from negres.training.plan import Scale  # noqa: E402
from negres.training.step import (  # noqa: E402
    SeedTrainer,
    _int32_steps,
    _select,
    all_finite,
)

LEARNING_RATE = 1e-2  # compare_common.py's
# Every piece at once: the graph of negres's segment up to 26196ae, which guarded every step
# (whole-state check and per-leaf select); timed at every S.
OLD_ENGINE = "old engine (per-step guard)"
BATCH_SIZE = 128
DEFAULT_OUT = REPO / "bench" / "results" / "engine_overhead.json"


# --------------------------------------------------------------------------- the workload


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """compare_common.load_digits_data without torch: ``x (1797, 8, 8, 1)``, ``y (1797,)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32)[..., None], bunch.target.astype(np.int32)


class Workload:
    """The digits MLP, its program, and its data placed on the ``seeds`` mesh."""

    def __init__(self, steps: int, eval_every: int):
        self.steps, self.eval_every = steps, eval_every
        self.x, self.y = (jnp.asarray(a) for a in load_digits_data())
        self.model = MLP(num_outputs=10, hidden_sizes=(64,))
        self.optimizer = optax.adam(LEARNING_RATE)
        self.program = builtin_program(self.model, self.optimizer)
        self.has_eval = eval_every != steps
        self.mesh = seed_mesh()
        self.split, self.shared = seeded(self.mesh), replicated(self.mesh)
        self.host_data = builtin_data(self.x, self.y)
        self.data = put(self.host_data, self.shared)
        # The digits workload evaluates on all 1,797 digits (compare_common.py).
        self.eval_data = self.data if self.has_eval else put((), self.shared)
        self.example = jax.tree_util.tree_map(lambda a: a[:BATCH_SIZE], self.host_data)
        self.num_train = int(self.x.shape[0])

    def train_kwargs(self) -> dict[str, Any]:
        extra = {"x_eval": self.x, "y_eval": self.y} if self.has_eval else {}
        # vmap pinned: the bare reference is a jit(vmap(scan)), and this measures the engine,
        # not the layout "auto" would pick (map at 256 seeds on a CPU, docs/scale.md).
        return {"steps": self.steps, "batch_size": BATCH_SIZE, "eval_every": self.eval_every,
                **extra}

    def negres(self, num_seeds: int, trainer: SeedTrainer | None = None) -> Any:
        """``train_seeds`` as compare_training.py calls it (plus ``trainer`` for the prototype)."""
        return train_seeds(self.model, self.optimizer, self.x, self.y,
                           seed_indices=list(range(num_seeds)), program=self.program,
                           scale=Scale(layout="vmap", trainer=trainer), **self.train_kwargs())

    def trainer(self) -> SeedTrainer:
        return SeedTrainer(self.program, batch_size=BATCH_SIZE, eval_every=self.eval_every,
                           has_eval=self.has_eval)


# --------------------------------------------------------------------------- finiteness checks


def finite_by_dot(tree: Any) -> jax.Array:
    """Exactly :func:`all_finite`, as one matrix-vector product per leaf.

    ``sum_i x_i * 0`` is 0 when every ``x_i`` is finite and NaN otherwise (``inf * 0`` is
    NaN and NaN propagates); it cannot overflow. As a ``dot`` it runs as a vectorized
    GEMV, where XLA:CPU's reduction of ``isfinite`` over a leaf runs several times slower.
    The zeros pass an optimization barrier so that no compiler folds the product away;
    ``HIGHEST`` keeps TPUs from rounding float32 near its maximum to a bfloat16 infinity.
    """
    total = jnp.zeros((), jnp.float32)
    exact = []
    for leaf in jax.tree_util.tree_leaves(tree):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            continue
        if jnp.issubdtype(dtype, jnp.complexfloating):
            exact.append(jnp.all(jnp.isfinite(leaf)))
            continue
        flat = jnp.ravel(leaf)
        zeros = lax.optimization_barrier(jnp.zeros(flat.shape, dtype))
        total = total + jnp.dot(flat, zeros, precision=lax.Precision.HIGHEST,
                                preferred_element_type=jnp.promote_types(dtype, jnp.float32))
    finite = jnp.isfinite(total)
    for flag in exact:
        finite &= flag
    return finite


def finite_by_sum(tree: Any) -> jax.Array:
    """Exactly :func:`all_finite`, as ``isfinite(sum_i sum(leaf_i * 0))``."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.isfinite(sum((jnp.sum(leaf * 0) for leaf in leaves), jnp.zeros((), jnp.float32)))


CHECKS: dict[str, Callable[[Any, dict[str, jax.Array]], jax.Array]] = {
    # negres's: every float leaf of the whole state, optimizer moments included, and the loss
    "state": lambda state, m: all_finite(state) & jnp.isfinite(m["loss"]),
    "loss": lambda state, m: jnp.isfinite(m["loss"]),
    "params": lambda state, m: all_finite(state.params) & jnp.isfinite(m["loss"]),
    "sum0": lambda state, m: finite_by_sum(state) & jnp.isfinite(m["loss"]),
    "dot": lambda state, m: finite_by_dot(state) & jnp.isfinite(m["loss"]),
}


# --------------------------------------------------------------------------- bare and ablations


def mirror_one(work: Workload, *, cast: bool = False, curves: bool = False,
               check: str | None = None, select: bool = False, mask: bool = False,
               per_point: bool = False) -> Callable[..., Any]:
    """One seed's ``state, key, data, eval_data -> outputs``: bare, or bare plus the pieces
    asked for, each a copy of ``SeedTrainer``'s code (negres/training/step.py)."""
    program, batch_size, num_train = work.program, BATCH_SIZE, work.num_train
    eval_every = work.eval_every if curves or per_point else work.steps

    def step_fn(carry, step, key, data):
        state, diverged_at = carry
        index = jax.random.randint(step_key(key, "data", step), (batch_size,), 0, num_train)
        batch = jax.tree_util.tree_map(lambda leaf: leaf[index], data)
        rngs = {name: step_key(key, name, step) for name in program.streams}
        new_state, metrics = program.step(state, batch, rngs, {})
        if cast:
            new_state = jax.tree_util.tree_map(
                lambda new, old: new if new.dtype == old.dtype else new.astype(old.dtype),
                new_state, state)
        if check is None or per_point:
            return (new_state, diverged_at), metrics
        alive = diverged_at < 0
        finite = CHECKS[check](new_state, metrics)
        keep = alive & finite
        carry = (_select(keep, new_state, state) if select else new_state,
                 jnp.where(alive & ~finite, step, diverged_at).astype(jnp.int32))
        if mask:
            metrics = {k: jnp.where(keep, v, jnp.nan) for k, v in metrics.items()}
        return carry, metrics

    def run(state, key, data, eval_data):
        carry = (state, jnp.int32(-1))

        def point(carry, point_start):
            start = carry
            carry, metrics = lax.scan(lambda c, t: step_fn(c, t, key, data), carry,
                                      _int32_steps(point_start, eval_every))
            if per_point:  # one check of the state reached, one select per point
                alive = start[1] < 0
                finite = CHECKS[check](carry[0], {"loss": metrics["loss"][-1]})
                keep = alive & finite
                carry = (_select(keep, carry[0], start[0]),
                         jnp.where(alive & ~finite, point_start, start[1]).astype(jnp.int32))
            if not curves:
                return carry, None
            out = {f"train_{k}": v.mean() for k, v in metrics.items()}
            if work.has_eval:
                alive = carry[1] < 0
                evaluated = program.evaluate(carry[0], eval_data, {})
                out |= {f"eval_{k}": jnp.where(alive, v, jnp.nan) for k, v in evaluated.items()}
            return carry, out

        carry, out = lax.scan(point, carry,
                              _int32_steps(0, work.steps // eval_every, eval_every))
        state, diverged_at = carry
        if check is None and not curves:
            return state  # bare: the trained state only
        return state, diverged_at, out

    return run


def compiled_pieces(trainer: SeedTrainer, num_seeds: int) -> tuple[Any, Any, int]:
    """``(init, segment, points per segment)``: negres's compiled executables for
    ``num_seeds`` seeds, from the trainer's cache (it must have trained them once)."""
    init = segment = None
    per_segment = 0
    for key, compiled in trainer.compiled.items():
        if key[:2] == ("init", num_seeds):
            init = compiled
        elif key[0] == "segment" and key[2:5] == ("vmap", 1, num_seeds):
            segment, per_segment = compiled, key[1]
    if init is None or segment is None:
        raise RuntimeError("negres's compiled init or segment not found in the trainer's cache")
    return init, segment, per_segment


def share_init(source: SeedTrainer, *targets: SeedTrainer) -> None:
    """Give ``targets`` the compiled ``init`` executables of ``source`` (the same program's
    init, so the same executable): each compile costs seconds on a small CPU."""
    for target in targets:
        target.compiled.update({k: v for k, v in source.compiled.items() if k[0] == "init"})


class Seeded:
    """Keys, initial ``diverged_at`` and the example batch of ``num_seeds`` seeds, placed."""

    def __init__(self, work: Workload, num_seeds: int):
        self.keys = put(np.asarray(seed_keys(0, np.arange(num_seeds))), work.split)
        self.example = put(work.example, work.shared)
        self.diverged_at = put(np.full(num_seeds, -1, np.int32), work.split)


def compile_seeded(work: Workload, one: Callable[..., Any], trainer: SeedTrainer,
                   num_seeds: int) -> Callable[[], Any]:
    """``jit(vmap(one))`` over states and keys split on the mesh, data replicated; the call
    runs negres's compiled ``init`` (shared by every variant) then ``one``, and blocks."""
    init = compiled_pieces(trainer, num_seeds)[0]
    seeded = Seeded(work, num_seeds)
    state = init(seeded.keys, {}, seeded.example)
    jitted = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)),
                     in_shardings=(work.split, work.split, work.shared, work.shared),
                     out_shardings=work.split)
    compiled = jitted.lower(state, seeded.keys, work.data, work.eval_data).compile()

    def call():
        state = init(seeded.keys, {}, seeded.example)
        return jax.block_until_ready(compiled(state, seeded.keys, work.data, work.eval_data))

    return call


def negres_compiled(work: Workload, trainer: SeedTrainer, num_seeds: int) -> Callable[[], Any]:
    """negres's own compiled ``init`` and segment, called as ``train`` calls them (one
    segment call per ``points per segment`` curve points), without the rest of ``train``."""
    init, segment, per_segment = compiled_pieces(trainer, num_seeds)
    seeded = Seeded(work, num_seeds)
    num_points = work.steps // work.eval_every
    starts = [put(np.asarray(p * work.eval_every, np.int32), work.shared)
              for p in range(0, num_points, per_segment)]

    def call():
        state = (init(seeded.keys, {}, seeded.example), seeded.diverged_at)
        for start in starts:
            *state, curves = segment(*state, seeded.keys, {}, start, work.data, work.eval_data)
        return jax.block_until_ready((state, curves))

    return call


# --------------------------------------------------------------------------- the prototype


class DotCheckTrainer(SeedTrainer):
    """negres's per-step guard as it was up to 26196ae (every step checks the whole state
    and selects old or new, each curve point a scan of guarded steps), with the check
    computed by :func:`finite_by_dot`: the same decisions (both exact)."""

    def _guarded_step(self, carry, key, hyper, step, data):
        state, diverged_at = carry
        new_state, metrics, loss_finite = SeedTrainer._step(self, state, key, hyper, step,
                                                            data)
        finite = loss_finite & finite_by_dot(new_state)
        alive = diverged_at < 0
        keep = alive & finite
        carry = (_select(keep, new_state, state),
                 jnp.where(alive & ~finite, step, diverged_at).astype(jnp.int32))
        return carry, {k: jnp.where(keep, v, jnp.nan) for k, v in metrics.items()}

    def _run_point(self, carry, point_start, key, hyper, data, eval_data):
        carry, metrics = lax.scan(
            lambda c, step: self._guarded_step(c, key, hyper, step, data), carry,
            _int32_steps(point_start, self.eval_every))
        point = {f"train_{k}": v.mean() for k, v in metrics.items()}
        if self.has_eval:
            alive = carry[1] < 0
            evaluated = self.program.evaluate(carry[0], eval_data, hyper)
            point |= {f"eval_{k}": jnp.where(alive, v, jnp.nan) for k, v in evaluated.items()}
        return carry, point


class ReplayTrainer(SeedTrainer):
    """negres's engine (unguarded steps, a curve point replayed with the per-step guard
    where a seed diverged: ``SeedTrainer._run_point``) with an exact trigger: every step's
    whole state is checked (:func:`finite_by_dot`), not only its loss.

    negres's own trigger misses a state that turns non-finite and back to finite within
    one point with finite losses throughout; this one misses nothing, for the cost of one
    ``dot`` per state leaf per step (and a whole-state check at the point's end that it
    makes redundant).
    """

    def _step(self, state, key, hyper, step, data):
        new_state, metrics, loss_finite = super()._step(state, key, hyper, step, data)
        return new_state, metrics, loss_finite & finite_by_dot(new_state)


# ------------------------------------------------------------------ checks of the prototype


def _same(a: Any, b: Any) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(la, lb, strict=True))


PROTOTYPES: dict[str, type[SeedTrainer]] = {
    "proto dot check": DotCheckTrainer,
    "proto replay": ReplayTrainer,
}


def verify(quick: bool) -> dict[str, Any]:
    """The prototypes against negres's ``SeedTrainer`` through ``negres.train`` on a run
    whose seeds diverge at different steps: the whole state, curves and ``diverged_at``
    bit for bit, with curves and an eval set every ``steps / 4`` steps (SGD on the digits
    as a regression, learning rates from 1e-3 to 1e4: the seeds of 1e4, 10 and 3 diverge
    at steps 3, 7 and 22, the others never; frozen seeds go on through later points).
    The timed runs compare the prototypes with negres on the workload itself."""
    from negres.training.driver import train

    x, y = load_digits_data()
    data = builtin_data(x, y.astype(np.float32))
    steps = 28 if quick else 40
    program = builtin_program(MLP(num_outputs=1, hidden_sizes=(64,)),
                              optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                              kind="regression")
    rates = np.asarray([1e-3, 1e4, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], np.float32)
    kwargs = {"steps": steps, "batch_size": BATCH_SIZE, "seed_indices": range(rates.size),
              "hyperparams": {"learning_rate": rates}, "eval_every": steps // 4,
              "eval_data": data}
    settings = {"batch_size": BATCH_SIZE, "eval_every": steps // 4, "has_eval": True}
    current = SeedTrainer(program, **settings)
    reference = train(program, data, scale=Scale(trainer=current), **kwargs)
    results: dict[str, Any] = {"diverged_at": reference.diverged_at.tolist()}
    for name, cls in PROTOTYPES.items():
        trainer = cls(program, **settings)
        share_init(current, trainer)
        got = train(program, data, scale=Scale(trainer=trainer), **kwargs)
        results[name] = {"state": _same(got.state, reference.state),
                         "curves": _same(got.curves, reference.curves),
                         "diverged_at": _same(got.diverged_at, reference.diverged_at)}
    results["finite_by_dot == all_finite"] = check_finite_by_dot()
    keys = np.arange(37, dtype=np.uint32)  # seed_keys (jitted since f6f114a) as computed eagerly
    results["seed_keys"] = bool(np.array_equal(
        np.asarray(seed_keys(0, keys)), np.asarray(jax.vmap(lambda i: seed_key(0, i))(keys))))
    return results


def check_finite_by_dot() -> bool:
    """:func:`finite_by_dot` against :func:`all_finite`, per seed under ``vmap``, on states
    with an infinity or a NaN in one leaf only (an optimizer moment, say), with finite
    values up to each dtype's largest, in float16, bfloat16, float32, complex and integer
    leaves, and on an empty state."""
    big = {"f32": np.float32(np.finfo(np.float32).max), "f16": np.float16(65504.0)}
    base = {"w": np.full((6, 5, 3), big["f32"], np.float32), "b": np.zeros((6, 3), np.float16),
            "h": np.ones((6, 4), jnp.bfloat16), "c": np.ones((6, 2), np.complex64),
            "n": np.arange(6, dtype=np.int32)}
    base["b"][:] = big["f16"]
    base["w"][1, 0, 0] = -big["f32"]
    cases = [base, {}]
    for leaf, row, value in (("w", 2, np.inf), ("b", 3, -np.inf), ("h", 4, np.nan),
                             ("c", 5, np.nan), ("w", 0, np.nan)):
        case = {k: v.copy() for k, v in base.items()}
        case[leaf].reshape(6, -1)[row, 0] = value
        cases.append(case)
    ok = True
    for case in cases:
        if not case:
            ok &= bool(finite_by_dot(case)) == bool(all_finite(case))
            continue
        got = jax.jit(jax.vmap(finite_by_dot))(case)
        want = jax.jit(jax.vmap(all_finite))(case)
        ok &= bool(np.array_equal(np.asarray(got), np.asarray(want)))
    return ok


def verified_ok(results: dict[str, Any]) -> bool:
    """Whether every comparison in :func:`verify`'s results came out equal."""
    return bool(results["seed_keys"]) and bool(
        results["finite_by_dot == all_finite"]) and all(
        all(same.values()) for same in results.values() if isinstance(same, dict))


# --------------------------------------------------------------------------- timing


def ablation_variants() -> dict[str, dict[str, Any]]:
    """name -> mirror_one's pieces: bare plus one piece each, then every piece (mirror)."""
    return {
        "+ cast": {"cast": True},
        "+ curves": {"curves": True},
        "+ check (state)": {"check": "state"},
        "+ check (state) + select": {"check": "state", "select": True},
        "+ check (state) + select + mask": {"check": "state", "select": True, "mask": True},
        "+ check (loss) + select": {"check": "loss", "select": True},
        "+ check (params, loss) + select": {"check": "params", "select": True},
        "+ check (sum x*0) + select": {"check": "sum0", "select": True},
        "+ check (dot) + select": {"check": "dot", "select": True},
        "+ check (dot), no select": {"check": "dot"},
        "+ check (state) per point + select": {"check": "state", "per_point": True},
        OLD_ENGINE: {"cast": True, "curves": True, "check": "state", "select": True,
                     "mask": True},
    }


def build_variants(work: Workload, num_seeds: int, ablations: bool, compile_s: dict[str, float],
                   same: dict[str, bool]) -> dict[str, Callable[[], Any]]:
    """Every variant timed at ``num_seeds``, compiled and run once; ``compile_s`` gets the
    seconds of that first call, ``same`` whether each prototype's training (state, curves,
    ``diverged_at``) through ``negres.train`` equals negres's bit for bit."""
    variants: dict[str, Callable[[], Any]] = {}
    first: dict[str, Any] = {}

    def add(name: str, make: Callable[[], Callable[[], Any]]) -> None:
        start = time.perf_counter()
        fn = make()
        first[name] = fn()  # compiled already or on this first call; first allocations
        compile_s[name] = time.perf_counter() - start
        variants[name] = fn

    def trained(trainer: SeedTrainer) -> Callable[[], Any]:
        def call() -> Any:
            result = work.negres(num_seeds, trainer)
            jax.block_until_ready(result.state)
            return result.state, result.curves, result.diverged_at

        return call

    def mirrored(pieces: dict[str, Any]) -> Callable[[], Callable[[], Any]]:
        return lambda: compile_seeded(work, mirror_one(work, **pieces), current, num_seeds)

    settings = {"batch_size": BATCH_SIZE, "eval_every": work.eval_every,
                "has_eval": work.has_eval}
    current = work.trainer()
    add("negres", lambda: trained(current))  # compiles negres's init, shared from here on
    add("bare", mirrored({}))
    pieces = ablation_variants()
    for name in pieces if ablations else [OLD_ENGINE]:
        add(name, mirrored(pieces[name]))
    add("negres compiled", lambda: negres_compiled(work, current, num_seeds))
    for name, cls in PROTOTYPES.items():
        if name != "proto replay" and not ablations:
            continue
        trainer = cls(work.program, **settings)
        share_init(current, trainer)
        same[name] = _same(trained(trainer)(), first["negres"])
        add(f"{name} compiled", lambda t=trainer: negres_compiled(work, t, num_seeds))
    first_ones = ["bare", *pieces, "negres"]
    order = [n for n in first_ones if n in variants] + [n for n in variants
                                                         if n not in first_ones]
    return {name: variants[name] for name in order}


def time_rounds(variants: dict[str, Callable[[], Any]], repeats: int
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds of every variant, in ``repeats`` interleaved rounds
    whose order rotates, so that no variant always follows the same one."""
    names = list(variants)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            c0, w0 = time.process_time(), time.perf_counter()
            variants[name]()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def summarize(num_seeds: int, wall: dict[str, list[float]], cpu: dict[str, list[float]],
              compile_s: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    bare_wall, bare_cpu = wall["bare"], cpu["bare"]
    for name in wall:
        rows.append({
            "variant": name, "num_seeds": num_seeds,
            "median_s": statistics.median(wall[name]), "min_s": min(wall[name]),
            "over_bare": statistics.median(wall[name]) / statistics.median(bare_wall),
            "over_bare_per_round": statistics.median(
                [a / b for a, b in zip(wall[name], bare_wall, strict=True)]),
            "cpu_median_s": statistics.median(cpu[name]),
            "cpu_over_bare": statistics.median(cpu[name]) / statistics.median(bare_cpu),
            "wall_s": wall[name], "cpu_s": cpu[name],
            "compile_and_first_call_s": compile_s[name],
        })
    return rows


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        "| variant | S | median s | / bare | / bare (per round) | CPU s | CPU / bare | min s |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r['variant']} | {r['num_seeds']} | {r['median_s']:.3f} | "
              f"{r['over_bare']:.3f} | {r['over_bare_per_round']:.3f} | "
              f"{r['cpu_median_s']:.3f} | {r['cpu_over_bare']:.3f} | {r['min_s']:.3f} |"
              for r in rows]
    host = []
    for num_seeds in sorted({r["num_seeds"] for r in rows}):
        at = {r["variant"]: r for r in rows if r["num_seeds"] == num_seeds}
        bare = at["bare"]["median_s"]
        for call, compiled in (("negres", "negres compiled"),):
            extra = at[call]["median_s"] - at[compiled]["median_s"]
            host.append(f"S = {num_seeds}: {1e3 * extra:.0f} ms ({extra / bare:+.1%} of bare)")
    head = (f"negres engine overhead, digits MLP, {info['steps']} steps, eval_every "
            f"{info['eval_every']}{' with the eval set' if info['has_eval'] else ''}; "
            f"{info['num_devices']} CPU devices ({info['cores']}), JAX {info['jax']}; "
            f"medians of {info['repeats']} interleaved rounds; load average "
            f"{info['load_before']} before, {info['load_after']} after; run "
            f"{info['run_s']:.0f} s; prototype bit-identical to SeedTrainer: "
            f"{info['verified']}")
    return (head + "\n\n" + "\n".join(lines) + "\n\nPer-call host time of negres (the "
            "call's median minus its compiled pieces'): " + "; ".join(host) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="64,256")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ablations-at", default=None,
                        help="seed counts that time every ablation (default: the smallest)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between curve points (default: --steps, no eval set, as "
                             "compare_training.py; fewer: evaluate the digits at each point)")
    parser.add_argument("--quick", action="store_true",
                        help="S = 8, 20 steps, one round, no ablations: checks that it runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    begin = time.perf_counter()
    if args.quick:
        args.seeds, args.steps, args.repeats = "8", 20, 1
        args.ablations_at = args.ablations_at or ""
    seeds_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    ablations_at = ({min(seeds_list)} if args.ablations_at is None else
                    {int(s) for s in args.ablations_at.split(",") if s.strip()})
    eval_every = args.steps if args.eval_every is None else args.eval_every
    if args.steps % eval_every:
        raise SystemExit("--eval-every must divide --steps")
    load_before = load_average()
    work = Workload(args.steps, eval_every)
    print(f"{len(jax.devices())} devices ({CORES_REASON}); load average {load_before}",
          flush=True)
    checks = verify(args.quick)
    verified = verified_ok(checks)
    print(f"prototypes bit-identical to SeedTrainer: {verified} {json.dumps(checks)} "
          f"({time.perf_counter() - begin:.0f} s)", flush=True)

    rows = []
    for num_seeds in seeds_list:
        compile_s: dict[str, float] = {}
        same: dict[str, bool] = {}
        variants = build_variants(work, num_seeds, num_seeds in ablations_at, compile_s, same)
        checks[f"timed workload, S = {num_seeds}: equal to negres"] = same
        verified &= all(same.values())
        print(f"S={num_seeds}: prototypes equal to negres bit for bit: {same}", flush=True)
        print(f"S={num_seeds}: compiled {len(variants)} variants, "
              f"{time.perf_counter() - begin:.0f} s so far", flush=True)
        wall, cpu = time_rounds(variants, args.repeats)
        found = summarize(num_seeds, wall, cpu, compile_s)
        rows += found
        for r in found:
            print(f"S={num_seeds:4d} {r['variant']:38s} {r['median_s']:7.3f} s "
                  f"{r['over_bare']:6.3f}x  per round {r['over_bare_per_round']:6.3f}x  "
                  f"CPU {r['cpu_median_s']:7.3f} s {r['cpu_over_bare']:6.3f}x", flush=True)

    info = {
        "steps": args.steps, "eval_every": eval_every, "has_eval": work.has_eval,
        "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "repeats": args.repeats,
        "num_devices": len(jax.devices()), "cores": CORES_REASON, "jax": jax.__version__,
        "python": platform.python_version(), "load_before": load_before,
        "load_after": load_average(), "run_s": time.perf_counter() - begin,
        "verified": verified, "quick": args.quick,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "verification": checks, "rows": rows},
                                   indent=1, default=float))
    table = markdown(rows, info)
    args.out.with_suffix(".md").write_text(table)
    print("\n" + table)
    print(f"written {args.out} and {args.out.with_suffix('.md')} in {info['run_s']:.0f} s")
    if not verified:
        raise SystemExit("the prototype does not reproduce SeedTrainer bit for bit")


if __name__ == "__main__":
    main()
