"""Progress: a live bar on a terminal, one log line per report elsewhere."""

import io
import logging

import negres


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def reports(progress) -> None:
    # The first report's time includes compiling: the time left is estimated after it,
    # from 100 steps in 10 s, so 80 steps left take about 8 s.
    progress(20, 200, 16, 5.0)
    progress(120, 200, 16, 15.0)
    progress(200, 200, 16, 23.0)


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
