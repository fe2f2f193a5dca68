"""The TensorBoard log directory, read back with TensorBoard's own reader (no training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("tensorboardX")

from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from negres.reporting import tensorboard as tensorboard_module
from negres.reporting.tensorboard import (
    STUDY_RUN,
    TENSORBOARD_DIR,
    write_tensorboard,
)
from negres.results import ConditionResults, Results, StudyStatistics, TaskInfo

S, T, K = 5, 4, 3
STEPS = [10, 20, 30, 40]
SEVERITIES = [0.0, 0.1, 0.25]
PLOT_SIZES = {"plots/a.png": (30, 50), "plots/b.png": (40, 20)}  # (height, width)


def _condition(rng: np.random.Generator, first_seed: int, diverge: bool) -> dict:
    curves = {"step": STEPS, "test_accuracy": rng.uniform(size=(S, T)),
              "train_loss": rng.uniform(1, 3, size=(S, T))}
    diverged_at = [-1] * S
    if diverge:  # a diverged seed's curves are NaN from its divergence on
        curves["train_loss"][1, 2:] = np.nan
        curves["test_accuracy"][1, 2:] = np.nan
        diverged_at[1] = 25
    return {
        "seed_indices": list(range(first_seed, first_seed + S)),
        "curves": {k: np.asarray(v).tolist() for k, v in curves.items()},
        "diverged_at_step": diverged_at,
        "evaluations": {"robustness": {
            "shared": {"severities": {"gaussian_noise": SEVERITIES}},
            "per_seed": {"curves": {"gaussian_noise": {
                "accuracy": rng.uniform(size=(S, K)).tolist(),
                "loss": rng.uniform(size=(S, K)).tolist()}}},
        }},
    }


@pytest.fixture
def study(tmp_path: Path) -> tuple[Results, Path, list[tuple[str, str]]]:
    rng = np.random.default_rng(0)
    conditions = {"mlp": _condition(rng, 0, False), "digits/linear": _condition(rng, 100, True)}
    results = Results(
        config={"title": "synthetic study", "num_seeds": S, "train": {"steps": 40}},
        task=TaskInfo(name="digits"), baseline="mlp", statistics=StudyStatistics(),
        finding="It reproduces.",
        conditions={n: ConditionResults.from_json(c) for n, c in conditions.items()})
    (tmp_path / "plots").mkdir()
    for i, (relative, shape) in enumerate(PLOT_SIZES.items()):
        pixels = rng.integers(0, 255, size=(*shape, 3 + i), dtype=np.uint8)  # RGB, then RGBA
        Image.fromarray(pixels).save(tmp_path / relative)
    plots = [(f"plot {relative}", relative) for relative in PLOT_SIZES]
    return results, tmp_path, plots


def _load(run: Path) -> event_accumulator.EventAccumulator:
    everything = {key: 0 for key in event_accumulator.DEFAULT_SIZE_GUIDANCE}
    return event_accumulator.EventAccumulator(
        str(run), size_guidance={**everything, event_accumulator.TENSORS: 0}).Reload()


def _scalars(acc: event_accumulator.EventAccumulator, tag: str) -> tuple[list, np.ndarray]:
    events = acc.Scalars(tag)
    return [e.step for e in events], np.array([e.value for e in events])


def _text(acc: event_accumulator.EventAccumulator, tag: str) -> str:
    (event,) = acc.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode()


@pytest.mark.parametrize("seed_curves", [3, 8])
def test_event_files_hold_the_results(study, seed_curves: int) -> None:
    results, workdir, plots = study
    before = set(workdir.iterdir())
    runs = write_tensorboard(results, workdir, plots, seed_curves=seed_curves)
    root = workdir / TENSORBOARD_DIR
    assert set(workdir.iterdir()) == before | {root}
    shown = min(S, seed_curves)
    assert len(runs) == 1 + 2 * (1 + shown)

    for name, condition in results.items():
        acc = _load(root / name)
        for curve in ("test_accuracy", "train_loss"):
            values = np.asarray(condition.curves[curve])
            for stat, reduce in (("mean", np.nanmean), ("min", np.nanmin), ("max", np.nanmax)):
                steps, got = _scalars(acc, f"curves/{curve}/{stat}")
                assert steps == STEPS
                np.testing.assert_allclose(got, reduce(values, axis=0), rtol=1e-6)
        sweep = condition.saved_by("robustness").per_seed["curves"]["gaussian_noise"]
        for measure, values in sweep.items():
            steps, got = _scalars(acc, f"robustness/gaussian_noise/{measure}/mean")
            assert steps == [0, 100, 250]  # 1000 x severity
            np.testing.assert_allclose(got, np.mean(values, axis=0), rtol=1e-6)
        assert "| gaussian_noise | 250 | 0.25 |" in _text(acc, "robustness/severities")

        seed_runs = sorted(p.name for p in (root / name).iterdir() if p.is_dir())
        assert seed_runs == [f"seed_{s:04d}" for s in condition.seed_indices[:shown]]
        for row, seed_run in enumerate(seed_runs):
            seed_acc = _load(root / name / seed_run)
            values = np.asarray(condition.curves["train_loss"][row])
            steps, got = _scalars(seed_acc, "seed_curves/train_loss")
            finite = np.isfinite(values)  # the diverged seed's line stops
            assert steps == list(np.asarray(STEPS)[finite])
            np.testing.assert_allclose(got, values[finite], rtol=1e-6)
            _, got = _scalars(seed_acc, "seed_robustness/gaussian_noise/accuracy")
            np.testing.assert_allclose(got, sweep["accuracy"][row], rtol=1e-6)

    study_acc = _load(root / STUDY_RUN)
    for relative, (height, width) in PLOT_SIZES.items():
        (image,) = study_acc.Images(f"plots/{Path(relative).stem}")
        assert (image.height, image.width) == (height, width)
    assert json.dumps(results.config, indent=2) in _text(study_acc, "study/config")
    assert "It reproduces." in _text(study_acc, "study/report")
    (event,) = study_acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    bands = {chart.title: chart.margin.series[0] for c in layout.category for chart in c.chart}
    band = bands["test_accuracy"]
    assert (band.value, band.lower, band.upper) == tuple(
        f"curves/test_accuracy/{stat}" for stat in ("mean", "min", "max"))
    assert "gaussian_noise: accuracy" in bands


def test_rewriting_leaves_one_set_of_events(study) -> None:
    results, workdir, plots = study
    write_tensorboard(results, workdir, plots)
    runs = write_tensorboard(results, workdir, plots)
    assert sorted(p.name for p in workdir.iterdir()) == ["plots", TENSORBOARD_DIR]
    for run in runs:
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        acc = _load(run)
        for tag in acc.Tags()[event_accumulator.SCALARS]:
            steps, _ = _scalars(acc, tag)
            assert len(steps) == len(set(steps)), tag
        for tag in acc.Tags()[event_accumulator.IMAGES]:
            assert len(acc.Images(tag)) == 1


def test_missing_tensorboardx_says_what_to_install(study, monkeypatch) -> None:
    results, workdir, _ = study
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        write_tensorboard(results, workdir)
    assert not (workdir / TENSORBOARD_DIR).exists()


def test_seed_runs_stop_where_tensorboard_would_tick_no_run(study, monkeypatch) -> None:
    results, workdir, _ = study
    monkeypatch.setattr(tensorboard_module, "MAX_RUNS", 8)
    runs = write_tensorboard(results, workdir, seed_curves=8)
    assert len(runs) == 7  # the study, then per condition its run and 2 seeds
    acc = _load(workdir / TENSORBOARD_DIR / "mlp")
    assert "asked for 8" in _text(acc, "condition/summary")
