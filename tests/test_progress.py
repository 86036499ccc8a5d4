"""Long work talks: a bar on a terminal, plain periodic lines in a log.

The work below waits for the reporter's lines instead of sleeping, so the
tests check what is printed and in which order, never how fast a loaded
machine runs.
"""

from __future__ import annotations

import io
import re
import threading

import vireid.progress
from vireid.progress import PlainProgress, track

PATIENCE_SECONDS = 60.0  # only a broken reporter makes a wait this long


class Log:
    """A stream that keeps the lines written to it and lets work wait for the next one."""

    def __init__(self):
        self.lines: list[str] = []
        self.written = threading.Condition()

    def write(self, text: str) -> None:
        with self.written:
            self.lines += [line for line in text.splitlines() if line]
            self.written.notify_all()

    def flush(self) -> None:
        pass

    def wait_for_lines(self, count: int) -> None:
        with self.written:
            assert self.written.wait_for(lambda: len(self.lines) >= count, PATIENCE_SECONDS), "no progress line came"


def _work_reported_by(log: Log, count: int):
    """``count`` items, each handed out only after one more progress line was printed."""
    for item in range(count):
        log.wait_for_lines(item + 1)
        yield item


def test_plain_lines_report_the_count_while_the_work_runs():
    log = Log()
    items = PlainProgress(_work_reported_by(log, 4), "extract", "batch", interval=0.001, total=4, stream=log)
    items.set_postfix(loss="1.250")
    assert list(items) == [0, 1, 2, 3]
    counts = [
        int(re.fullmatch(r"extract: (\d)/4 batch \(\d+ %\), \d+ s, loss 1\.250", line).group(1)) for line in log.lines
    ]
    assert counts[0] == 0 and counts == sorted(counts) and set(range(4)) <= set(counts)


def test_a_slow_first_item_is_not_silent():
    log = Log()
    assert list(PlainProgress(_work_reported_by(log, 1), "epoch 1/3", "batch", interval=0.001, stream=log)) == [0]
    assert log.lines[0].startswith(
        "epoch 1/3: 0 batch, "
    )  # printed while the first item was still coming; no total known


def test_the_reporter_stops_quietly_when_its_reader_is_gone(monkeypatch):
    attempted = threading.Event()

    class Gone:  # a closed pipe (``vireid ... | head``)
        def write(self, text: str) -> None:
            attempted.set()
            raise BrokenPipeError

        def flush(self) -> None:
            pass

    def work():
        yield 0
        assert attempted.wait(PATIENCE_SECONDS)
        yield 1

    thread_failures = []
    monkeypatch.setattr(threading, "excepthook", thread_failures.append)
    assert list(PlainProgress(work(), "x", "img", interval=0.001, stream=Gone())) == [0, 1]
    assert thread_failures == []


def test_track_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere(monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(track(range(3), "x", "img"), PlainProgress)  # pytest's stderr is not a terminal
    monkeypatch.setattr("sys.stderr", Terminal())
    bar = track(range(3), "x", "img")
    assert not isinstance(bar, PlainProgress) and list(bar) == [0, 1, 2]
    assert "x: 100%" in vireid.progress.sys.stderr.getvalue()
    silent = track(range(3), "x", "img", enabled=False)
    silent.set_postfix(loss=1)
    assert list(silent) == [0, 1, 2]
    assert capsys.readouterr().out == ""
