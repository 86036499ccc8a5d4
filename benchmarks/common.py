"""What every benchmark prints with its table (date, machine, versions, command), and what the
training-step benchmarks share: their model options, a batch held in memory, and device synchronisation."""

from __future__ import annotations

import argparse
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


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--config, --set, --device, --classes: which model a training-step benchmark runs, and where."""
    import torch

    parser.add_argument("--config", default="sysu_full")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--classes", type=int, default=395)


# A CPU rehearsal's training batch: 2 identities x 2 images per modality, the least the losses take (bf16
# on a CPU without native bf16 arithmetic runs about 150 times slower than fp32: whole batches took minutes)
QUICK_BATCH = ("train.identities_per_batch=2", "train.instances_per_modality=2")


def memory_batch(config, device):
    """(images, labels, modalities) of one training batch of ``config`` on ``device``: random images,
    P identities x K images in each modality, the visible half first (as the sampler orders them)."""
    import torch

    height, width = config.data.height, config.data.width
    batch = 2 * config.train.identities_per_batch * config.train.instances_per_modality
    images = torch.randn(batch, 3, height, width, device=device)
    modalities = torch.arange(batch, device=device) // (batch // 2)
    labels = (torch.arange(batch, device=device) % (batch // 2)) // config.train.instances_per_modality
    return images, labels, modalities


def synchronize(device) -> None:
    """Wait for the device's queued work (a GPU's), so that a clock read after it measures it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
