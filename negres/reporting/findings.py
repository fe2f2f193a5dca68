"""The one-sentence finding of each documented study, read off its own results.

Each function takes a study's :class:`~negres.results.Results` and returns the sentence that heads
``report.md``: whether the claim of the study's source document reproduces across seeds,
with the numbers and verdicts that decide it. The sentence is computed, never written in
advance: the same study on other seeds or settings may say "does not reproduce".
A config names its finding with ``config.finding``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from negres.reporting.tables import ci_of
from negres.results import Results


def _summary(results: Results, condition: str, metric: str) -> Mapping[str, Any]:
    return results.statistics.summaries[condition][metric]


def _mean(results: Results, condition: str, metric: str) -> float:
    return float(_summary(results, condition, metric)["mean"])


def _with_ci(results: Results, condition: str, metric: str, digits: int = 3) -> str:
    s = _summary(results, condition, metric)
    low, high = ci_of(s)
    return f"{s['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _estimand(results: Results, condition: str, metric: str, count: int) -> str:
    """What the interval of a metric over test examples is about, in words."""
    s = _summary(results, condition, metric)
    if s.get("sampling") != "examples":
        return "the interval over seeds, these examples held fixed"
    if s.get("estimand") == "test_set":
        return f"the interval over seeds, about these {count} examples"
    return (f"the interval about the data distribution: seeds and the {count} examples "
            "both sampled")


def _comparison(results: Results, metric: str, condition: str) -> Mapping[str, Any] | None:
    return results.statistics.comparisons.get(metric, {}).get(condition)


def _verdict(results: Results, metric: str, condition: str) -> str:
    c = _comparison(results, metric, condition)
    return "not compared" if c is None else str(c["verdict"])


def _seeds(results: Results, condition: str) -> int:
    return int(results.conditions[condition].num_seeds)


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def additive_attributions(results: Results) -> str:
    """Doc 002: additive attributions (SHAP) cannot show an interaction between x0 and x1."""
    add, inter = "additive", "interaction"
    metric = "shapley_truth_error"
    truth = results.conditions[inter].saved_by("truth").shared["interactions"]["x0*x1"]
    partial = "interaction_x0*x1_mixed_partial"
    gxi = "gradient_x_input_truth_error"
    shapley_err = _mean(results, inter, metric)
    claim = ("Partly reproduces" if shapley_err < 0.15 else "Reproduces")
    sentence = (
        f"{claim}: with a true 2·x0·x1 term, exact Shapley values of the trained MLPs are "
        f"{'not wrong' if shapley_err < 0.15 else 'wrong'} (relative error against the "
        f"true additive split {_with_ci(results, inter, metric)}, "
        f"{_with_ci(results, add, metric)} without the term) but, being one number per "
        f"feature, cannot show the interaction: they split it evenly between x0 and x1, "
        f"while the mixed partial derivative recovers it "
        f"({_with_ci(results, inter, partial)} against the true {truth['mixed_partial']:g}; "
        f"{_with_ci(results, add, partial)} without the term) and gradient × input, which "
        f"counts the product twice, errs by {_with_ci(results, inter, gxi)} "
        f"({_seeds(results, inter)} seeds per world)."
    )
    return sentence


def _shift_at_largest(results: Results, condition: str) -> tuple[str, Mapping[str, Any]]:
    family = results.statistics.within("robustness", condition)["shift_vs_clean"]
    name = max(family, key=lambda k: float(family[k]["severity"]))
    return name, family[name]


def rule_shortcut(results: Results) -> str:
    """Doc 000: high accuracy hides rule violations when a shortcut agrees with the label.

    Reproduces when the model follows the rule clearly less often where the shortcut
    contradicts it (by more than 0.1) and reversing the shortcut costs accuracy; partly,
    when only one of the two, or a smaller cost that the control world does not pay, shows.
    """
    shortcut, control = "shortcut", "control"
    conflicts = "subset_shortcut_conflicts_accuracy"
    accuracy = _mean(results, shortcut, "test_accuracy")
    fidelity = _mean(results, shortcut, conflicts)
    name, effect = _shift_at_largest(results, shortcut)
    shifted = accuracy + float(effect["difference"])
    control_effect = _shift_at_largest(results, control)[1]
    control_shifted = _mean(results, control, "test_accuracy") + float(
        control_effect["difference"])
    costs = effect["verdict"] == "worse"
    control_better = _verdict(results, conflicts, control) == "improved"
    if accuracy - fidelity > 0.1 and costs:
        claim = "Reproduces"
    elif costs or control_better:
        claim = "Partly reproduces"
    else:
        claim = "Does not reproduce"
    count = results.conditions[shortcut].saved_by("subsets").shared.get(
        "sizes", {}).get("shortcut_conflicts", 0)
    return (
        f"{claim}: with a shortcut that agrees with the label on "
        f"{results.config['task'].get('shortcut_agreement', 0.95):.0%} of examples, "
        f"in-distribution test accuracy is {_with_ci(results, shortcut, 'test_accuracy')}; "
        f"on the {count} test examples where the shortcut contradicts the rule the "
        f"prediction follows the rule {_with_ci(results, shortcut, conflicts)} of the time "
        f"({_estimand(results, shortcut, conflicts, count)}; control world without an "
        "informative shortcut: "
        f"{_with_ci(results, control, conflicts)}, {_verdict(results, conflicts, control)}), "
        f"and under `{name}` accuracy falls to {shifted:.3f} ({effect['verdict']}) against "
        f"{control_shifted:.3f} for the control ({_seeds(results, shortcut)} seeds each)."
    )


def _group(results: Results, prefix: str) -> list[str]:
    return [n for n in results.conditions if n.startswith(prefix + "/")]


def shape_color(results: Results) -> str:
    """Doc 004: shape learned at the expense of color; ablations give mixed results."""
    held = "subset_held_out_combinations_accuracy"
    seen = "subset_seen_combinations_accuracy"
    shape_full, color_full = "shape/full", "color/full"
    shape_gap = _mean(results, shape_full, seen) - _mean(results, shape_full, held)
    color_gap = _mean(results, color_full, seen) - _mean(results, color_full, held)
    color_worse = color_gap > shape_gap + 0.05
    first = (
        "color fails on unseen combinations while shape holds" if color_worse
        else "shape, not color, is the factor that fails on unseen combinations"
        if shape_gap > color_gap + 0.05 else "neither factor fails clearly more than the other")
    confusion = results.conditions[shape_full].saved_by("robustness").per_seed[
        "confusion"]["clean"]
    chance = 1.0 / len(confusion[0])
    held_shape = _summary(results, shape_full, held)
    if ci_of(held_shape)[1] < chance:
        first += (f", below chance ({chance:.2f}): the shape model names the shape that "
                  "usually comes with the color it sees")
    verdicts = []
    for target in ("shape", "color"):
        for name in _group(results, target):
            if name.endswith("/full"):
                continue
            verdicts.append(f"{name} {_verdict(results, held, name)}")
    mixed = len({v.rsplit(' ', 1)[1] for v in verdicts}) > 1
    second = ("the ablations (frozen embeddings, no attention, both) give mixed verdicts"
              if mixed else "the ablations all give the same verdict")
    if color_worse:
        claim = "Reproduces" if mixed else "Partly reproduces (color fails; ablations agree)"
    elif mixed:
        claim = "Partly reproduces (ablations mixed; the shape-over-color claim reverses)"
    else:
        claim = "Does not reproduce"
    return (
        f"{claim}: "
        f"{first} (full model, seen → held-out combinations: shape "
        f"{_mean(results, shape_full, seen):.3f} → {_with_ci(results, shape_full, held)}, "
        f"color {_mean(results, color_full, seen):.3f} → "
        f"{_with_ci(results, color_full, held)}), and {second} on held-out accuracy against "
        f"the full model: {_join(verdicts)} ({_seeds(results, shape_full)} seeds each)."
    )


def capacity_tradeoff(results: Results) -> str:
    """Doc 003: more capacity buys accuracy at the cost of interpretability."""
    proxies = {
        "linear_surrogate_fidelity": "linear-surrogate fidelity",
        "integrated_gradients_agreement_spearman_abs": "cross-seed agreement of IG",
        "integrated_gradients_sparsity": "IG sparsity",
    }
    parts, tradeoffs, total = [], 0, 0
    datasets = list(dict.fromkeys(n.split("/")[0] for n in results.conditions))
    for dataset in datasets:
        names = _group(results, dataset)
        accuracy = [_mean(results, n, "test_accuracy") for n in names]
        lo, hi = names[int(np.argmin(accuracy))], names[int(np.argmax(accuracy))]
        described = []
        for metric, label in proxies.items():
            values = [_mean(results, n, metric) for n in names]
            rho = float(stats.spearmanr(accuracy, values).statistic)
            total += 1
            tradeoffs += rho < -0.5
            described.append(f"{label} {_mean(results, lo, metric):.2f} → "
                             f"{_mean(results, hi, metric):.2f} (rank corr. {rho:+.2f})")
        parts.append(f"on {dataset}, accuracy {min(accuracy):.3f} ({lo.split('/')[1]}) → "
                     f"{max(accuracy):.3f} ({hi.split('/')[1]}) with " + ", ".join(described))
    claim = ("Reproduces" if tradeoffs == total else "Does not reproduce" if tradeoffs == 0
             else f"Reproduces for {tradeoffs} of {total} dataset × proxy pairs only")
    return (f"{claim} (a trade-off = interpretability falls as accuracy rises, rank "
            f"correlation < −0.5 across the capacity sweep): " + "; ".join(parts) + ".")


def saliency_stability(results: Results) -> str:
    """Doc 001: saliency maps change with the seed and degrade with noisy data.

    Reproduces when the least stable method's maps agree across seeds below 0.8 (Spearman
    of |attribution|) and some noisy condition lowers agreement (verdict worse); a method
    passes the randomisation check when its maps correlate below 0.2 with those of the
    fully re-initialised model.
    """
    clean = "clean"
    methods = results.conditions[clean].saved_by("attributions").shared["methods"]
    metric = "{}_agreement_spearman_abs"
    agreement = {m: _mean(results, clean, metric.format(m)) for m in methods}
    worst, best = min(agreement, key=agreement.get), max(agreement, key=agreement.get)
    noise_parts, lowered = [], 0
    for name in (n for n in results.conditions if n != clean):
        verdicts = [_verdict(results, metric.format(m), name) for m in methods]
        lowered += verdicts.count("worse")
        counts = [f"{verdicts.count(v)} {v}" for v in ("worse", "improved", "inconclusive")
                  if verdicts.count(v)]
        noise_parts.append(f"{name}: {', '.join(counts)}")
    random_metric = "{}_randomization_spearman"
    randomized = {m: _mean(results, clean, random_metric.format(m)) for m in methods
                  if random_metric.format(m) in results.conditions[clean].metrics}
    passes = [f"{m} ({v:.2f})" for m, v in randomized.items() if v < 0.2]
    fails = [f"{m} ({v:.2f})" for m, v in randomized.items() if v >= 0.2]
    unstable = agreement[worst] < 0.8
    claim = ("Reproduces" if unstable and lowered else "Partly reproduces" if unstable or lowered
             else "Does not reproduce")
    sanity = ""
    if randomized:
        sanity = ("; with every layer re-initialised, the maps of "
                  + (_join(passes) if passes else "no method")
                  + " lose their resemblance (Spearman < 0.2: the check is passed)"
                  + (f" while {_join(fails)} still resemble the trained maps, which they "
                     "owe partly to the input rather than to the model" if fails else ""))
    return (
        f"{claim}: on clean data, seeds of the same CNN agree on their saliency maps at a "
        f"Spearman correlation of {_with_ci(results, clean, metric.format(worst))} for "
        f"{worst} up to {_with_ci(results, clean, metric.format(best))} for {best}; "
        f"against clean training, the verdicts on that agreement per method are "
        f"{'; '.join(noise_parts)}{sanity} ({_seeds(results, clean)} seeds per condition)."
    )


FINDINGS: dict[str, Callable[[Results], str]] = {
    "additive_attributions": additive_attributions,
    "capacity_tradeoff": capacity_tradeoff,
    "rule_shortcut": rule_shortcut,
    "saliency_stability": saliency_stability,
    "shape_color": shape_color,
}


def finding_of(results: Results) -> str:
    """The finding named by the study's config, or ``""`` when it names none."""
    name = results.config.get("finding") or ""
    if not name:
        return ""
    try:
        return FINDINGS[name](results)
    except KeyError as missing:
        # A study whose conditions or metrics were overridden away still gets its report.
        return (f"Not stated: finding {name!r} needs {missing} in the results, which this "
                "run's conditions or evaluation settings do not produce.")
