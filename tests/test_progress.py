"""Progress: a live bar on a terminal, one log line per report elsewhere."""

import io
import logging

import numpy as np

import negres
from negres.training.events import TrainingProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def update(step: int, elapsed: float, accuracy=None) -> TrainingProgress:
    """A segment's report; ``accuracy``: ``(S, P)`` its new eval_accuracy points, or none."""
    curves = {} if accuracy is None else {"eval_accuracy": np.asarray(accuracy, dtype=float)}
    points = 0 if accuracy is None else curves["eval_accuracy"].shape[1]
    return TrainingProgress(
        step=step, steps=200, num_seeds=16, elapsed_s=elapsed,
        curve_steps=np.arange(step - points + 1, step + 1), curves=curves,
        seed_indices=np.arange(16), grid={}, diverged_at=np.full(16, -1),
        stopped_at=np.full(16, -1))


def reports(progress) -> None:
    # The first report's time includes compiling: the time left is estimated after it,
    # from 100 steps in 10 s, so 80 steps left take about 8 s.
    progress(update(20, 5.0))
    progress(update(120, 15.0))
    progress(update(200, 23.0))


def test_a_terminal_gets_one_redrawn_line_with_the_time_left():
    terminal = Terminal()
    reports(negres.progress_reporter(terminal))
    text = terminal.getvalue()
    frames = text.split("\r\033[K")[1:]
    assert len(frames) == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "step 20/200 (10%) · 16 seeds · 5.0 s elapsed · estimating the time left" in frames[0]
    assert "[" + "#" * 14 + "." * 10 + "] step 120/200 (60%)" in frames[1]
    assert frames[1].endswith("about 8.0 s left")
    assert frames[2].rstrip("\n").endswith("23.0 s elapsed · done")


def test_a_file_or_cluster_log_gets_log_lines_and_no_control_characters(caplog):
    log = io.StringIO()  # not a terminal
    with caplog.at_level(logging.INFO):
        reports(negres.progress_reporter(log))
    assert log.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records if "train: step" in r.getMessage()]
    assert lines == [
        "train: step 20/200 ( 10%), 16 seeds, 5.0s elapsed, estimating the time left",
        "train: step 120/200 ( 60%), 16 seeds, 15.0s elapsed, about 8.0 s left",
        "train: step 200/200 (100%), 16 seeds, 23.0s elapsed, done",
    ]


def test_a_metric_shows_the_newest_points_median_and_range_over_finite_seeds(caplog):
    terminal = Terminal()
    progress = negres.progress_reporter(terminal, metric="eval_accuracy")
    first = np.linspace(0.5, 0.65, 16)[:, None] * np.ones(2)  # (S, P): two points
    first[:, 0] = 0.0  # the segment's older point is not the one shown
    newest = np.linspace(0.870, 0.934, 16)
    newest[3] = np.nan  # a diverged seed leaves the median and the range
    progress(update(20, 5.0, first))
    progress(update(120, 15.0, np.stack([np.zeros(16), newest], axis=1)))
    frames = terminal.getvalue().split("\r\033[K")[1:]
    assert frames[0].endswith("estimating the time left · eval_accuracy 0.575 "
                              "(0.500-0.650 over seeds)")
    median = np.median(np.delete(newest, 3))
    assert frames[1].endswith(f"about 8.0 s left · eval_accuracy {median:.3f} "
                              "(0.870-0.934 over seeds)")
    with caplog.at_level(logging.INFO):
        logged = negres.progress_reporter(io.StringIO(), metric="eval_loss")
        logged(update(20, 5.0, first))
        logged(update(200, 23.0, np.full((16, 1), np.nan)))
    lines = [r.getMessage() for r in caplog.records if "train: step" in r.getMessage()]
    assert lines[0].endswith("estimating the time left, eval_loss: no such curve "
                             "(curves: eval_accuracy)")
    diverged = io.StringIO()
    negres.progress_reporter(diverged, interactive=True, metric="eval_accuracy")(
        update(200, 23.0, np.full((16, 1), np.nan)))
    assert diverged.getvalue().endswith("done · eval_accuracy not finite for any seed\n")


def test_a_plain_script_without_logging_set_up_gets_plain_lines_with_the_seeds_ended(caplog):
    """absl at WARNING (a script that never set it) would swallow info lines: the
    reporter writes them to its stream instead, and says which seeds stopped training."""
    log = io.StringIO()
    with caplog.at_level(logging.WARNING):
        progress = negres.progress_reporter(log)
        progress(update(20, 5.0)._replace(stopped_at=np.r_[40, 60, np.full(14, -1)],
                                          diverged_at=np.r_[-1, -1, 10, np.full(13, -1)]))
    assert log.getvalue() == ("train: step 20/200 ( 10%), 16 seeds, 5.0s elapsed, estimating "
                              "the time left, 2 stopped early, 1 diverged\n")
