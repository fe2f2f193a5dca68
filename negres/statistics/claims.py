"""Claims as declared estimands: what a document claims, tested so that it can come out
either way.

A :class:`Claim` names an estimand (a metric, where it is measured and what it is
measured against: another condition, another metric of the same seeds, or a fixed value),
the direction the document claims, the smallest effect that matters (``margin``) and the
population it is about (seeds, or seeds and test examples; over a grid of
hyperparameters, every point of it). :func:`judge` decides it from the interval of the
effect at the study's sequential level ``1 - alpha`` (the one its comparisons' verdicts
use), the interval each metric's sampling calls for
(:mod:`negres.statistics.sampling`):

* **reproduces**: the whole interval lies beyond the margin in the claimed direction (the
  effect is shown to exceed the smallest effect that matters);
* **does not reproduce**: the whole interval lies short of the margin (the effect is
  shown to be smaller than what matters: equivalence within the margin, or a reversal);
* **inconclusive** otherwise, with about how many seeds would decide it.

A claim that something does *not* happen (an ablation does not help by more than the
margin) ``asserts="within"``: it reproduces when the interval lies short of the margin and
does not reproduce when it lies beyond it.

A claim with margin 0 against another condition is decided by the interval of the study's
own comparison (its verdict also asks both tests to agree). Over a grid (``points``) the
claim is universal: it reproduces where it reproduces at every point, does not reproduce
where it fails at some point (each point's negative verdict Bonferroni-adjusted over the
points), and the share of points where it holds is reported with a Clopper-Pearson
interval.
:func:`finding` turns the verdicts into the sentence that heads a study's report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from scipy import stats as scipy_stats

from negres.errors import ArgumentError
from negres.fields import is_number
from negres.results import ConditionResults
from negres.statistics import sampling

REPRODUCES, FAILS, INCONCLUSIVE = "reproduces", "does not reproduce", "inconclusive"
VERDICTS = (REPRODUCES, FAILS, INCONCLUSIVE)
CLAIM_RULE = (
    "each claim's effect (its metric minus its reference, signed so that the claimed "
    "direction is positive) gets the interval its sampling calls for at the look's level "
    "1 - alpha: reproduces when the interval lies above the smallest effect that matters, "
    "does not reproduce when it lies below it, inconclusive otherwise; over a grid, every "
    "point must reproduce, and one point shown below the margin (at alpha / points) fails it")
POINT = "{point}"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of a document, as an estimand that can come out either way.

    Attributes:
      name: a short name (unique in a study).
      text: the claim in words, as the document makes it ("seeds agree on their saliency
        maps less than 0.8").
      metric: the per-seed metric it is about.
      condition: where it is measured; with ``points``, a template holding ``{point}``.
      direction: ``"higher"`` or ``"lower"``: the claimed sign of the metric minus its
        reference.
      margin: the smallest effect that matters (>= 0, in the metric's units): the claim
        reproduces when the effect is shown to exceed it.
      versus_condition: the reference is the same metric in this condition (a template
        with ``points``).
      versus_metric: the reference is this metric of the same seeds (paired).
      versus_value: the reference is this fixed value.
      about: for metrics over test examples, the population: ``"distribution"`` (seeds and
        examples sampled) or ``"test_set"`` (seeds on these examples); ``""``: the
        study's ``stats.estimand``.
      points: grid points substituted for ``{point}``: the claim must hold at each
        (hyperparameters varied); empty: one condition.
      asserts: ``"beyond"``: the effect exceeds the margin in ``direction`` (something
        happens); ``"within"``: it does not (an ablation does not help by more than the
        margin): reproduces when the interval lies short of the margin, does not reproduce
        when it lies beyond it.
      role: ``"claim"``: what the document claims; ``"premise"``: what must hold for the
        study to test it at all (the models learn the interaction whose attribution is in
        question). The study's verdict counts the claims; a premise not shown makes it
        "Not tested".
    """

    name: str
    text: str
    metric: str
    condition: str
    direction: Literal["higher", "lower"]
    margin: float = 0.0
    versus_condition: str | None = None
    versus_metric: str | None = None
    versus_value: float | None = None
    about: str = ""
    points: tuple[str, ...] = ()
    asserts: Literal["beyond", "within"] = "beyond"
    role: Literal["claim", "premise"] = "claim"

    def __post_init__(self) -> None:
        check_claim(self)

    def at(self, point: str) -> tuple[str, str | None]:
        """``(condition, versus_condition)`` at one grid point."""
        versus = self.versus_condition
        return (self.condition.replace(POINT, point),
                None if versus is None else versus.replace(POINT, point))

    def conditions(self) -> list[str]:
        """Every condition the claim reads."""
        points = self.points or ("",)
        return list(dict.fromkeys(c for p in points for c in self.at(p) if c is not None))

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], field: str = "claims") -> Claim:
        """A claim from its config entry (a dict of these attributes); unknown keys are
        refused naming ``field``."""
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(entry, Mapping):
            raise ArgumentError(field, entry, "a dict of a claim's fields")
        for key in entry:
            if key not in known:
                raise ArgumentError(f"{field}.{key}", entry[key],
                                    f"a field of a claim, one of {sorted(known)}")
        values = dict(entry)
        if "points" in values:
            values["points"] = tuple(values["points"])
        try:
            return cls(**values)
        except TypeError as e:  # a required field missing
            raise ArgumentError(field, dict(entry), f"a claim with name, text, metric, "
                                f"condition and direction ({e})") from None
        except ArgumentError as e:  # named as the config names it: claims[0].margin
            raise type(e)(field + e.field.removeprefix("claim"), e.value, e.allowed) from None

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


def check_claim(claim: Claim, field: str = "claim") -> None:
    """Raise :class:`ArgumentError` naming the attribute that is not allowed."""
    for name in ("name", "text", "metric", "condition"):
        value = getattr(claim, name)
        if not isinstance(value, str) or not value:
            raise ArgumentError(f"{field}.{name}", value, "a non-empty string")
    if claim.direction not in ("higher", "lower"):
        raise ArgumentError(f"{field}.direction", claim.direction, "'higher' or 'lower'")
    if not is_number(claim.margin) or claim.margin < 0:
        raise ArgumentError(f"{field}.margin", claim.margin, "a finite number >= 0")
    given = [n for n in ("versus_condition", "versus_metric", "versus_value")
             if getattr(claim, n) is not None]
    if len(given) != 1:
        raise ArgumentError(f"{field}.versus_condition", claim.versus_condition,
                            "exactly one reference: versus_condition, versus_metric or "
                            f"versus_value (given: {given or 'none'})")
    if claim.versus_value is not None and not is_number(claim.versus_value):
        raise ArgumentError(f"{field}.versus_value", claim.versus_value, "a finite number")
    for name in ("versus_condition", "versus_metric"):
        value = getattr(claim, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ArgumentError(f"{field}.{name}", value, "a non-empty string")
    if claim.asserts not in ("beyond", "within"):
        raise ArgumentError(f"{field}.asserts", claim.asserts, "'beyond' or 'within'")
    if claim.role not in ("claim", "premise"):
        raise ArgumentError(f"{field}.role", claim.role, "'claim' or 'premise'")
    if claim.about not in ("", *sampling.ESTIMANDS):
        raise ArgumentError(f"{field}.about", claim.about,
                            f"'' or one of {list(sampling.ESTIMANDS)}")
    if not isinstance(claim.points, tuple) or not all(
            isinstance(p, str) and p for p in claim.points) or len(
            set(claim.points)) != len(claim.points):
        raise ArgumentError(f"{field}.points", claim.points,
                            "a tuple of distinct non-empty strings")
    templated = [n for n in ("condition", "versus_condition")
                 if POINT in (getattr(claim, n) or "")]
    if claim.points and "condition" not in templated:
        raise ArgumentError(f"{field}.condition", claim.condition,
                            f"a template holding {POINT} (the claim has points)")
    if templated and not claim.points:
        raise ArgumentError(f"{field}.points", claim.points,
                            f"grid points for the {POINT} in {templated[0]}")


def check_claims(claims: Sequence[Claim], conditions: Sequence[str],
                 field: str = "claims") -> None:
    """Refuse claims with repeated names or naming conditions the study lacks (before
    anything trains)."""
    names = [c.name for c in claims]
    if len(set(names)) != len(names):
        raise ArgumentError(field, names, "claims with distinct names")
    for i, claim in enumerate(claims):
        for condition in claim.conditions():
            if condition not in conditions:
                raise ArgumentError(f"{field}[{i}].condition", condition,
                                    f"a condition of the study, one of {list(conditions)}")


def _effect(claim: Claim, conditions: Mapping[str, ConditionResults], condition: str,
            versus: str | None, *, level: float, paired: bool, estimand: str,
            num_resamples: int, seed: int) -> dict[str, Any]:
    """The claimed effect at one condition: estimate, interval, seeds, what it covers."""
    result = conditions[condition]
    x = result.sample(claim.metric)
    common = dict(level=level, num_resamples=num_resamples, seed=seed)
    if claim.versus_value is not None:
        summary = sampling.describe_sample(x, estimand=estimand, **common)
        estimate = float(summary["mean"]) - float(claim.versus_value)
        low, high = (float(v) - float(claim.versus_value) for v in summary["ci"])
        seeds = int(summary["n"])
    else:
        if claim.versus_metric is not None:
            y, pair = result.sample(claim.versus_metric), True
        else:
            y = conditions[versus].sample(claim.metric)
            pair = paired and x.values.size == y.values.size
        # Only the difference and its interval are read: one permutation is enough.
        summary = sampling.compare_samples(x, y, paired=pair, estimand=estimand,
                                           num_permutations=1, **common)
        estimate = float(summary["difference"])
        low, high = (float(v) for v in summary["ci"])
        seeds = int(min(summary["n_x"], summary["n_y"]))
    sign = 1.0 if claim.direction == "higher" else -1.0
    low, high = sorted((sign * low, sign * high))
    return {"condition": condition, "versus": versus, "estimate": estimate,
            "effect": sign * estimate, "ci": [low, high], "n": seeds,
            "interval_reason": summary.get("interval_reason") or summary.get("reason"),
            "covers": summary.get("covers", sampling.COVERS["seeds"]),
            "sampling": summary.get("sampling", "seeds")}


def _decide(effect: dict[str, Any], claim: Claim) -> str:
    low, high = effect["ci"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    beyond, short = low > claim.margin, high < claim.margin
    if claim.asserts == "within":
        beyond, short = short, beyond
    return REPRODUCES if beyond else FAILS if short else INCONCLUSIVE


def _seeds_to_decide(effect: dict[str, Any], margin: float) -> int | None:
    """About how many seeds would put the interval on one side of the margin, if it
    narrows as 1/sqrt(seeds) around the same estimate; None where it cannot (the estimate
    on the margin, or no interval)."""
    low, high = effect["ci"]
    gap = abs(effect["effect"] - margin)
    if not (math.isfinite(low) and math.isfinite(high)) or gap == 0 or effect["n"] < 2:
        return None
    half = (high - low) / 2.0
    return max(effect["n"] + 1, math.ceil(effect["n"] * (half / gap) ** 2))


def _share_interval(successes: int, trials: int, level: float) -> list[float]:
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(
        scipy_stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(
        scipy_stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return [low, high]


def judge(claims: Sequence[Claim], conditions: Mapping[str, ConditionResults], *,
          alpha: float = 0.05, paired: bool = False, estimand: str = "distribution",
          num_resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Each claim's verdict on these conditions' seeds.

    Args:
      claims: the claims.
      conditions: name -> a condition's results (seeds left out as in the statistics).
      alpha: the level's complement, the study's sequential nominal alpha at this look
        (``StudyStatistics.settings["sequential"]["alpha"]``).
      paired: compare conditions seed by seed (the study's ``stats.paired_conditions``).
      estimand: the population of metrics over test examples, where a claim does not say
        (``about``).
      num_resamples, seed: the bootstrap's.

    Returns:
      One record per claim: the claim (``claim``), ``verdict``, ``level``, ``points``
      (one effect per grid point: ``condition``, ``versus``, ``estimate`` (metric minus
      reference), ``effect`` (signed so the claimed direction is positive), ``ci`` of the
      effect, ``n`` seeds, ``covers``, ``sampling``, ``verdict``, ``ci_over_grid`` (the
      wider interval at ``alpha / points`` a negative verdict over a grid must clear, where
      the first one lay short of the margin), ``seeds_to_decide``:
      about how many seeds would decide an inconclusive claim, None for one over test
      examples about their distribution, which seeds alone may not decide), and over a grid
      ``share`` (of points that reproduce) with ``share_ci``. A claim whose metric is
      missing is ``"not measured"``, with ``reason``.
    """
    if not (is_number(alpha) and 0.0 <= alpha < 1.0):
        raise ArgumentError("alpha", alpha, "a number in [0, 1)")
    judged = []
    for claim in claims:
        if alpha == 0.0:  # a look that spends nothing (one seed) decides nothing
            judged.append({"claim": claim.to_json(), "level": 1.0, "verdict": INCONCLUSIVE,
                           "points": [], "reason": "this look tests nothing (one seed: no "
                           "spread across seeds)"})
            continue
        points = claim.points or ("",)
        negative_level = 1.0 - alpha / len(points)  # each point's negative, Bonferroni
        record: dict[str, Any] = {"claim": claim.to_json(), "level": 1.0 - alpha}
        missing = [(c, m) for p in points for c in claim.at(p) if c is not None
                   for m in (claim.metric, claim.versus_metric) if m is not None
                   and (c not in conditions or m not in conditions[c].metrics)]
        if missing:
            condition, metric = missing[0]
            record.update(verdict="not measured", reason=(
                f"{metric!r} is not among the metrics of `{condition}`"
                if condition in conditions else f"`{condition}` is not a condition"))
            judged.append(record)
            continue
        effects = []
        for point in points:
            condition, versus = claim.at(point)
            settings = dict(paired=paired, estimand=claim.about or estimand,
                            num_resamples=num_resamples, seed=seed)
            effect = _effect(claim, conditions, condition, versus, level=1.0 - alpha,
                             **settings)
            effect["verdict"] = _decide(effect, claim)
            if effect["verdict"] == FAILS and len(points) > 1:
                strict = _effect(claim, conditions, condition, versus, level=negative_level,
                                 **settings)
                effect["ci_over_grid"] = strict["ci"]  # what the negative verdict reads
                if _decide(strict, claim) != FAILS:
                    effect["verdict"] = INCONCLUSIVE
            # Over examples about the distribution, the test examples' share of the
            # interval does not shrink with seeds: no seed count is promised.
            by_seeds = not (effect["sampling"] == "examples"
                            and settings["estimand"] == "distribution")
            effect["seeds_to_decide"] = (_seeds_to_decide(effect, claim.margin)
                                         if effect["verdict"] == INCONCLUSIVE and by_seeds
                                         else None)
            effect["point"] = point
            effects.append(effect)
        verdicts = [e["verdict"] for e in effects]
        verdict = (REPRODUCES if all(v == REPRODUCES for v in verdicts)
                   else FAILS if FAILS in verdicts else INCONCLUSIVE)
        record.update(verdict=verdict, points=effects)
        if claim.points:
            held = verdicts.count(REPRODUCES)
            record.update(share=held / len(points),
                          share_ci=_share_interval(held, len(points), 1.0 - alpha))
        judged.append(record)
    return judged


def _number(value: float) -> str:
    return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def estimand_text(claim: Claim, effect: Mapping[str, Any]) -> str:
    """The difference a claim is about at one point, in words: ``metric in `condition` −
    reference``."""
    if claim.versus_condition is not None:
        return f"{claim.metric}, `{effect['condition']}` − `{effect['versus']}`"
    if claim.versus_metric is not None:
        return f"{claim.metric} − {claim.versus_metric} in `{effect['condition']}`"
    if claim.versus_value:
        return f"{claim.metric} in `{effect['condition']}` − {claim.versus_value:g}"
    return f"{claim.metric} in `{effect['condition']}`"


def estimate_interval(claim: Claim, effect: Mapping[str, Any]) -> list[float]:
    """The interval of ``effect["estimate"]`` (metric minus reference, in the metric's own
    sign), from that of the effect (signed so that the claimed direction is positive)."""
    low, high = effect["ci"]
    return sorted((-high, -low)) if claim.direction == "lower" else [low, high]


def level_text(level: float) -> str:
    """``96%``, ``97.5%``: an interval's level in words."""
    return f"{level:.1%}".replace(".0%", "%")


def _estimate_text(claim: Claim, effect: Mapping[str, Any]) -> str:
    """``estimand = estimate [low, high]``, the interval in the metric's own sign."""
    low, high = estimate_interval(claim, effect)
    if not (math.isfinite(low) and math.isfinite(high)):
        why = effect.get("interval_reason") or "too few seeds"
        return (f"{estimand_text(claim, effect)} = {_number(effect['estimate'])}, "
                f"no interval ({why})")
    return (f"{estimand_text(claim, effect)} = {_number(effect['estimate'])} "
            f"[{_number(low)}, {_number(high)}]")


def claim_sentence(record: Mapping[str, Any]) -> str:
    """One claim's verdict in words, with the numbers that decide it."""
    claim = Claim.from_config(record["claim"])
    if record["verdict"] == "not measured" or not record.get("points"):
        return f"{claim.text}: {record['verdict']} ({record['reason']})"
    level = level_text(record["level"])
    parts = []
    for effect in record["points"]:
        text = _estimate_text(claim, effect)
        if claim.points:
            text += f" ({effect['verdict']})"
        elif effect["verdict"] == INCONCLUSIVE and effect["seeds_to_decide"]:
            text += f"; about {effect['seeds_to_decide']} seeds would decide it"
        elif effect["verdict"] == INCONCLUSIVE and effect["sampling"] == "examples":
            text += "; more test examples, not only seeds, would decide it"
        parts.append(text)
    if claim.asserts == "within":
        claimed = f"claimed not {claim.direction} by more than {claim.margin:g}"
    else:
        claimed = (f"claimed {claim.direction} by more than {claim.margin:g}" if claim.margin
                   else f"claimed {claim.direction}")
    share = ""
    if claim.points:
        low, high = record["share_ci"]
        share = (f"; it holds at {record['share']:.0%} of {len(claim.points)} grid points "
                 f"[{low:.2f}, {high:.2f}]")
    seeds = "/".join(str(n) for n in sorted({e["n"] for e in record["points"]}))
    return (f"{claim.text}: **{record['verdict']}** ({'; '.join(parts)}; {claimed}; "
            f"{level} intervals of {record['points'][0]['covers']}{share}; {seeds} seeds)")


def _role(record: Mapping[str, Any]) -> str:
    return str(record["claim"].get("role", "claim"))


def overall(judged: Sequence[Mapping[str, Any]]) -> str:
    """The study's verdict from its claims' (premises aside): ``Reproduces`` (every claim),
    ``Does not reproduce`` (none reproduces, at least one fails), ``Inconclusive`` (none
    decided), else ``Partly reproduces``; ``Not tested`` while a premise is not shown."""
    if any(_role(r) == "premise" and r["verdict"] != REPRODUCES for r in judged):
        return "Not tested (a premise is not shown)"
    verdicts = [r["verdict"] for r in judged if _role(r) == "claim"]
    if verdicts and all(v == REPRODUCES for v in verdicts):
        return "Reproduces"
    if REPRODUCES not in verdicts and FAILS in verdicts:
        return "Does not reproduce"
    if REPRODUCES not in verdicts:
        return "Inconclusive"
    return f"Partly reproduces ({verdicts.count(REPRODUCES)} of {len(verdicts)} claims)"


def finding(judged: Sequence[Mapping[str, Any]]) -> str:
    """The sentence that heads a study's report: its verdict, then each claim's, then each
    premise's."""
    if not judged:
        return ""
    claims = [claim_sentence(r) for r in judged if _role(r) == "claim"]
    premises = [claim_sentence(r) for r in judged if _role(r) == "premise"]
    return (f"{overall(judged)}: " + "; ".join(claims)
            + (". Premise: " + "; ".join(premises) if premises else "") + ".")


__all__ = ["CLAIM_RULE", "FAILS", "INCONCLUSIVE", "REPRODUCES", "VERDICTS", "Claim",
           "check_claim", "check_claims", "claim_sentence", "estimand_text", "estimate_interval",
           "finding", "judge", "level_text", "overall"]

