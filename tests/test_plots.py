"""Plots: each writes a readable PNG whose text names what is shown and how many seeds."""

import matplotlib.image
import numpy as np
import pytest
from scipy import stats as scipy_stats

from negres.reporting import plots

RNG = np.random.default_rng(0)


def texts(fig) -> str:
    found = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return " ".join(found)


def test_mean_interval_is_the_t_interval_and_skips_non_finite():
    values = RNG.normal(size=(12, 3))
    values[0, 2] = np.nan
    mean, low, high, n = plots.mean_interval(values)
    for j in range(3):
        column = values[:, j][np.isfinite(values[:, j])]
        interval = scipy_stats.t.interval(0.95, column.size - 1, column.mean(),
                                          scipy_stats.sem(column))
        np.testing.assert_allclose([low[j], high[j]], interval, rtol=1e-10)
        assert mean[j] == np.float64(column.mean())
        assert n[j] == column.size
    _, low1, _, _ = plots.mean_interval(values[:1])
    assert np.all(np.isnan(low1))


@pytest.mark.parametrize("num_seeds", [1, 16])
def test_every_plot_writes_a_png_that_names_seeds_and_axes(tmp_path, num_seeds):
    s = num_seeds
    figures = {
        "curves": plots.learning_curves_figure(
            np.arange(1, 6) * 10, {"test_accuracy": RNG.uniform(size=(s, 5))}, "t"),
        "robustness": plots.robustness_figure(
            np.array([0, 0.1, 0.3]), {"gaussian_noise": RNG.uniform(size=(s, 3))},
            "test accuracy", RNG.uniform(size=s)),
        "strip": plots.seed_strip_figure({"a": RNG.uniform(size=s), "b": np.r_[np.nan,
                                          RNG.uniform(size=s)]}, "test accuracy", "t"),
        "heatmap": plots.agreement_figure(np.eye(s), "t", "Spearman"),
        "saliency": plots.saliency_figure(RNG.uniform(size=(3, 8, 8, 1)),
                                          RNG.normal(size=(min(s, 2), 3, 8, 8, 1)),
                                          ["seed 0", "seed 1"], "t"),
        "signal": plots.saliency_figure(RNG.uniform(size=(3, 40, 1)),
                                        RNG.normal(size=(min(s, 2), 3, 40, 1)),
                                        ["seed 0", "seed 1"], "t"),
        "bars": plots.feature_bars_figure(RNG.uniform(size=(s, 5)), list("abcde"), "t",
                                          truth=np.arange(5.0)),
        "frontier": plots.frontier_figure({"m": RNG.uniform(size=s)}, {"m": RNG.uniform(size=s)},
                                          "accuracy", "agreement", "t"),
    }
    seed_words = f"{s} seeds" if s > 1 else "1 seed"
    for name, fig in figures.items():
        text = texts(fig)
        if name not in ("saliency", "signal"):
            assert seed_words in text, (name, text)
        path = plots._save(fig, tmp_path / f"{name}.png")
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
    assert "test accuracy" in texts(figures["robustness"])
    assert "optimizer step" in texts(figures["curves"])
    assert "non-finite seeds left out: 1" in texts(figures["strip"])


def _bar_ends(fig) -> list[tuple[float, float]]:
    """``(low, high)`` of every vertical error bar drawn in ``fig``."""
    ends = []
    for container in fig.axes[0].containers:
        for collection in container.lines[2]:
            for segment in collection.get_segments():
                ys = sorted(float(y) for _, y in segment)
                if segment[0][0] == segment[1][0]:  # vertical
                    ends.append((ys[0], ys[1]))
    return ends


def test_plots_draw_the_studys_interval_where_it_has_one():
    """The report's interval (over seeds and test examples, say) is what the diamond's bars
    show, and the title says what it covers; without one, the t-interval over seeds."""
    values = {"a": RNG.uniform(0.9, 0.95, 8), "b": RNG.uniform(0.8, 0.85, 8)}
    fig = plots.seed_strip_figure(values, "test accuracy", "t", intervals={"a": (0.5, 0.99)},
                                  covers="seeds × 450 test examples")
    _, low, high, _ = plots.mean_interval(values["b"][:, None])
    np.testing.assert_allclose(_bar_ends(fig), [(0.5, 0.99), (low[0], high[0])])
    assert "95% interval over seeds × 450 test examples" in texts(fig)
    frontier = plots.frontier_figure({"m": values["a"]}, {"m": values["b"]}, "x", "y", "t",
                                     y_intervals={"m": (0.1, 0.9)})
    np.testing.assert_allclose(_bar_ends(frontier), [(0.1, 0.9)])


def test_a_studys_intervals_come_from_its_statistics():
    from negres.reporting.write import study_intervals
    from negres.results import Results, StudyStatistics, TaskInfo

    results = Results(config={}, task=TaskInfo(), baseline="a", conditions={},
                      statistics=StudyStatistics(summaries={
        "a": {"test_accuracy": {"ci": [0.9, 0.95], "sampling": "examples",
                                "estimand": "distribution", "num_examples": 450}},
        "b": {"test_accuracy": {"ci": [float("nan"), float("nan")]}}}))
    intervals, covers = study_intervals(results, "test_accuracy", ["a", "b", "c"])
    assert intervals == {"a": (0.9, 0.95)} and covers == "seeds × 450 test examples"
