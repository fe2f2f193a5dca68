"""Whether a study fits in memory: estimated from shapes, before anything compiles or is written.

A seed count the machine cannot hold would otherwise be found out by the kernel, after the
workdir is written and minutes of compiling and training. :func:`check_memory` estimates
the study's peak host memory from what grows with the seeds and refuses a seed count that
cannot fit, naming the field, its value and about how many seeds fit. The study's three
phases peak at different times, so the largest one is what it needs:

* training, one call per group of conditions (:func:`~negres.study.prepare.
  group_conditions`), whose seeds are held together: the training state, exact from its
  shapes (:func:`state_bytes_per_seed`, ``jax.eval_shape``: nothing is allocated), times
  the copies of it that exist at once (:data:`STATE_COPIES`), and the learning curves;
* evaluating that group's conditions: the state once, and what each evaluator holds
  (its :attr:`~negres.evaluators.protocol.Evaluator.memory` hook; ``(S, S)`` agreement and
  churn matrices grow with the square of the seeds);
* writing ``results.json``: every number the evaluators save, for every condition, at
  :data:`RESULTS_BYTES_PER_NUMBER`.

What a compiled training call needs beyond its state (activations, temporaries) is left
out: the driver splits the seeds into chunks that fit (``train.seeds_per_chunk``), so it
bounds that part itself. The estimate is what no chunking avoids; a study that passes may
still need more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from negres.errors import ConfigError
from negres.evaluators import settings_of
from negres.files import readable_size
from negres.study.prepare import Condition, condition_program, group_conditions
from negres.training.optimizers import VMAPPABLE_HYPERPARAMS

# Copies of the training state that exist at once at the peak of a training call: the
# state going into a compiled segment and the one coming out, the host copy gathered for a
# checkpoint and that copy placed for orbax to save. Measured on the 2-core CPU: the peak
# RSS of experiment.train_group with checkpoints (20 steps, batch size 1, 2% of digits as
# the test set, so that activations stay negligible), in a fresh process per seed count;
# the growth of the peak per added seed over the exact state per seed was 3.6 (MLP
# 512-512, 200 to 800 seeds, 3.6 MB a seed) and 3.7 to 4.1 (MLP 64, 2,000 to 8,000 seeds,
# 58 kB a seed). Rounded up.
STATE_COPIES = 4
# The driver keeps every curve point of every seed on the host, float32: train and eval
# loss and score; a checkpoint holds a copy.
CURVES = 4
CURVE_COPIES = 2
# What one saved number costs while results.json is built, written and read back: a Python
# float in nested lists (about 32 bytes), the JSON text, the tree read back, beside the
# array itself. Measured on the 2-core CPU as the growth of experiment.run's peak RSS (at
# write_json_atomic) per saved number, from 1,000 to 1,500 to 2,000 seeds of the default
# study with robustness and multiplicity (7 S^2 + 230 S numbers saved): 219 and 218 bytes.
# An (S, S) matrix put through to_jsonable, write_json_atomic and read_json alone costs 167.
# Measured while write_json_atomic built the whole text first; it now streams the JSON
# (110 bytes a number for that matrix), so this errs on the side of refusing.
RESULTS_BYTES_PER_NUMBER = 220
# Overrides the memory available, in bytes (a container whose limit /proc/meminfo does not
# show, a machine shared with other jobs).
MEMORY_ENV = "NEGRES_MEMORY_BYTES"



class EnvironmentSettingError(ConfigError):
    """An environment variable set to what is not allowed; a :class:`ConfigError`, so
    the command line reports it in one line like any other setting."""

    prefix = "$"


def available_memory() -> int:
    """Bytes of host memory the study may use: ``$NEGRES_MEMORY_BYTES`` if set, else
    ``MemAvailable`` of ``/proc/meminfo``, else the machine's physical memory.

    Host memory even on an accelerator: the driver gathers the trained state on the host
    for checkpoints, every process evaluates gathered parameters, and the evaluators'
    ``(S, S)`` matrices and the results are NumPy arrays and Python lists; what a training
    call needs on the device the driver bounds by chunking its seeds.
    """
    override = os.environ.get(MEMORY_ENV)
    if override:
        try:
            value = float(override)
        except ValueError:
            value = 0.0
        if not 0 < value < float("inf"):
            raise EnvironmentSettingError(MEMORY_ENV, override, "a number of bytes > 0")
        return int(value)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel's "kB" are KiB
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def state_bytes_per_seed(condition: Condition) -> int:
    """Bytes of one seed's training state (parameters, model state, optimizer state) as
    :func:`negres.train` holds it, from the shapes of the program's ``init``."""
    task = condition.task
    program = condition_program(condition)
    example = {"x": jax.ShapeDtypeStruct((1, *task.input_shape), jnp.float32),
               "y": jax.ShapeDtypeStruct((1,), np.asarray(task.y_train).dtype)}
    hyper = {name: jax.ShapeDtypeStruct((), jnp.float32) for name in VMAPPABLE_HYPERPARAMS}
    state = jax.eval_shape(program.init, jax.ShapeDtypeStruct((2,), jnp.uint32), example, hyper)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(state))


def curve_points(condition: Condition) -> int:
    """Learning-curve points per seed: one every ``train.eval_every`` steps."""
    return int(condition.config.train.steps // condition.config.train.eval_every)


def count_text(count: float) -> str:
    """A count in words past a million, two significant digits: ``1.2 trillion``."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if count >= scale:
            return f"{float(f'{count / scale:.2g}'):g} {word}"
    return f"{int(count):,}"


def _about(count: int) -> int:
    """``count`` rounded down to two significant digits: 386,112 -> 380,000."""
    if count < 100:
        return count
    step = 10 ** (len(str(count)) - 2)
    return count // step * step


class _Study:
    """The study's conditions in their training calls, with what each seed costs; asked
    for its phases at any seed counts."""

    def __init__(self, conditions: Sequence[Condition]):
        self.groups = group_conditions(list(conditions))
        # Once per call: a group shares its graph, so its conditions share state shapes.
        self.state = [state_bytes_per_seed(group[0]) for group in self.groups]

    def phases(self, seeds: Callable[[Condition], int]) -> dict[str, dict[str, int]]:
        """Phase -> what it holds by part, in bytes, at ``seeds(condition)`` seeds each;
        for training and evaluating, the group that needs the most."""
        training: dict[str, int] = {}
        evaluating: dict[str, int] = {}
        saved = 0
        for group, state in zip(self.groups, self.state, strict=True):
            counts = [seeds(c) for c in group]
            total = sum(counts)
            points = sum(n * CURVES * curve_points(c) for c, n in zip(group, counts,
                                                                      strict=True))
            held = f"state {readable_size(state)} a seed x {total:,} seeds"
            train = {f"{held} x {STATE_COPIES} copies": STATE_COPIES * state * total,
                     "curves": CURVE_COPIES * 4 * points}
            evaluate = {held: state * total}
            saved += points
            for condition, count in zip(group, counts, strict=True):
                for evaluator in condition.evaluators:
                    if evaluator.memory is None:
                        continue
                    use = evaluator.memory(settings_of(evaluator, condition.config.evaluation),
                                           condition.task, count)
                    evaluate[evaluator.name] = evaluate.get(evaluator.name, 0) + use.held
                    saved += use.saved
            if sum(train.values()) > sum(training.values()):
                training = train
            if sum(evaluate.values()) > sum(evaluating.values()):
                evaluating = evaluate
        return {"training": training, "evaluating": evaluating,
                "writing results": {"numbers": RESULTS_BYTES_PER_NUMBER * saved}}

    def need(self, seeds: Callable[[Condition], int]) -> int:
        return max(sum(parts.values()) for parts in self.phases(seeds).values())


def _seed_field(condition: Condition) -> str:
    """The config field that sets ``condition``'s seed count, as prepare_study names
    a condition's fields."""
    if "num_seeds" in condition.overrides:
        return f"conditions[{condition.name!r}].num_seeds"
    return "num_seeds"


def _describe(phases: dict[str, dict[str, int]]) -> str:
    """Each phase's total and its largest parts, largest phase first."""
    texts = []
    for phase, parts in sorted(phases.items(), key=lambda item: -sum(item[1].values())):
        total = sum(parts.values())
        if not total:
            continue
        shown = [f"{count_text(size / RESULTS_BYTES_PER_NUMBER)} numbers saved"
                 if part == "numbers"
                 else f"{part}: {readable_size(size)}"
                 for part, size in sorted(parts.items(), key=lambda item: -item[1])
                 if size >= 0.01 * total]
        texts.append(f"{phase} {readable_size(total)}: {', '.join(shown)}")
    return "; ".join(texts)


def check_memory(conditions: Sequence[Condition],
                 available: Callable[[], int] = available_memory) -> None:
    """Raise :class:`ConfigError` for a seed count whose study cannot fit in memory.

    The field named is the seed count that weighs most in the training call that needs
    the most: ``num_seeds``, or ``conditions['NAME'].num_seeds`` where a condition sets
    its own; what is allowed says about how many seeds fit (the others left as they are)
    and what the study would need, phase by phase.

    Args:
      conditions: from :func:`negres.study.prepare.prepare_study`.
      available: bytes of memory the study may use (default: :func:`available_memory`).
    """
    study = _Study(conditions)
    given = {c.name: int(c.config.num_seeds) for c in conditions}
    limit = int(available())
    if jax.process_count() > 1:
        # Every host holds every gathered seed, so the smallest decides, and for all: a
        # host that refused alone would leave the others waiting at the next barrier.
        # In MiB: JAX without x64 would gather bytes as int32, which overflows at 2 GiB.
        every = multihost_utils.process_allgather(np.int32(min(limit >> 20, 2**31 - 1)))
        limit = min(limit, int(np.min(every)) << 20)
    phases = study.phases(lambda c: given[c.name])
    need = max(sum(parts.values()) for parts in phases.values())
    if need <= limit:
        return
    # Blame the field with the most seeds in the call that needs the most.
    needs = [study.need(lambda c, g={c.name for c in group}: given[c.name] if c.name in g
                        else 0) for group in study.groups]
    worst = study.groups[int(np.argmax(needs))]
    weight: dict[str, int] = {}
    for condition in worst:
        weight[_seed_field(condition)] = weight.get(_seed_field(condition), 0) + given[
            condition.name]
    field = max(weight, key=weight.__getitem__)
    value = next(given[c.name] for c in worst if _seed_field(c) == field)

    def at(count: int) -> int:
        return study.need(lambda c: count if _seed_field(c) == field else given[c.name])

    # What is needed grows with the seeds: bisect for the most that fit.
    low, high = 0, value
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if at(middle) <= limit else (low, middle)
    fits = f"at most about {_about(low):,} seeds fit" if low else "not even one seed fits"
    raise ConfigError(field, value, f"{fits}: the study needs about {readable_size(need)} "
                      f"({_describe(phases)}) and {readable_size(limit)} of memory is available")


__all__ = ["MEMORY_ENV", "RESULTS_BYTES_PER_NUMBER", "STATE_COPIES", "EnvironmentSettingError",
           "available_memory", "check_memory", "state_bytes_per_seed"]
