"""DeepLIFT's rescale rule and its DeepExplainer form, for chains of ``nn.Dense`` layers.

:func:`deeplift` follows the convention of :mod:`negres.measures.saliency`: it takes a
one-seed ``apply_fn(params, x_batch) -> (B, K)``, params, inputs ``x: (N, *input_shape)``
and a target (an int, an ``(N,)`` int array or ``"predicted"``; ignored when ``K == 1``),
and returns attributions ``(N, *input_shape)``. It is pure and jit-able; lifted over seeds
(:func:`negres.seeds.over_seeds`, or ``attribute_over_seeds`` once registered) it gives
``(S, N, *input_shape)`` from params ``(S, ...)``.

The rule (Shrikumar et al. 2017, "rescale"). Let ``z_l`` be the output of the ``l``-th
``nn.Dense`` call and ``a_{l+1} = g_l(z_l)`` the input of the next one (``g_L`` maps the
last Dense output to the model's output, the identity for negres's MLP and Linear). Against
a reference ``r``, each elementwise ``g_l`` is replaced by its secant between ``r`` and
``x``, the multiplier ``m_l = (a_{l+1}(x) - a_{l+1}(r)) / (z_l(x) - z_l(r))``. The network
with ``a_{l+1} := a_{l+1}(r) + m_l (z_l - z_l(r))`` is linear in ``x``, equals ``f`` at
``x`` and at ``r``, and the attribution is ``(x - r) * grad`` of its target output, so
completeness holds: ``sum(attr_n) = f_t(x_n) - f_t(r)``. With ``background`` rows
``(R, *input_shape)`` the result is the mean over rows of the attributions against each
(``shap.DeepExplainer``, Captum's ``DeepLiftShap``), which sums to
``f_t(x_n) - mean_r f_t(r)``.

Where ``z_l(x)`` and ``z_l(r)`` are too close for their difference to carry the secant
(``|dz| <= sqrt(eps) (|z_l(x)| + |z_l(r)|)``, 0/0 included), the multiplier is the
derivative of ``g_l`` at their midpoint, which DeepLIFT prescribes in the limit. It is
taken with ``jax.jvp`` through the model's own code, with each Dense output overridden by
the midpoint: no activation has to be named. Captum (``eps=1e-10``) and shap (``1e-6``)
switch on an absolute ``|dz|``; the attributions differ only for units whose ``|dz|`` lies
between the two thresholds.

Which models. The model is read by intercepting ``nn.Dense.__call__`` with
``flax.linen.intercept_methods`` while ``apply_fn`` runs, so ``apply_fn`` must call a
flax.linen module's ``apply`` (``negres.training.linen.linen_apply(module)`` or
``lambda p, x: model.apply({"params": p}, x)``), not be jitted on its own, and the module
must be a chain of ``nn.Dense`` layers separated by elementwise maps (activations, dropout
at ``train=False``), with the input reaching the first Dense through linear code (a
reshape) and the output elementwise in the last Dense's output. :func:`deeplift` refuses,
with a ``ValueError`` naming what it found, an ``apply_fn`` in which no Dense layer runs
(an NNX model, a plain function, a jitted ``apply_fn``), any other flax layer
(``nn.Conv``, ``nn.LayerNorm``, attention, ...), a module holding variables of its own
(negres's ``MatmulConv``), a Dense input shaped unlike the previous Dense output, and an
output shaped unlike the last Dense output. That the code between the Dense layers is
elementwise (not, say, a softmax or a skip connection) is assumed, not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from negres.measures import saliency
from negres.measures.saliency import ApplyFn, Target

# flax layers that leave an elementwise chain elementwise (Dropout at train=False is the
# identity; Sequential only calls its layers, which are intercepted one by one).
_PASS_THROUGH = (nn.Dropout, nn.Sequential)
_NEEDS = ("deeplift needs a flax.linen model that is a chain of nn.Dense layers separated "
          "by elementwise activations (such as negres.models.MLP or Linear), called through "
          "apply_fn as module.apply(...) and not jitted on its own")

# (Dense index, the previous Dense's output in this pass) -> the Dense's input.
EditInput = Callable[[int, jax.Array], jax.Array]
# (Dense index, the Dense's output) -> what the model continues with.
EditOutput = Callable[[int, jax.Array], jax.Array]


@dataclass
class _Pass:
    """One intercepted forward pass, Dense layers in call order."""

    inputs: list[jax.Array] = field(default_factory=list)  # as the model computed them
    outputs: list[jax.Array] = field(default_factory=list)  # after any edit
    names: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    out: jax.Array | None = None


def _path(module: nn.Module) -> str:
    return "/".join(module.path) or "<top>"


def _refusal(module: nn.Module) -> str | None:
    """Why a non-Dense module breaks the rule, or ``None`` when it does not."""
    if isinstance(module, _PASS_THROUGH):
        return None
    name = type(module).__name__
    if type(module).__module__.split(".")[0] == "flax":
        return f"flax layer nn.{name} at {_path(module)}"
    # A user module may group Dense layers and activations, but a variable it declares
    # itself (a kernel, a statistic) enters a computation the rule does not linearise.
    own = [f"{collection}/{key}" for collection, tree in module.variables.items()
           for key, value in tree.items() if not isinstance(value, Mapping)]
    if own:
        return f"{name} at {_path(module)} with its own variables {own}"
    return None


def _run(apply_fn: ApplyFn, params: Any, x: jax.Array, edit_input: EditInput | None = None,
         edit_output: EditOutput | None = None, calls: int | None = None) -> _Pass:
    """``apply_fn(params, x)`` with every ``nn.Dense`` call recorded (and edited).

    ``calls``: the number of Dense calls the model was found to make; a pass that makes
    another number did not run the model's code (a jitted ``apply_fn`` replays its cached
    trace without the interceptor), so its records cannot be used.
    """
    record = _Pass()

    def interceptor(next_fun: Callable[..., Any], args: tuple, kwargs: dict,
                    context: nn.module.InterceptorContext) -> Any:
        module = context.module
        if not (isinstance(module, nn.Dense) and context.method_name == "__call__"):
            reason = _refusal(module)
            if reason is not None:
                record.refused.append(reason)
            return next_fun(*args, **kwargs)
        args = list(args)
        inputs = args[0] if args else kwargs.pop("inputs")
        index = len(record.inputs)
        record.inputs.append(inputs)
        record.names.append(_path(module))
        if edit_input is not None and index > 0:
            inputs = edit_input(index, record.outputs[-1])
        z = next_fun(inputs, *args[1:], **kwargs)
        if edit_output is not None:
            z = edit_output(index, z)
        record.outputs.append(z)
        return z

    with nn.intercept_methods(interceptor):
        record.out = apply_fn(params, x)
    if calls is not None and len(record.outputs) != calls:
        raise ValueError(f"{_NEEDS}; apply_fn ran {len(record.outputs)} nn.Dense layers in one "
                         f"pass and {calls} in another (is it jitted on its own?)")
    return record


def _checked(record: _Pass) -> _Pass:
    """``record`` when the rule is defined for its model; otherwise a ``ValueError``."""
    if record.refused:
        raise ValueError(f"{_NEEDS}; found {', '.join(dict.fromkeys(record.refused))}")
    if not record.outputs:
        raise ValueError(f"{_NEEDS}; no nn.Dense layer ran in apply_fn (an NNX model, a plain "
                         "function, or a jitted apply_fn cannot be read this way)")
    for i in range(1, len(record.inputs)):
        if record.inputs[i].shape != record.outputs[i - 1].shape:
            raise ValueError(
                f"{_NEEDS}; nn.Dense {record.names[i]} takes an input of shape "
                f"{record.inputs[i].shape}, but the Dense before it ({record.names[i - 1]}) "
                f"returns {record.outputs[i - 1].shape}: the map between them is not "
                "elementwise")
    if record.out.shape != record.outputs[-1].shape:
        raise ValueError(f"{_NEEDS}; the model returns shape {record.out.shape}, but its last "
                         f"nn.Dense ({record.names[-1]}) returns {record.outputs[-1].shape}")
    return record


def _multiplier(z_x: jax.Array, z_r: jax.Array, a_x: jax.Array, a_r: jax.Array,
                slope: jax.Array) -> jax.Array:
    """The secant ``(a_x - a_r) / (z_x - z_r)``, or ``slope`` where it is ill-conditioned.

    The secant's rounding error is about ``eps |a| / |dz|`` and a derivative in its place
    is off by at most ``|dz|`` times the change of slope, so ``|dz| ~ sqrt(eps) |z|``
    balances the two (as for a finite-difference step). A relative threshold keeps the
    secant for every unit whose two values have opposite signs, so kinks at 0 (ReLU)
    are always handled exactly; a kink elsewhere (e.g. ``relu6`` at 6) that falls between
    two such close values costs completeness up to ``sqrt(eps) |z|`` times the slope.
    """
    dz = z_x - z_r
    tol = jnp.sqrt(jnp.finfo(dz.dtype).eps) * (jnp.abs(z_x) + jnp.abs(z_r))
    secant = jnp.abs(dz) > tol
    # The inner where keeps 0/0 out of the unused branch, so gradients stay finite.
    return jnp.where(secant, (a_x - a_r) / jnp.where(secant, dz, 1.0), slope)


def deeplift(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    *,
    baseline: jax.Array | float | None = None,
    background: jax.Array | None = None,
) -> jax.Array:
    """DeepLIFT (rescale rule) attributions, averaged over references as DeepExplainer does.

    Args:
      apply_fn, params, x, target: as in :mod:`negres.measures.saliency`;
        ``x: (N, *input_shape)``. ``apply_fn`` must run a flax.linen chain of ``nn.Dense``
        layers with elementwise maps between them (see the module docstring).
      baseline: one reference example broadcastable to ``input_shape``; zeros by default.
      background: reference rows ``(R, *input_shape)`` (instead of ``baseline``); the
        result is the mean of the attributions against each row.

    Returns:
      Attributions ``(N, *input_shape)`` with ``sum(attr_n) = f_t(x_n) - mean_r f_t(r)``
      (check with ``saliency.completeness_gap`` given the same ``baseline``/``background``).

    Raises:
      ValueError: for a model the rule is not defined on this way, naming what was found.
    """
    x = saliency._as_float(x)
    refs = saliency._background(x, baseline, background)
    # Read the model's structure from shapes alone first, so that a refused model costs a
    # trace, not an (eager) forward pass.
    calls = 0

    def structure(p: Any, xb: jax.Array) -> jax.Array:
        nonlocal calls
        record = _checked(_run(apply_fn, p, xb))
        calls = len(record.outputs)
        return record.out

    jax.eval_shape(structure, params, x)
    at_x, at_refs = (_run(apply_fn, params, xb, calls=calls) for xb in (x, refs))
    idx = saliency.target_indices(at_x.out, target)
    # Segment l maps Dense l's output z_l to the next Dense's input (the model's output
    # after the last Dense).
    z_x = at_x.outputs
    a_x = [*at_x.inputs[1:], at_x.out]
    rows = (refs, at_refs.outputs, [*at_refs.inputs[1:], at_refs.out])

    def against(row: tuple[jax.Array, list[jax.Array], list[jax.Array]]) -> jax.Array:
        """Rescale attributions of every example against one reference row."""
        r, z_r, a_r = jax.tree_util.tree_map(lambda v: v[None], row)
        mid = [(zx + zr) / 2 for zx, zr in zip(z_x, z_r, strict=True)]

        def at_midpoints(shifts: list[jax.Array]) -> list[jax.Array]:
            run = _run(apply_fn, params, x, edit_output=lambda i, z: mid[i] + shifts[i],
                       calls=calls)
            return [*run.inputs[1:], run.out]

        # The maps are elementwise, so a tangent of ones gives each one's derivative.
        zeros = [jnp.zeros_like(m) for m in mid]
        _, slopes = jax.jvp(at_midpoints, (zeros,), ([jnp.ones_like(m) for m in mid],))
        m = [_multiplier(*args) for args in zip(z_x, z_r, a_x, a_r, slopes, strict=True)]

        def linearised(xv: jax.Array) -> jax.Array:
            def edit_input(i: int, z: jax.Array) -> jax.Array:
                return a_r[i - 1] + m[i - 1] * (z - z_r[i - 1])

            z_last = _run(apply_fn, params, xv, edit_input=edit_input, calls=calls).outputs[-1]
            out = a_r[-1] + m[-1] * (z_last - z_r[-1])
            return jnp.sum(jnp.take_along_axis(out, idx[:, None], axis=1))

        return (x - r) * jax.grad(linearised)(x)

    # A scan keeps one reference's attributions in memory instead of (R, N, *input_shape).
    def accumulate(total: jax.Array, row: Any) -> tuple[jax.Array, None]:
        return total + against(row), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros_like(x), rows)
    return total / refs.shape[0]


__all__ = ["deeplift"]
