"""Refusing work that cannot fit in memory, before it starts: the estimate of what it
needs beside what this machine (or the GPU it runs on) has, in one line."""

from __future__ import annotations

import os
from pathlib import Path

from vireid.errors import UserError

_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
"""Where a container's memory limit is read (cgroup v2, v1); "max" or a huge number: none."""


def machine_memory() -> int:
    """Bytes of physical memory, or of the container's limit where that is lower."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in _CGROUP_LIMITS:
        try:
            limit = limit_file.read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
    return memory


def device_memory(device: object = None) -> tuple[int, str]:
    """Bytes of memory of ``device`` (a CUDA device: its own; else this machine's) and its name in a sentence."""
    if str(device).startswith("cuda"):
        import torch  # here: only for a GPU

        index = torch.device(device).index
        return torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index).total_memory, (
            str(device)
        )
    return machine_memory(), "this machine"


def readable_size(size: float) -> str:
    """``size`` bytes as people read them: '512 B', '1.5 KiB', '37 GiB' (two significant figures or more)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if size >= 10 or unit == "B" else f"{size:.1f} {unit}"


def require_memory(needed: float, what: str, device: object = None, error: type[UserError] = UserError) -> None:
    """``error`` unless ``needed`` bytes fit into the memory of ``device`` (default: this machine);
    ``what`` names the work and the key, flag or file it comes from."""
    available, owner = device_memory(device)
    if needed > available:
        raise error(f"{what} would need about {readable_size(needed)}; {owner} has {readable_size(available)}")


__all__ = ["device_memory", "machine_memory", "readable_size", "require_memory"]
