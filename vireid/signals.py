"""SIGTERM (what job schedulers send before they kill) handled as Ctrl-C is: Terminated is raised in
the main process, so the same cleanup runs (temporary files removed, a run's lock released, the
resume command printed). A signal that lands where Python swallows exceptions (the at-fork hooks
that run while loader workers start), or while a DataLoader iterator is being built (an exception
there leaves a half-built iterator whose own cleanup then fails with a traceback), is not lost: it
is kept, and the training and extraction loops ask again between batches."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from vireid.errors import Terminated

_received = False


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread; elsewhere nothing changes), SIGTERM raises Terminated in
    this process; forked loader workers inherit the handler and ignore the signal (this process ends them)."""
    global _received
    if threading.current_thread() is not threading.main_thread():  # only it can set signal handlers
        yield
        return
    main_pid = os.getpid()

    def handle(signum, frame) -> None:
        global _received
        if os.getpid() == main_pid:
            _received = True
            if not _building_a_loader_iterator(frame):
                raise Terminated()

    _received = False
    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _received = False


_LOADER_MODULE = os.path.join("torch", "utils", "data", "dataloader.py")


def _building_a_loader_iterator(frame) -> bool:
    """Whether ``frame`` runs inside the constructor of one of torch's DataLoader iterators."""
    while frame is not None:
        if frame.f_code.co_name == "__init__" and frame.f_code.co_filename.endswith(_LOADER_MODULE):
            return True
        frame = frame.f_back
    return False


def stop_if_terminated() -> None:
    """Raise Terminated if SIGTERM arrived and its exception was swallowed on the way."""
    if _received:
        raise Terminated()
