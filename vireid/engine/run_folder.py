"""A run folder belongs to one run: a new run starts only in a folder without one, a resumed run
writes only into its own folder (or a new one), and one process at a time writes into it (a lock
that the operating system drops when its process dies, so a killed run leaves no stale lock)."""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from vireid.errors import UserError

if TYPE_CHECKING:
    from vireid.config import ExperimentConfig

LOCK_NAME = ".vireid-train.lock"
RUN_FILES = ("last.pt", "config.yaml", "metrics.jsonl")
"""What a folder that holds a run has (any of them)."""


def check_run_folder(run_dir: Path, resume: str | Path | None) -> None:
    """A UserError unless ``run_dir`` may take this run: a new run needs a folder holding none; a
    resumed run writes into the checkpoint's own folder, or into one holding no run."""
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume is None:
        if (run_dir / "last.pt").exists():
            raise UserError(
                f"{run_dir}: already holds a run (last.pt); continue it with "
                f"--resume {run_dir / 'last.pt'} or choose another --out"
            )
        return
    own = Path(resume).resolve().parent
    if held and run_dir.resolve() != own:
        raise UserError(
            f"{run_dir}: holds another run ({', '.join(held)}); --resume {resume} continues its run in {own} "
            "or in a new folder, never over another run"
        )


@contextmanager
def claimed_run_folder(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the block runs; a UserError naming the process that holds it.
    A folder made here and left empty is removed again."""
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_NAME
    lock = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UserError(
                f"{run_dir}: another vireid train ({holder}) is writing into this run folder; "
                "wait for it to end or choose another --out"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}")
        lock.flush()
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        lock.close()
        if made and not any(run_dir.iterdir()):
            run_dir.rmdir()


def unfinished_run(run_dir: Path, config: ExperimentConfig) -> Path | None | bool:
    """Where a run of ``--seeds`` or of a sweep stands: None (not started), its last.pt (to continue), or
    False (finished, skipped). A run folder of another config is refused."""
    from vireid.engine.checkpoint import load_checkpoint  # here: the checkpoint module reads configs
    from vireid.recipe import load_config

    last = run_dir / "last.pt"
    if not last.exists():
        return None
    checkpoint = load_checkpoint(last, mmap=True)  # its config and epoch; the weights stay on disk
    if load_config(None, base=checkpoint.config) != config:
        raise UserError(f"{run_dir}: holds a run of another config; choose another --out")
    if checkpoint.epoch >= config.train.epochs and checkpoint.evaluated:
        print(f"{run_dir}: finished ({checkpoint.epoch} epochs), skipped")
        return False
    return last


__all__ = ["LOCK_NAME", "check_run_folder", "claimed_run_folder", "unfinished_run"]
