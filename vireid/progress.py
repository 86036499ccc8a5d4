"""Progress of long work: a tqdm bar on a terminal, plain periodic lines anywhere else.

Both go to standard error, so they never mix with a command's results on
standard output. A bar is drawn when standard error is a terminal; in a log
file, under CI or nohup, the same loop prints one plain line every
``PLAIN_INTERVAL_SECONDS`` of work (``extract: 12/40 batch (30 %), 31 s``), from
a timer thread, so that a slow first batch is never silent either.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Iterable, Iterator, TypeVar

Item = TypeVar("Item")

PLAIN_INTERVAL_SECONDS = 30.0


class PlainProgress:
    """Iterates ``items`` and, while it does, prints where it is every ``interval`` seconds."""

    def __init__(
        self,
        items: Iterable[Item],
        description: str,
        unit: str,
        interval: float,
        total: int | None = None,
        stream: IO[str] | None = None,
    ):
        self.items = items
        self.stream = stream
        self.description = description
        self.unit = unit
        self.interval = interval
        self.total = total if total is not None else _length(items)
        self.done = 0
        self.postfix = ""
        self.started = time.perf_counter()

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{name} {value}" for name, value in values.items())

    def line(self) -> str:
        count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.description}: {count}{share}, {time.perf_counter() - self.started:.0f} s{postfix}"

    def _report_until(self, finished: threading.Event) -> None:
        while not finished.wait(self.interval):
            try:
                print(self.line(), file=self.stream or sys.stderr, flush=True)
            except OSError:  # the reader went away (``| head``): stop reporting, quietly
                return

    def __iter__(self) -> Iterator[Item]:
        items = iter(self.items)  # a DataLoader forks its workers here, before the reporter thread exists
        finished = threading.Event()
        reporter = threading.Thread(target=self._report_until, args=(finished,), daemon=True)
        self.started = time.perf_counter()
        reporter.start()
        try:
            for item in items:
                yield item
                self.done += 1
        finally:
            finished.set()
            reporter.join()

    def __len__(self) -> int:
        return self.total or 0


def _length(items: Iterable) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def track(items: Iterable[Item], description: str, unit: str, enabled: bool = True, leave: bool = True):
    """``items`` with progress: a tqdm bar on a terminal, PlainProgress lines otherwise,
    nothing when not ``enabled``. Either way the result has ``set_postfix``."""
    from tqdm import tqdm

    if enabled and not sys.stderr.isatty():
        return PlainProgress(items, description, unit, PLAIN_INTERVAL_SECONDS)
    return tqdm(items, desc=description, unit=unit, disable=not enabled, leave=leave)


__all__ = ["PLAIN_INTERVAL_SECONDS", "PlainProgress", "track"]
