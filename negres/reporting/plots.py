"""Figures of a seed study, each a PNG a person can read without the code.

Every function takes NumPy arrays with the seed axis first, writes one PNG and returns
its path. Bands and error bars are 95% t-intervals of the mean over seeds (the seeds are
the sample), unless the caller passes the study's own intervals (which cover what each
metric's sampling calls for: the test examples, pairs of seeds); with one seed there is no
interval and the title says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

_DPI = 120
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf"]


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Mean and t-interval of the mean over axis 0, ignoring non-finite seeds.

    Returns:
      ``(mean, low, high, n)`` each of shape ``values.shape[1:]``; ``low``/``high`` are NaN
      where fewer than two seeds are finite.
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    safe = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = safe.sum(axis=0) / n
        var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / (n - 1)
        half = scipy_stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * np.sqrt(var / n)
    half = np.where(n >= 2, half, np.nan)
    return mean, mean - half, mean + half, n


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def _seed_text(num_seeds: int) -> str:
    return f"{num_seeds} seeds" if num_seeds != 1 else "1 seed (no interval)"


def learning_curves_figure(
    steps: np.ndarray, curves: Mapping[str, np.ndarray], title: str
) -> Figure:
    """One panel per curve: thin per-seed lines, the mean, and its 95% band."""
    names = list(curves)
    fig = Figure(figsize=(4.2 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    num_seeds = next(iter(curves.values())).shape[0]
    for ax, name in zip(axes, names, strict=True):
        values = np.asarray(curves[name], dtype=float)
        for row in values:
            ax.plot(steps, row, color="0.6", lw=0.6, alpha=0.6)
        mean, low, high, _ = mean_interval(values)
        ax.fill_between(steps, low, high, color=_COLORS[0], alpha=0.3, lw=0)
        ax.plot(steps, mean, color=_COLORS[0], lw=2, label="mean")
        if not np.isfinite(values).any():
            ax.text(0.5, 0.5, "every seed diverged\nbefore the first curve point",
                    transform=ax.transAxes, ha="center", va="center", color="0.3")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
    # Diverged seeds' curves are NaN from their divergence on (see negres.training.step).
    diverged = int(np.isnan(np.asarray(next(iter(curves.values())), dtype=float)[:, -1]).sum())
    note = (f"; {diverged} diverged: their lines stop there, the mean is over the others"
            if diverged else "")
    fig.suptitle(f"{title} — {_seed_text(num_seeds)}: grey = seeds, line = mean, "
                 f"band = 95% interval of the mean over seeds (this evaluation set){note}",
                 fontsize=10)
    return fig


def learning_curves(
    steps: np.ndarray, curves: Mapping[str, np.ndarray], path: str | Path, title: str
) -> Path:
    """Write :func:`learning_curves_figure`; ``curves``: name -> ``(S, T)``."""
    return _save(learning_curves_figure(np.asarray(steps), curves, title), path)


def robustness_figure(
    severities: np.ndarray, values: Mapping[str, np.ndarray], metric_name: str,
    clean: np.ndarray | None = None,
) -> Figure:
    """One line per shift over severity, with a 95% band over seeds; the clean level dashed."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    num_seeds = next(iter(values.values())).shape[0]
    for i, (shift, curve) in enumerate(values.items()):
        mean, low, high, _ = mean_interval(curve)
        color = _COLORS[i % len(_COLORS)]
        ax.fill_between(severities, low, high, color=color, alpha=0.25, lw=0)
        ax.plot(severities, mean, "o-", color=color, lw=2, label=shift.replace("_", " "))
    if clean is not None:
        ax.axhline(np.nanmean(clean), color="k", ls="--", lw=1, label="clean test set (mean)")
    ax.set_xlabel("shift severity")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{metric_name} under shift — {_seed_text(num_seeds)}; "
                 "band = 95% interval of the mean over seeds (this test set)", fontsize=10)
    return fig


def robustness_curves(
    severities: np.ndarray, values: Mapping[str, np.ndarray], path: str | Path,
    metric_name: str, clean: np.ndarray | None = None,
) -> Path:
    """Write :func:`robustness_figure`; ``values``: shift -> ``(S, K)``."""
    return _save(robustness_figure(np.asarray(severities), values, metric_name, clean), path)


Interval = tuple[float, float]


def _bars(values: np.ndarray, interval: Interval | None) -> tuple[float, float, float, int]:
    """``(mean, low, high, finite seeds)`` of ``(S,)`` values: the given interval where
    the study computed one for this kind of metric, else the t-interval over seeds."""
    mean, low, high, n = (a[0] for a in mean_interval(values[:, None]))
    if interval is not None and n >= 2:
        # An error bar cannot point inward: a bound on the wrong side of the mean (a
        # skewed bootstrap interval) is drawn at the mean.
        low, high = min(float(interval[0]), mean), max(float(interval[1]), mean)
    return float(mean), float(low), float(high), int(n)


def seed_strip_figure(values: Mapping[str, np.ndarray], metric_name: str, title: str,
                      intervals: Mapping[str, Interval] | None = None,
                      covers: str | None = None) -> Figure:
    """Per condition: every seed as a jittered point, the mean and its 95% interval.

    ``intervals``: condition -> ``(low, high)``, the study's interval of the metric (one
    that covers what the metric's sampling calls for, e.g. the test examples too), named
    by ``covers``; a condition without one gets the t-interval over seeds."""
    names = list(values)
    fig = Figure(figsize=(max(4.0, 1.3 * len(names) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    dropped = 0
    for i, name in enumerate(names):
        raw = np.asarray(values[name], dtype=float)
        finite = raw[np.isfinite(raw)]
        dropped += raw.size - finite.size
        jitter = rng.uniform(-0.15, 0.15, finite.size)
        ax.scatter(i + jitter, finite, s=14, color=_COLORS[i % len(_COLORS)], alpha=0.7)
        mean, low, high, n = _bars(finite, (intervals or {}).get(name))
        if n >= 2:
            ax.errorbar(i + 0.3, mean, yerr=[[mean - low], [high - mean]],
                        fmt="D", color="k", capsize=4, ms=5)
        elif n == 1:
            ax.plot(i + 0.3, mean, "D", color="k", ms=5)
    ax.set_xticks(range(len(names)), [f"{n}\n({np.isfinite(values[n]).sum()} seeds)"
                                      for n in names], fontsize=8)
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3, axis="y")
    note = f"; non-finite seeds left out: {dropped}" if dropped else ""
    over = f" over {covers}" if covers else ""
    ax.set_title(f"{title}\npoints = seeds, diamond = mean with 95% interval{over}{note}",
                 fontsize=10)
    return fig


def seed_strip(
    values: Mapping[str, np.ndarray], path: str | Path, metric_name: str, title: str,
    intervals: Mapping[str, Interval] | None = None, covers: str | None = None,
) -> Path:
    """Write :func:`seed_strip_figure`; ``values``: condition -> ``(S_c,)``."""
    return _save(seed_strip_figure(values, metric_name, title, intervals, covers), path)


def agreement_figure(matrix: np.ndarray, title: str, measure_name: str) -> Figure:
    """Seed-by-seed heatmap on a fixed [-1, 1] scale, off-diagonal mean in the title."""
    matrix = np.asarray(matrix, dtype=float)
    num_seeds = matrix.shape[0]
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    off = matrix[~np.eye(num_seeds, dtype=bool)]
    mean = np.nanmean(off) if off.size else float("nan")
    fig.colorbar(image, ax=ax, label=measure_name)
    ticks = range(num_seeds) if num_seeds <= 16 else range(0, num_seeds, max(1, num_seeds // 8))
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    ax.set_xlabel("seed")
    ax.set_ylabel("seed")
    ax.set_title(f"{title}\n{num_seeds} seeds; mean over pairs of seeds = {mean:.3f}",
                 fontsize=10)
    return fig


def agreement_heatmap(
    matrix: np.ndarray, path: str | Path, title: str, measure_name: str
) -> Path:
    """Write :func:`agreement_figure`; ``matrix``: ``(S, S)``."""
    return _save(agreement_figure(matrix, title, measure_name), path)


def saliency_figure(
    inputs: np.ndarray, attributions: np.ndarray, seed_labels: Sequence[str], title: str,
    example_labels: Sequence[str] | None = None,
) -> Figure:
    """First row the inputs, then one row per seed of the same examples' attributions.

    RGB inputs are shown in color, others in grey; attributions of images are summed over
    channels and shown on a diverging scale symmetric around 0,
    normalised per map by its largest absolute value (red positive, blue negative).
    Signals ``(L, C)`` are drawn as lines with the attribution as colored bars behind.
    """
    inputs = np.asarray(inputs, dtype=float)
    attributions = np.asarray(attributions, dtype=float)
    num_seeds, num_examples = attributions.shape[:2]
    is_signal = inputs.ndim == 3  # (N, L, C)
    fig = Figure(figsize=(1.7 * num_examples + 1, 1.6 * (num_seeds + 1) + 0.6),
                 layout="constrained")
    axes = fig.subplots(num_seeds + 1, num_examples, squeeze=False)
    for j in range(num_examples):
        example = inputs[j]
        ax = axes[0, j]
        if is_signal:
            ax.plot(example.sum(axis=-1), color="k", lw=1)
        elif example.ndim == 3 and example.shape[-1] == 3:
            ax.imshow(np.clip(example, 0.0, 1.0))  # RGB as it is: color may be the point
        else:
            ax.imshow(example.sum(axis=-1) if example.ndim == 3 else example, cmap="gray_r")
        ax.set_title(example_labels[j] if example_labels else f"example {j}", fontsize=8)
        for i in range(num_seeds):
            attribution = attributions[i, j]
            attribution = attribution.sum(axis=-1) if attribution.ndim == example.ndim and \
                attribution.ndim >= 2 else attribution
            # A diverged seed's attributions can be NaN: scale by what is finite.
            finite = np.abs(attribution[np.isfinite(attribution)])
            scale = finite.max() if finite.size and finite.max() > 0 else 1.0
            ax = axes[i + 1, j]
            if is_signal:
                positions = np.arange(attribution.shape[0])
                ax.bar(positions, attribution / scale, color=np.where(attribution >= 0,
                       "#d62728", "#1f77b4"), width=1.0, alpha=0.6)
                ax.plot(positions, example.sum(axis=-1) / (np.abs(example).max() or 1.0),
                        color="k", lw=0.8)
                ax.set_ylim(-1.05, 1.05)
            else:
                ax.imshow(attribution / scale, cmap="RdBu_r", vmin=-1, vmax=1)
            if j == 0:
                ax.set_ylabel(seed_labels[i], fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}\nrows = seeds; red positive, blue negative, each map scaled to "
                 "its largest |value|", fontsize=9)
    return fig


def saliency_grid(
    inputs: np.ndarray, attributions: np.ndarray, path: str | Path,
    seed_labels: Sequence[str], title: str, example_labels: Sequence[str] | None = None,
) -> Path:
    """Write :func:`saliency_figure`; ``attributions``: ``(S_show, N, *input_shape)``."""
    return _save(saliency_figure(inputs, attributions, seed_labels, title, example_labels),
                 path)


def feature_bars_figure(
    per_seed: np.ndarray, feature_names: Sequence[str], title: str,
    truth: np.ndarray | None = None, value_name: str = "mean |attribution|",
) -> Figure:
    """Per feature: the mean over seeds as a bar, each seed as a point, the truth as a mark."""
    per_seed = np.asarray(per_seed, dtype=float)
    num_seeds, num_features = per_seed.shape
    fig = Figure(figsize=(max(4.5, 0.8 * num_features + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(num_features)
    ax.bar(positions, np.nanmean(per_seed, axis=0), color=_COLORS[0], alpha=0.4,
           label="mean over seeds")
    rng = np.random.default_rng(0)
    for i in range(num_seeds):
        ax.scatter(positions + rng.uniform(-0.2, 0.2, num_features), per_seed[i], s=10,
                   color="k", alpha=0.5, label="one seed" if i == 0 else None)
    if truth is not None:
        ax.scatter(positions, truth, marker="_", s=600, color=_COLORS[1], lw=2.5,
                   label="true contribution")
    ax.set_xticks(positions, feature_names, rotation=45 if num_features > 8 else 0)
    ax.set_ylabel(value_name)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}\n{_seed_text(num_seeds)}", fontsize=10)
    return fig


def feature_bars(
    per_seed: np.ndarray, feature_names: Sequence[str], path: str | Path, title: str,
    truth: np.ndarray | None = None, value_name: str = "mean |attribution|",
) -> Path:
    """Write :func:`feature_bars_figure`; ``per_seed``: ``(S, D)``."""
    return _save(feature_bars_figure(per_seed, feature_names, title, truth, value_name), path)


def frontier_figure(
    x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], x_label: str, y_label: str,
    title: str, x_intervals: Mapping[str, Interval] | None = None,
    y_intervals: Mapping[str, Interval] | None = None,
) -> Figure:
    """One point per model at its means, 95% intervals on both axes, labelled by name.

    ``x_intervals``, ``y_intervals``: model -> ``(low, high)``, the study's intervals (each
    covering what its metric's sampling calls for); a model without one gets the
    t-interval over seeds."""
    fig = Figure(figsize=(6.0, 4.6), layout="constrained")
    ax = fig.subplots()
    points = []
    for i, name in enumerate(x):
        mx, lx, hx, _ = _bars(np.asarray(x[name], dtype=float), (x_intervals or {}).get(name))
        my, ly, hy, _ = _bars(np.asarray(y[name], dtype=float), (y_intervals or {}).get(name))
        xerr = [[mx - lx], [hx - mx]] if np.isfinite(lx) else None
        yerr = [[my - ly], [hy - my]] if np.isfinite(ly) else None
        color = _COLORS[i % len(_COLORS)]
        ax.errorbar(mx, my, xerr=xerr, yerr=yerr, fmt="o", color=color, capsize=3)
        points.append((name, mx, my, color))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    counts = sorted({int(np.isfinite(np.asarray(v, dtype=float)).sum()) for v in x.values()})
    seeds = _seed_text(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    ax.set_title(f"{title}\n{seeds}; points = mean over seeds, bars = 95% intervals",
                 fontsize=10)
    _label_points(fig, ax, points)
    return fig


# Where a point's name may go, in points from it: right, left, above, below, further out.
_LABEL_OFFSETS = ((6, 6), (6, -13), (-6, 6), (-6, -13), (6, 16), (-6, -23), (6, -23),
                  (-6, 16))


def _label_points(fig: Figure, ax: Any, points: Sequence[tuple[str, float, float, str]]
                  ) -> None:
    """Name each point at the first offset where its name overlaps no name placed before
    (close models' names would otherwise print over each other)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only to measure text

    renderer = FigureCanvasAgg(fig).get_renderer()
    placed = []
    for name, mx, my, color in points:
        for dx, dy in _LABEL_OFFSETS:
            label = ax.annotate(name, (mx, my), textcoords="offset points", xytext=(dx, dy),
                                fontsize=8, color=color, ha="left" if dx > 0 else "right")
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            label.remove()
        else:  # crowded everywhere: the first place
            label = ax.annotate(name, (mx, my), textcoords="offset points", xytext=(6, 6),
                                fontsize=8, color=color)
            box = label.get_window_extent(renderer)
        placed.append(box)


def frontier(
    x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], path: str | Path, x_label: str,
    y_label: str, title: str, x_intervals: Mapping[str, Interval] | None = None,
    y_intervals: Mapping[str, Interval] | None = None,
) -> Path:
    """Write :func:`frontier_figure`; ``x``, ``y``: model -> ``(S,)``."""
    return _save(frontier_figure(x, y, x_label, y_label, title, x_intervals, y_intervals),
                 path)
