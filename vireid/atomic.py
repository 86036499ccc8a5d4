"""Writing files atomically (a temporary name in the same folder, then a rename),
and checking, before any work, that a file or folder can be written at all.

A symbolic link is written through: its final target gets the new content and
the link stays. A write the system refuses half-way (a full disk, a file-size
limit, a read-only file system) is a WriteError naming the path and the
system's reason; the temporary file is removed and the file the path held
before is left as it was.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from vireid.errors import UserError


class WriteError(UserError):
    """A file the system refused to write (no space left, too large, read-only...)."""


WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})
"""The errors of a write that got under way and could not finish, whatever the file."""


def write_failure(error: BaseException) -> OSError | None:
    """The OSError of WRITE_FAILURES behind ``error`` (itself, or its cause or context,
    as where torch wraps it in a RuntimeError), or None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
            return error
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path`` (a link: its target), on
    error it is removed, and a refused write is a WriteError (see above). Partial files of
    ``path`` that a killed process left behind are removed first."""
    path = Path(path)
    target = written_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    temporary = partial_path(target)
    try:
        yield temporary
        os.replace(temporary, target)
    except Exception as error:
        failure = write_failure(error)
        if isinstance(error, OSError) and str(error.filename) in (str(temporary), str(target)):
            failure = error  # this file's own creation or rename
        if failure is None or isinstance(error, UserError):
            raise
        link = f" (a link to {target})" if target != path else ""
        raise WriteError(f"{path}: could not be written{link} ({failure.strerror})") from error
    finally:
        if temporary.exists():
            temporary.unlink()


def written_path(path: Path) -> Path:
    """Where writing ``path`` puts the bytes: ``path``, or for a symbolic link its final target
    (which may not exist yet); a UserError for a link whose target's folder does not exist."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise UserError(f"{path}: a symbolic link to {target}, whose folder does not exist")
    return target


def partial_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it: ``.NAME.partial-PID`` beside it."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


STALE_AFTER_SECONDS = 60.0
"""A partial untouched this long whose process is gone (on this machine) is a killed run's."""


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the partial files or folders of ``path`` that a killed process left behind
    (``kill -9``): its process is gone, or it is this very process's number from an earlier
    life (a restarted container), and nothing has written to it for a minute. Another
    process removing the same partial at the same time is no error."""
    removed = []
    for partial in path.parent.glob(f".{glob.escape(path.name)}.partial-*"):
        pid = partial.name.rsplit("-", 1)[1]
        if not pid.isdigit() or (int(pid) != os.getpid() and _alive(int(pid))):
            continue
        try:
            if time.time() - partial.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        removed.append(partial)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def require_writable(path: str | Path, kind: Literal["file", "folder"]) -> None:
    """A UserError naming ``path`` unless a ``kind`` can be written there: the nearest existing
    folder on its way must take a new file (tried, not guessed). Nothing is left behind."""
    path = Path(path)
    target = written_path(path)
    if kind == "file" and target.is_dir():
        raise UserError(f"{path}: expected a file to write, but it is a folder")
    if kind == "folder" and target.exists() and not target.is_dir():
        raise UserError(f"{path}: expected a folder to write into, but it is a file")
    folder = target if kind == "folder" else target.parent
    existing = next(candidate for candidate in (folder, *folder.parents) if candidate.exists())
    if not existing.is_dir():
        raise UserError(f"{path}: cannot be written, {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{path}: cannot be written, {existing} does not take new files ({error.strerror})") from error
