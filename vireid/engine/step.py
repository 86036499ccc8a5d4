"""The training step: ``train_step`` is the one place a step is written (the trainer, the tests and
the benchmarks call it); ``ForwardAndLoss`` is what it calls, the network and the method's loss as
one module, which ``train.compile`` compiles into one graph with its backward pass.

How a step computes is the device's business, never the recipe's: ``Precision`` (autocast dtype,
memory format, clipping) and ``Compilation`` (eager, compiled, or compiled and replayed as CUDA
graphs) are resolved from ``train.*`` keys whose ``auto`` picks per device.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.profiler import record_function

from vireid.config import ConfigError, TrainConfig
from vireid.modality import ModalityLayout


@dataclass(frozen=True)
class Precision:
    """How a step computes: autocast dtype (None: fp32), memory format, gradient clipping."""

    dtype: torch.dtype | None = None
    channels_last: bool = False
    grad_clip: float = 0.0

    @staticmethod
    def of(config: TrainConfig, device: torch.device) -> "Precision":
        """``train.amp`` auto is bf16 on a GPU, fp32 on a CPU; ``train.channels_last`` auto is on for GPUs."""
        amp = config.amp if config.amp != "auto" else ("bf16" if device.type == "cuda" else "fp32")
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        channels_last = config.channels_last == "always" or (config.channels_last == "auto" and device.type == "cuda")
        return Precision(dtype, channels_last, config.grad_clip)

    def describe(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.dtype]


@dataclass(frozen=True)
class Compilation:
    """Whether the step is compiled (``train.compile``) and replayed as CUDA graphs (``train.cuda_graph``).

    Compiled, ForwardAndLoss is one graph (``fullgraph``: a method whose forward pass or loss breaks
    it is refused, not silently split), its backward pass compiled with it. With CUDA graphs
    (torch.compile's "reduce-overhead" mode) the forward and backward kernels of a step are launched
    as recorded graphs, the inputs copied into their static buffers. The optimizer's update stays
    outside: fused (``train.fused_optimizer``, on a GPU by default) it is a few kernel launches,
    and left eager it reads the schedule's learning rate as a plain number.
    """

    compiled: bool = False
    cuda_graph: bool = False

    @staticmethod
    def of(config: TrainConfig, device: torch.device) -> "Compilation":
        """Both ``auto`` settings are off for now: neither has yet been measured faster end to end on a
        GPU (benchmarks/speed_check.py times every variant), and compiling costs minutes on a CPU."""
        compiled = config.compile == "always"
        cuda_graph = config.cuda_graph == "always"
        if cuda_graph and device.type != "cuda":
            raise ConfigError(f"train.cuda_graph: always needs a CUDA device; this run trains on {device.type}")
        if cuda_graph and not compiled:
            raise ConfigError("train.cuda_graph: always replays the compiled step; it needs train.compile: always")
        return Compilation(compiled, cuda_graph)

    def describe(self) -> str:
        """What the run's opening line adds after its precision: nothing for an eager step."""
        return "" if not self.compiled else (", compiled, CUDA graphs" if self.cuda_graph else ", compiled")

    def apply(self, forward: "ForwardAndLoss") -> None:
        """Compile ``forward`` in place (nothing when eager)."""
        if self.compiled:
            forward.compile(fullgraph=True, mode="reduce-overhead" if self.cuda_graph else None)
            forward.replays_cuda_graphs = self.cuda_graph


class ForwardAndLoss(nn.Module):
    """The network and the method's loss as one module: (images, labels, modalities) -> the loss terms."""

    def __init__(self, model: nn.Module | Callable, loss_function: nn.Module | Callable):
        super().__init__()
        self.model = model
        self.loss_function = loss_function
        self.replays_cuda_graphs = False  # set by Compilation.apply

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor | ModalityLayout
    ) -> dict[str, torch.Tensor]:
        return self.loss_function(self.model(images, modalities), labels, modalities)


STEP_PHASES = ("vireid step: forward and loss", "vireid step: backward", "vireid step: optimizer")
"""The profiler ranges of a training step (benchmarks/speed_check.py reads where a step's time goes from them)."""


def train_step(
    forward: ForwardAndLoss,
    optimizers: list[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,  # (B, 3, H, W) on the model's device
    labels: torch.Tensor,  # (B,)
    modalities: torch.Tensor | ModalityLayout,  # (B,), or their layout (what training passes)
    precision: Precision = Precision(),
) -> dict[str, torch.Tensor]:
    """One optimisation step; returns the loss terms and ``total`` (detached).

    Nothing of the loss is read on the host here: a NaN or infinite loss is not looked at (it
    updates the weights like any other); the caller's LossTally finds it when it is read.
    """
    if forward.replays_cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()  # a new step: its graphs may overwrite the last one's outputs
    if precision.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(images.device.type, dtype=precision.dtype) if precision.dtype else contextlib.nullcontext()
    )
    with record_function(STEP_PHASES[0]), autocast:
        losses = forward(images, labels, modalities)
    with record_function(STEP_PHASES[1]):
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
    with record_function(STEP_PHASES[2]):
        if precision.grad_clip > 0:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(forward.model.parameters(), precision.grad_clip)
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
    return {name: value.detach() for name, value in losses.items()}


__all__ = ["Compilation", "ForwardAndLoss", "Precision", "STEP_PHASES", "train_step"]
