"""Training progress that fits where it runs: a live bar on a terminal, log lines elsewhere.

:func:`progress_reporter` returns a function to pass as ``negres.train(..., progress=)``.
On an interactive terminal it redraws one line, ``step 120/200 (60%) · 16 seeds · 12.3 s
elapsed · about 8 s left``; when the output is a file or a cluster job's log, where a
redrawn line would pile up as control characters, it logs the same as one line per report.
"""

from __future__ import annotations

import sys
from typing import TextIO

from absl import logging

from negres.training.driver import ProgressFn

BAR_WIDTH = 24


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


class _Reporter:
    """One training call's progress; the time left is estimated from the reports after the
    first, whose time includes compiling."""

    def __init__(self, stream: TextIO | None, label: str, interactive: bool | None):
        self.stream = stream
        self.label = label
        self.interactive = interactive
        self.first: tuple[int, float] | None = None

    def time_left(self, done: int, total: int, elapsed: float) -> float | None:
        if self.first is None or done <= self.first[0]:
            return None
        rate = (elapsed - self.first[1]) / (done - self.first[0])
        return rate * (total - done)

    def __call__(self, done: int, total: int, num_seeds: int, elapsed: float) -> None:
        left = self.time_left(done, total, elapsed)
        if self.first is None or done < self.first[0]:  # a new call reuses the reporter
            self.first = (done, elapsed)
        share = done / total if total else 1.0
        left_text = ("done" if done >= total else "estimating the time left" if left is None
                     else f"about {_seconds(left)} left")
        stream = self.stream if self.stream is not None else sys.stderr
        interactive = self.interactive
        if interactive is None:
            interactive = bool(getattr(stream, "isatty", lambda: False)())
        if not interactive:
            logging.info("%s: step %d/%d (%3.0f%%), %d seeds, %.1fs elapsed, %s", self.label,
                         done, total, 100.0 * share, num_seeds, elapsed, left_text)
            return
        filled = round(BAR_WIDTH * share)
        stream.write(f"\r\033[K{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] step "
                     f"{done}/{total} ({share:.0%}) · {num_seeds} seeds · "
                     f"{_seconds(elapsed)} elapsed · {left_text}")
        if done >= total:
            stream.write("\n")
            self.first = None
        stream.flush()


def progress_reporter(stream: TextIO | None = None, *, label: str = "train",
                      interactive: bool | None = None) -> ProgressFn:
    """A progress function for :func:`negres.train`: a live bar or log lines.

    Args:
      stream: where the bar is drawn; standard error by default.
      label: the word before each report.
      interactive: draw a bar (True) or log lines (False); by default a bar exactly when
        ``stream`` is a terminal.

    Returns:
      ``progress(steps_done, total_steps, num_seeds, elapsed_seconds)``.
    """
    return _Reporter(stream, label, interactive)
