"""Where this process trains: the device, and under torchrun the process group."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from vireid.errors import UserError


@dataclass
class Environment:
    """Where this process trains: device, distributed rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        return str(self.device) + (f" x {self.world_size} processes" if self.distributed else "")


def checked_device(name: str) -> str:
    """``name`` if this machine has that device ("auto": the GPU if there is one, else the CPU),
    else a UserError saying what exists."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise UserError(f"--device: expected cpu, cuda, cuda:N or mps (or auto), got {name!r}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: PyTorch sees no Apple GPU on this machine; use --device cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
        index, count = int(name.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            raise UserError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return name


BACKEND_VARIABLE = "VIREID_DDP_BACKEND"
"""Environment variable naming the process group's backend (nccl or gloo) instead of the default."""


def setup_environment(device: str = "auto") -> Environment:
    """The device ("auto": the GPU if there is one), and the process group when
    started by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPUs, or the backend
    VIREID_DDP_BACKEND names. More processes than GPUs share them round-robin, which
    only gloo allows (``make gpu-check`` runs two processes on one GPU that way)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size > 1:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            index = local_rank % torch.cuda.device_count()
            torch.cuda.set_device(index)
            device = f"cuda:{index}"
        backend = os.environ.get(BACKEND_VARIABLE) or ("nccl" if device.startswith("cuda") else "gloo")
        if backend not in ("nccl", "gloo"):
            raise UserError(f"{BACKEND_VARIABLE}: expected nccl or gloo, got {backend!r}")
        if not dist.is_initialized():
            dist.init_process_group(backend)
        return Environment(torch.device(device), rank, world_size)
    return Environment(torch.device(device))


def average_gradients_over_ranks(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Under DDP: each of ``parameters`` has its gradient averaged over the ranks as backward computes
    it, as DDP does for the network it wraps. For a method's loss parameters (class centres...),
    which that wrapper never sees: without it each rank's copy would drift apart."""
    world_size = dist.get_world_size()

    def averaged(gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.clone()
        dist.all_reduce(gradient)  # every rank backpropagates the same graph: the hooks run in one order
        return gradient / world_size

    for parameter in parameters:
        if parameter.requires_grad:
            parameter.register_hook(averaged)


def parameter_checksums(*modules: torch.nn.Module) -> list[float]:
    """Every rank's sum of all parameter values of ``modules``: equal when the ranks are in sync."""
    values = [p.detach().double().sum() for module in modules for p in module.parameters()]
    checksum = torch.stack(values).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return [float(value) for value in gathered]


def barrier(environment: Environment) -> None:
    if environment.distributed:
        dist.barrier()


__all__ = [
    "Environment",
    "average_gradients_over_ranks",
    "barrier",
    "checked_device",
    "parameter_checksums",
    "setup_environment",
]
