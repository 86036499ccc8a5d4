"""What every benchmark prints with its table: date, machine, versions, command."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path


def environment_line(device: str = "cpu") -> str:
    import numpy
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name()})"
    return (
        f"{datetime.date.today().isoformat()} · {platform.machine()} {platform.processor() or platform.system()}, "
        f"{os.cpu_count()} cores · Python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {numpy.__version__} · device {device}"
    )


def append_section(path: str | Path, title: str, table: str, device: str = "cpu") -> None:
    """Append a dated section with the table and the command that produced it."""
    command = " ".join(["python", *sys.argv])
    section = f"\n## {title}\n\n{environment_line(device)}\n\nCommand: `{command}`\n\n{table}\n"
    with open(path, "a") as handle:
        handle.write(section)
