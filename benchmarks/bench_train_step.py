"""Training-step throughput of a config's model: images/s, peak memory, and the
share of the hardware's measured matmul ceiling, for fp32 / bf16 autocast,
channels-last and torch.compile. A script, not a test:

    python benchmarks/bench_train_step.py --config sysu_full --device cuda --append-to BENCHMARKS.md
    python benchmarks/bench_train_step.py --config tiny --loader-root runs/demo/data/SYSU-MM01

With ``--loader-root`` it also times the same steps fed by the real data loader
(2 workers, real augmentations): equal rates mean training is not loader-bound.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_model_options, append_section, memory_batch, synchronize  # noqa: E402

from vireid.data.cache import image_cache  # noqa: E402
from vireid.data.dataset import SplitDataset  # noqa: E402
from vireid.data.device_augment import BatchAugment  # noqa: E402
from vireid.data.sampler import CrossModalityBatchSampler  # noqa: E402
from vireid.data.transforms import train_transform  # noqa: E402
from vireid.datasets.sysu import sysu_train_split  # noqa: E402
from vireid.engine.step import ForwardAndLoss, Precision, train_step  # noqa: E402
from vireid.engine.trainer import build_optimizer  # noqa: E402
from vireid.recipe import (  # noqa: E402
    build_loss,
    build_model,
    load_config,  # noqa: E402
)


def matmul_ceiling(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """Measured TFLOP/s of a square matmul: the practical ceiling of the hardware."""
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    repeats = 10 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB on Linux)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--variants", nargs="+", default=["fp32", "bf16", "bf16+channels_last", "bf16+channels_last+compile"]
    )
    parser.add_argument(
        "--loader-root", help="also time steps fed by the real loader from this SYSU-MM01-layout folder"
    )
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[2])
    parser.add_argument("--loader-cache", help="a cache folder: also time the loader reading the decoded-image cache")
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    config = load_config(arguments.config, arguments.set)
    height, width = config.data.height, config.data.width
    images, labels, modalities = memory_batch(config, device)
    batch = len(images)

    def fresh_model():
        """The network, its loss (whose parameters, if any, the optimizer trains) and the optimizer."""
        torch.manual_seed(0)
        model = build_model(config, arguments.classes, load_weights=False).to(device).train()
        loss_function = build_loss(config, arguments.classes, model).to(device)
        return model, loss_function, build_optimizer(model, loss_function, config)

    model, loss_function, _ = fresh_model()
    with FlopCounterMode(display=False) as counter:
        loss_function(model(images, modalities), labels, modalities)["total"].backward()
    step_flops = counter.get_total_flops()
    ceilings = {"fp32": matmul_ceiling(device, torch.float32, 4096 if device.type == "cuda" else 1024)}
    if device.type == "cuda":
        ceilings["bf16"] = matmul_ceiling(device, torch.bfloat16, 8192)

    def time_steps(variant: str, batches) -> tuple[float, float]:
        model, loss_function, optimizer = fresh_model()
        precision = Precision(torch.bfloat16 if "bf16" in variant else None, "channels_last" in variant)
        if precision.channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward = ForwardAndLoss(torch.compile(model) if "compile" in variant else model, loss_function)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step(step_images, step_labels, step_modalities):
            train_step(forward, optimizer, scaler, step_images, step_labels, step_modalities, precision)

        iterator = iter(batches)
        step(*next(iterator))  # warm-up (and compilation)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(arguments.steps):
            step(*next(iterator))
        synchronize(device)
        return batch * arguments.steps / (time.perf_counter() - started), peak_memory_gib(device)

    def from_memory():
        while True:
            yield images, labels, modalities

    rows = [
        "| model | input | batch | variant | source | images/s | "
        f"peak memory (GiB) | TFLOP/s | of {device.type} ceiling |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def add_row(variant: str, source: str, rate: float, memory: float) -> None:
        achieved = step_flops * rate / batch / 1e12
        ceiling = ceilings["bf16" if "bf16" in variant and "bf16" in ceilings else "fp32"]
        rows.append(
            f"| {config.name} | {height}×{width} | {batch} | {variant} | {source} | {rate:.1f} | {memory:.2f} | "
            f"{achieved:.2f} | {100 * achieved / ceiling:.0f} % |"
        )
        print(rows[-1], flush=True)

    for variant in arguments.variants:
        add_row(variant, "memory", *time_steps(variant, from_memory()))
    if arguments.loader_root:
        split = sysu_train_split(arguments.loader_root)
        sampler = CrossModalityBatchSampler(
            split.labels,
            split.modalities,
            config.train.identities_per_batch,
            config.train.instances_per_modality,
            seed=0,
            num_batches=arguments.steps + 1,
        )
        transform = train_transform(height, width, config.train.padding)
        no_augment = lambda images: images  # noqa: E731
        sources = [("decode files", SplitDataset(split, transform), no_augment)]
        if arguments.loader_cache:
            decoded = image_cache(split, height, width, arguments.loader_cache)
            sources.append(("cache", SplitDataset(split, transform, decoded), no_augment))
            device_augment = BatchAugment(config.train.padding, torch.Generator().manual_seed(0))
            sources.append(("cache + augment on device", SplitDataset(split, None, decoded), device_augment))
        for source, dataset, augment in sources:
            for workers in arguments.loader_workers:
                loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
                loaded = ((augment(b[0].to(device)), b[1].to(device), b[2].to(device)) for b in loader)
                add_row(
                    arguments.variants[0],
                    f"loader: {source}, {workers} workers",
                    *time_steps(arguments.variants[0], loaded),
                )
    notes = (
        f"Forward + backward of one step: {step_flops / 1e12:.3f} TFLOP (torch.utils.flop_counter). "
        + "Measured matmul ceiling: "
        + ", ".join(f"{name} {value:.2f} TFLOP/s" for name, value in ceilings.items())
        + "."
    )
    table = "\n".join(rows) + "\n\n" + notes
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, f"Training step ({config.name})", table, str(device))


if __name__ == "__main__":
    main()
