"""Long work talks: a bar on a terminal, plain periodic lines in a log."""
from __future__ import annotations

import io
import re
import time

import vireid.progress
from vireid.progress import PlainProgress, track


def _slowly(count: int, seconds: float):
    for item in range(count):
        time.sleep(seconds)
        yield item


def test_plain_lines_appear_while_the_work_runs(capsys):
    items = PlainProgress(_slowly(6, 0.1), "extract", "batch", interval=0.02, total=6)
    items.set_postfix(loss="1.250")
    assert list(items) == list(range(6))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 6  # about one line per 0.02 s over 0.6 s of work
    counts = [int(re.fullmatch(r"extract: (\d)/6 batch \(\d+ %\), \d+ s, loss 1\.250", line).group(1)) for line in lines]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_a_slow_first_item_is_not_silent(capsys):
    assert list(PlainProgress(_slowly(1, 0.2), "epoch 1/3", "batch", interval=0.05)) == [0]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2 and all(line.startswith("epoch 1/3: 0 batch, ") for line in lines)  # no total known


def test_track_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere(monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(vireid.progress, "PLAIN_INTERVAL_SECONDS", 0.02)
    assert isinstance(track(range(3), "x", "img"), PlainProgress)  # pytest's stderr is not a terminal
    assert list(track(_slowly(3, 0.05), "x", "img")) == [0, 1, 2]
    assert "x: " in capsys.readouterr().out
    monkeypatch.setattr("sys.stderr", Terminal())
    bar = track(range(3), "x", "img")
    assert not isinstance(bar, PlainProgress) and list(bar) == [0, 1, 2]
    assert "x: 100%" in vireid.progress.sys.stderr.getvalue()
    silent = track(_slowly(3, 0.05), "x", "img", enabled=False)
    silent.set_postfix(loss=1)
    assert list(silent) == [0, 1, 2]
    assert capsys.readouterr().out == ""
