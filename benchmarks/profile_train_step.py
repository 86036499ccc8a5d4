"""Where a training step's time goes: torch.profiler over steps of a config's model fed
from memory (the same ``train_step`` the trainer runs): how much of a step the device is
busy, how many kernels it launches, and the costliest operators. A script, not a test:

    python benchmarks/profile_train_step.py --config sysu_full --device cuda --append-to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_model_options, append_section, memory_batch  # noqa: E402

from vireid.engine.step import ForwardAndLoss, Precision, train_step  # noqa: E402
from vireid.engine.trainer import build_optimizer  # noqa: E402
from vireid.recipe import (  # noqa: E402
    build_loss,
    build_model,
    load_config,  # noqa: E402
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--rows", type=int, default=20, help="operators in the table")
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    config = load_config(arguments.config, ["model.pretrained=none", *arguments.set])
    images, labels, modalities = memory_batch(config, device)
    batch = len(images)
    torch.manual_seed(0)
    model = build_model(config, arguments.classes, load_weights=False).to(device).train()
    precision = Precision(torch.bfloat16 if arguments.precision == "bf16" else None, arguments.channels_last)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    loss_function = build_loss(config, arguments.classes, model)
    optimizer = build_optimizer(model, loss_function, config)

    scaler = torch.amp.GradScaler(device.type, enabled=False)

    def step() -> None:
        train_step(ForwardAndLoss(model, loss_function), optimizer, scaler, images, labels, modalities, precision)

    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        step()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for _ in range(arguments.steps):
        step()
    synchronize()
    rate = batch * arguments.steps / (time.perf_counter() - started)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(arguments.steps):
            step()
        synchronize()
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = profiler.key_averages()
    step_ms = 1e3 * batch / rate
    kernels = [event for event in averages if event.device_type == DeviceType.CUDA]  # not the operators above them
    busy_ms = sum(event.self_device_time_total for event in kernels) / 1e3 / arguments.steps
    launches = sum(event.count for event in averages if event.key.startswith("cuda") and "Launch" in event.key)
    table = averages.table(sort_by=sort_key, row_limit=arguments.rows)
    report = (
        f"Model: `{arguments.config}` at {config.data.height}×{config.data.width}, batch {batch}, {arguments.precision}"
        f"{', channels-last' if precision.channels_last else ''}: {rate:.0f} img/s unprofiled, a step of "
        f"{step_ms:.1f} ms; the device is busy {busy_ms:.1f} ms of it ({100 * busy_ms / step_ms:.0f} %), "
        f"{launches / arguments.steps:.0f} kernel launches per step.\n\n```\n{table}\n```"
    )
    print(report)
    if arguments.append_to:
        append_section(arguments.append_to, f"Training step profile ({config.name})", report, str(device))


if __name__ == "__main__":
    main()
