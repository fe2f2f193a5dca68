"""Prediction multiplicity: seeds of equal accuracy that disagree on single predictions.

Training the same model with another seed often changes individual predictions while
leaving the accuracy as it was: the data underspecify the model (D'Amour et al. 2020),
and a prediction may depend on the seed that happened to be drawn (predictive
multiplicity, Marx, Calmon & Ustun 2020). Under distribution shift the seeds tend to
disagree more. This evaluator measures that disagreement on the predictions the
``robustness`` evaluator passes on, on the clean test set and on every shifted one:

* **churn** of two seeds: the share of examples on which they predict different classes
  (:func:`churn_matrix`, ``(S, S)``); a seed's churn is its mean churn with the others
  (:func:`mean_churn`);
* **majority vote**: the class most seeds predict (:func:`majority_vote`);
* **ambiguity**: the share of examples on which at least one seed departs from the
  majority vote (:func:`ambiguity`; Marx et al.'s ambiguity with the majority vote as
  the reference model);
* **vote entropy**: the entropy of the seeds' votes on one example (:func:`vote_entropy`).

Every function takes integer class predictions with the seed axis first, ``(S, N)``, or
``(S, K, N)`` for ``K`` levels of a shift (any axes between the seed and the example
axis are carried through). :func:`set_multiplicity` computes everything of one set and
:func:`multiplicity_evaluation` builds the :class:`Evaluation` from the predictions of
every set, so that it can be called with any subset of the seeds' rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from negres import fields
from negres.evaluators.protocol import (
    Evaluation,
    EvaluationContext,
    Evaluator,
    MemoryUse,
    Metric,
)
from negres.results import pairwise_row_means
from negres.tasks import Task

CLEAN = "clean"


# ------------------------------------------------------------------------ pure functions


def _as_predictions(predictions: Any, num_classes: int | None = None) -> np.ndarray:
    """``predictions`` as an integer array ``(S, ..., N)``, checked."""
    predictions = np.asarray(predictions)
    if predictions.ndim < 2:
        raise ValueError(f"predictions of shape {predictions.shape}: expected (S, ..., N), "
                         "seeds first and examples last")
    if predictions.size and not np.issubdtype(predictions.dtype, np.integer):
        raise ValueError(f"predictions of dtype {predictions.dtype}: expected integer "
                         "class labels")
    if num_classes is not None and predictions.size and (
            predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(f"predictions outside [0, {num_classes}): "
                         f"from {predictions.min()} to {predictions.max()}")
    # int64 throughout: JAX hands int32, and a sentinel of int64's maximum would wrap to -1.
    return predictions.astype(np.int64)


def churn_matrix(predictions: Any) -> np.ndarray:
    """Share of examples on which two seeds predict different classes, for every pair.

    Args:
      predictions: ``(S, N)`` integer class labels (or ``(S, ..., N)``: one matrix per
        level of the middle axes).

    Returns:
      ``(S, S)`` float (``(S, S, ...)``): entry ``(i, j)`` is the share of the ``N``
      examples on which seeds ``i`` and ``j`` disagree; symmetric, 0 on the diagonal.
    """
    predictions = _as_predictions(predictions)
    num_seeds = predictions.shape[0]
    churn = np.zeros((num_seeds, num_seeds, *predictions.shape[1:-1]), dtype=np.float64)
    for i in range(num_seeds):  # S rows of (S, ..., N) comparisons, not an (S, S, ..., N) one
        churn[i] = (predictions[i] != predictions).mean(axis=-1)
    return churn


def mean_churn(churn: Any) -> np.ndarray:
    """Each seed's mean churn with the other seeds: the off-diagonal row means.

    Args:
      churn: ``(S, S)`` or ``(S, S, ...)`` a :func:`churn_matrix`.

    Returns:
      ``(S,)`` (``(S, ...)``); NaN when ``S == 1`` (no other seed).
    """
    return pairwise_row_means(churn)


def _vote_counts(predictions: np.ndarray) -> np.ndarray:
    """``(S, ..., N)`` -> ``(S, ..., N)``: how many seeds cast the vote seed ``s`` cast."""
    counts = np.zeros(predictions.shape, dtype=np.int64)
    for other in predictions:  # no (..., N, C) one-hot: independent of the class count
        counts += predictions == other
    return counts


def majority_vote(predictions: Any, num_classes: int) -> np.ndarray:
    """The class most seeds predict, per example.

    Ties are broken towards the smallest class index (as ``np.argmax`` of the vote counts
    would).

    Args:
      predictions: ``(S, N)`` (or ``(S, ..., N)``) integer labels in ``[0, num_classes)``.
      num_classes: the number of classes (labels outside ``[0, num_classes)`` raise).

    Returns:
      ``(N,)`` (``(..., N)``) int64.
    """
    predictions = _as_predictions(predictions, num_classes)
    if predictions.shape[0] == 0:
        raise ValueError("majority_vote of no seed")
    counts = _vote_counts(predictions)
    most = counts == counts.max(axis=0, keepdims=True)
    return np.where(most, predictions, np.iinfo(np.int64).max).min(axis=0).astype(np.int64)


def vote_entropy(predictions: Any, num_classes: int) -> np.ndarray:
    """Shannon entropy (natural log) of the distribution of the seeds' votes, per example.

    ``-sum_c p_c ln p_c`` with ``p_c`` the share of seeds predicting class ``c``: 0 when
    every seed agrees, ``ln min(S, num_classes)`` at most.

    Args:
      predictions: ``(S, N)`` (or ``(S, ..., N)``) integer labels in ``[0, num_classes)``.
      num_classes: the number of classes (labels outside ``[0, num_classes)`` raise).

    Returns:
      ``(N,)`` (``(..., N)``) float64 in nats.
    """
    predictions = _as_predictions(predictions, num_classes)
    num_seeds = predictions.shape[0]
    if num_seeds == 0:
        raise ValueError("vote_entropy of no seed")
    # Class c with n_c votes is cast by n_c seeds, each seeing count n_c:
    # sum_c (n_c / S) ln(n_c / S) = mean over seeds of ln(count_s / S).
    shares = _vote_counts(predictions) / num_seeds
    return np.maximum(-np.log(shares).mean(axis=0), 0.0)


def ambiguity(predictions: Any) -> np.ndarray:
    """Share of examples on which at least one seed disagrees with the majority vote.

    Marx, Calmon & Ustun (2020)'s ambiguity with the majority vote as the reference
    model. Some seed departs from the majority exactly when the seeds are not unanimous,
    so this is also the share of examples without a unanimous vote (independent of how
    majority ties are broken).

    Args:
      predictions: ``(S, N)`` (or ``(S, ..., N)``) integer labels.

    Returns:
      ``()`` float in ``[0, 1]`` (``(...)``); 0 for one seed.
    """
    predictions = _as_predictions(predictions)
    if predictions.shape[0] == 0:
        raise ValueError("ambiguity of no seed")
    return (predictions != predictions[:1]).any(axis=0).mean(axis=-1)


def pair_summary(churn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S, S, ...)`` -> mean and std of churn over the ``S (S - 1) / 2`` pairs, ``(...)``;
    NaN with fewer than two seeds."""
    churn = np.asarray(churn, dtype=np.float64)
    num_seeds = churn.shape[0]
    if num_seeds < 2:
        empty = np.full(churn.shape[2:], np.nan)
        return empty, empty.copy()
    upper = np.triu_indices(num_seeds, k=1)
    pairs = churn[upper]  # (P, ...)
    return pairs.mean(axis=0), pairs.std(axis=0)


def set_multiplicity(predictions: Any, labels: Any, num_classes: int) -> dict[str, Any]:
    """Everything measured on one set's levels.

    Args:
      predictions: ``(S, K, N)`` the seeds' predicted classes at ``K`` levels (severities).
      labels: ``(K, N)`` the true classes.
      num_classes: the number of classes.

    Returns:
      ``churn`` ``(S, S, K)``, ``agrees_with_majority`` ``(S, K)`` (share of examples on
      which the seed predicts the majority vote), ``ambiguity``, ``mean_vote_entropy``,
      ``majority_vote_accuracy``, ``mean_seed_accuracy``, ``pair_churn_mean`` and
      ``pair_churn_std`` (over pairs of seeds) each ``(K,)``, ``vote_entropy`` ``(K, N)``
      and ``num_seeds``. With no seed, every aggregate is NaN.
    """
    predictions = _as_predictions(predictions, num_classes)
    labels = np.asarray(labels)
    if predictions.ndim != 3 or labels.shape != predictions.shape[1:]:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape}: "
                         "expected (S, K, N) and (K, N)")
    if predictions.shape[-1] == 0:
        raise ValueError("a set without examples")
    num_seeds, levels, examples = predictions.shape
    churn = churn_matrix(predictions)
    pair_mean, pair_std = pair_summary(churn)
    if num_seeds == 0:
        nan = np.full(levels, np.nan)
        return {"churn": churn, "agrees_with_majority": np.zeros((0, levels)),
                "ambiguity": nan, "mean_vote_entropy": nan.copy(),
                "majority_vote_accuracy": nan.copy(), "mean_seed_accuracy": nan.copy(),
                "pair_churn_mean": pair_mean, "pair_churn_std": pair_std,
                "vote_entropy": np.full((levels, examples), np.nan), "num_seeds": 0}
    majority = majority_vote(predictions, num_classes)  # (K, N)
    entropy = vote_entropy(predictions, num_classes)  # (K, N)
    return {
        "churn": churn,
        "agrees_with_majority": (predictions == majority).mean(axis=-1),
        "ambiguity": ambiguity(predictions),
        "mean_vote_entropy": entropy.mean(axis=-1),
        "majority_vote_accuracy": (majority == labels).mean(axis=-1),
        "mean_seed_accuracy": (predictions == labels).mean(axis=-1).mean(axis=0),
        "pair_churn_mean": pair_mean,
        "pair_churn_std": pair_std,
        "vote_entropy": entropy,
        "num_seeds": int(num_seeds),
    }


def multiplicity_evaluation(
    predictions: Mapping[str, Any],
    labels: Mapping[str, Any],
    severities: Mapping[str, Sequence[float]],
    num_classes: int,
    *,
    save_matrices: bool = True,
) -> Evaluation:
    """The evaluator's result from the predictions of every set.

    Args:
      predictions: set name -> ``(S, K, N)`` predicted classes; ``"clean"`` (``K = 1``)
        and each shift. Pass the kept seeds' rows to leave seeds out.
      labels: set name -> ``(K, N)`` true classes.
      severities: set name -> ``(K,)``.
      num_classes: the number of classes.
      save_matrices: also save every shifted set's ``(S, S, K)`` churn matrix (the clean
        one and each shift's matrix averaged over its non-zero severities always are).

    Returns:
      See :data:`EVALUATOR`'s ``doc`` and the module docstring: metrics ``churn_clean``
      and ``<shift>_mean_churn``; pairwise ``churn`` and ``mean_churn``; per-seed
      ``agrees_with_majority``; shared ``sets`` and ``clean_vote_entropy``.
    """
    out = Evaluation(pairwise={"churn": {}, "mean_churn": {}},
                     per_seed={"agrees_with_majority": {}},
                     shared={"sets": {}})
    names = sorted(predictions, key=lambda n: n != CLEAN)  # clean first, else as given
    for name in names:
        result = set_multiplicity(predictions[name], labels[name], num_classes)
        levels = np.asarray(severities[name], dtype=np.float64).reshape(-1)
        if levels.shape[0] != result["churn"].shape[-1]:
            raise ValueError(f"set {name!r}: {levels.shape[0]} severities for "
                             f"{result['churn'].shape[-1]} levels of predictions")
        out.per_seed["agrees_with_majority"][name] = result["agrees_with_majority"]
        out.shared["sets"][name] = {
            "severities": [float(s) for s in levels],
            **{key: result[key] for key in ("ambiguity", "mean_vote_entropy",
                                            "majority_vote_accuracy", "mean_seed_accuracy",
                                            "pair_churn_mean", "pair_churn_std")},
            "num_seeds": result["num_seeds"],
        }
        churn = result["churn"]  # (S, S, K)
        if name == CLEAN:
            out.pairwise["churn"][CLEAN] = churn[:, :, 0]
            out.shared["clean_vote_entropy"] = result["vote_entropy"][0]
            out.metrics["churn_clean"] = Metric(
                mean_churn(churn[:, :, 0]), "lower", {"set": CLEAN, "measure": "churn"},
                pairwise=f"churn/{CLEAN}")
            continue
        if save_matrices:
            out.pairwise["churn"][name] = churn
        nonzero = levels > 0
        if nonzero.any():
            averaged = churn[:, :, nonzero].mean(axis=-1)  # row means commute with this mean
            out.pairwise["mean_churn"][name] = averaged
            out.metrics[f"{name}_mean_churn"] = Metric(
                mean_churn(averaged), "lower", {"set": name, "measure": "churn"},
                pairwise=f"mean_churn/{name}")
    return out


# ----------------------------------------------------------------------------- evaluator

FIELDS = (
    fields.boolean("multiplicity_matrices", True,
                   "multiplicity: save the S x S churn matrix of every shifted test set at "
                   "every severity (S*S*K numbers a shift; False at hundreds of seeds keeps "
                   "the clean one and each shift's mean)"),
)


def evaluate(context: EvaluationContext) -> Evaluation:
    """Multiplicity of the robustness evaluator's predictions (nothing for regression).

    Per-seed and pairwise numbers cover every seed (a seed left out later leaves its rows
    generically); numbers that pool the seeds (ambiguity, vote entropy, the majority vote)
    use only the seeds whose training stayed finite.
    """
    earlier = context.earlier.get("robustness")
    passed = earlier.passed_on if earlier is not None else {}
    if context.task.kind == "regression" or not passed.get("predictions"):
        return Evaluation()
    save = bool(context.settings.multiplicity_matrices)
    every = multiplicity_evaluation(
        passed["predictions"], passed["labels"], passed["severities"],
        int(context.task.num_outputs), save_matrices=save)
    if context.kept is None or np.all(context.kept):
        return every
    kept = np.asarray(context.kept)
    pooled = multiplicity_evaluation(
        {k: v[kept] for k, v in passed["predictions"].items()}, passed["labels"],
        passed["severities"], int(context.task.num_outputs), save_matrices=save)
    every.shared = pooled.shared
    # Agreement with the majority of the finite seeds; a diverged seed's row is NaN.
    for name, agrees in pooled.per_seed["agrees_with_majority"].items():
        rows = np.full((kept.size, *np.shape(agrees)[1:]), np.nan)
        rows[kept] = agrees
        every.per_seed["agrees_with_majority"][name] = rows
    return every


def memory(settings: ConfigDict, task: Task, num_seeds: int) -> MemoryUse:
    """What :func:`evaluate`'s arrays take for ``num_seeds`` seeds.

    Held to the end, float64: the clean churn ``(S, S)``, each shift's mean ``(S, S)``
    and, with ``multiplicity_matrices``, each shift's ``(S, S, K)``. Working on one set at
    a time: its churn (if not held), then either the pairs above the diagonal with their
    two index arrays and ``np.std``'s deviations (``S * S * (K + 1)`` numbers) or about
    five int64 vote arrays ``(S, K, N)``. Saved: the matrices held, every seed's
    agreement with the majority at every level, and the clean vote entropy ``(N,)``.
    """
    if task.kind != "classification":
        return MemoryUse(0, 0)
    # The shifts robustness runs: its section, which settings holds as the one of an
    # evaluator this one requires.
    robustness = settings.robustness
    sets = [(1, task.num_test)] + [(len(robustness.severities), task.num_test)] * len(
        robustness.shifts) + [(len(s.severities), int(np.shape(s.y)[-1]))
                            for s in task.shift_sets.values()]
    kept = bool(settings.multiplicity_matrices)
    matrices = len(sets) + (sum(levels for levels, _ in sets[1:]) if kept else 0)
    pairs = num_seeds * num_seeds
    working = max(8 * pairs * levels * (index > 0 and not kept)
                  + max(8 * pairs * (levels + 1), 5 * 8 * num_seeds * levels * examples)
                  for index, (levels, examples) in enumerate(sets))
    # Beside the matrices: per seed, agreement at every level and a metric per set; the
    # clean test set's vote entropy per example.
    saved = pairs * matrices + num_seeds * sum(k + 1 for k, _ in sets) + task.num_test
    return MemoryUse(held=8 * pairs * matrices + working, saved=saved)


EVALUATOR = Evaluator(
    name="multiplicity",
    fields=FIELDS,
    requires=("robustness",),
    evaluate=evaluate,
    memory=memory,
    doc="how often seeds of equal accuracy disagree on single predictions (churn, "
        "ambiguity, vote entropy, majority vote), clean and under shift",
)
