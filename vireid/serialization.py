"""Reading files written with torch.save, each failure one error naming the path."""

from __future__ import annotations

from pathlib import Path

import torch

from vireid.errors import UserError


def read_torch_file(
    path: str | Path, what: str, error: type[UserError], weights_only: bool, mmap: bool = False
) -> object:
    """The object stored at ``path``; ``error`` (naming the path and ``what`` was expected) if it cannot be read.
    ``mmap`` maps the tensors from the file instead of reading them: cheap when only the rest is wanted."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: expected {what}, but the file does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except Exception as cause:  # torch raises several types for a file that is not what it reads
        raise error(f"{path}: expected {what}, could not read it ({cause})") from cause
