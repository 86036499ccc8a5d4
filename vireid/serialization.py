"""Reading files written with torch.save without running anything in them; each failure one error naming the path.

Every file is unpickled with ``torch.load(weights_only=True)``: only tensors,
numbers, strings, bools, None, lists, tuples and dicts (and the few classes a
caller allows, see ``read_torch_file``) are built. A pickle can name any
function to call while it is read (``os.system``, say); such a file is refused,
naming what it holds, and nothing of it runs.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Sequence, Union

import torch

from vireid.errors import UserError

AllowedGlobal = Union[Callable, tuple[Callable, str]]  # a class or function, or (it, "the module.name a file uses")


def _global_name(allowed: AllowedGlobal) -> str:
    if isinstance(allowed, tuple):
        return allowed[1]
    return f"{allowed.__module__}.{allowed.__qualname__}"


def _globals_named(path: Path) -> set[str] | None:
    """The classes and functions the file's pickle names beyond tensors, numbers, strings, lists,
    tuples and dicts, as ``module.name``; read from the pickle's opcodes, so nothing runs. None when
    the file cannot be scanned (not a torch.save zip file, or opcodes torch.save never writes)."""
    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # torch raises several types for a file it cannot scan; loading it then says why
        return None


def _unpickler_message(cause: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own words (torch wraps them in many lines of advice)."""
    message = str(cause).split("WeightsUnpickler error:", 1)[-1]
    return next((line.strip() for line in message.splitlines() if line.strip()), type(cause).__name__)


def _refused(path: Path, names: str, what: str, error: type[UserError]) -> UserError:
    return error(
        f"{path}: refused: it holds objects of {names}, which {what} never holds "
        f"(reading them could run any code); nothing of it was run"
    )


def _first_line(cause: Exception) -> str:
    return next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)


def read_torch_file(
    path: str | Path,
    what: str,
    error: type[UserError],
    mmap: bool = False,
    allowed_globals: Sequence[AllowedGlobal] = (),
) -> object:
    """The object stored at ``path``; ``error`` (naming the path and ``what`` was expected) if it
    cannot be read, or if reading it would build anything but tensors, numbers, strings, bools,
    None, lists, tuples and dicts: then nothing of it runs.

    ``allowed_globals``: classes and functions (or ``(it, "module.name")`` for a name it had in
    another version of its package) that older files of ``what`` hold; they are allowed while
    reading a file whose pickle names any of them and nothing else.
    ``mmap`` maps the tensors from the file instead of reading them: cheap when only the rest is wanted.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: expected {what}, but the file does not exist")
    named = _globals_named(path)
    allowed = {_global_name(entry) for entry in allowed_globals}
    if named and not named <= allowed:
        raise _refused(path, ", ".join(sorted(named - allowed)), what, error)
    try:
        with torch.serialization.safe_globals(list(allowed_globals) if named else []), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")  # such a file is refused just below
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as cause:
        message = _unpickler_message(cause)
        named_global = re.search(r"GLOBAL (\S+)", message)
        if named_global:
            raise _refused(path, named_global.group(1), what, error) from None
        operand = re.fullmatch(r"Unsupported operand (\S+)", message)
        if operand and zipfile.is_zipfile(path):  # torch.save's container around a pickle torch.save never writes
            raise error(
                f"{path}: refused: its pickle has opcode {operand.group(1)}, which torch.save never writes "
                f"(only an unpickler that could run any code reads it); nothing of it was run"
            ) from None
        raise error(f"{path}: expected {what}, could not read it ({message})") from None
    except Exception as cause:  # torch raises several types for a file that is not what it reads
        raise error(f"{path}: expected {what}, could not read it ({_first_line(cause)})") from cause
