"""How fast vireid trains, in one command (about 5 minutes on a GPU): the engine's own training step
(vireid.engine.step.train_step, never a copy of it) in each variant, then a short end-to-end
`vireid train` projected to the whole recipe; one table, appended to BENCHMARKS.md with the device named.

    python benchmarks/speed_check.py --append-to BENCHMARKS.md              # on a GPU (make gpu-check runs it)
    python benchmarks/speed_check.py --device cpu --quick                   # a rehearsal on the CPU (make test-slow)

Per step variant (eager, compiled, compiled and replayed as CUDA graphs; fp32 and bf16 autocast, channels-last
where the device uses it):
images/s, TFLOP/s (the step's FLOPs counted by torch's FlopCounterMode), the share of the measured matmul
ceiling (bf16's on a GPU, fp32's on a CPU), peak memory, and on a GPU the kernels launched and the host
synchronisations per step (``torch.cuda.set_sync_debug_mode``); where the time of an eager step goes, from the
profiler's ranges around the real step (STEP_PHASES); the graph breaks of the forward pass with its loss
(``torch._dynamo.explain``). The compiled variants are the engine's own train.compile and train.cuda_graph.

End to end: `vireid train CONFIG` for a few epochs on a synthetic SYSU-MM01 set, whose epoch length and
evaluations the projection rescales to the recipe on the real SYSU-MM01 (696 steps an epoch, its epochs and
its evaluation schedule).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch._dynamo
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import matmul_ceiling, peak_memory_gib  # noqa: E402
from common import QUICK_BATCH, append_section, memory_batch, synchronize  # noqa: E402

from vireid.engine.selection import evaluated_epochs  # noqa: E402
from vireid.engine.step import STEP_PHASES, Compilation, ForwardAndLoss, Precision, train_step  # noqa: E402
from vireid.engine.trainer import build_optimizer  # noqa: E402
from vireid.modality import ModalityLayout  # noqa: E402
from vireid.recipe import build_loss, build_model, load_config  # noqa: E402

SYSU_STEPS_PER_EPOCH = 696  # the real SYSU-MM01: int(22258 visible images / 32) + 1 batches (the reference sampler)
NOT_MEASURED = "–"


def step_variants(device: torch.device, quick: bool) -> list[tuple[str, Precision, Compilation]]:
    """(name, precision, compilation) of each variant timed on ``device``: the engine's own settings
    (train.amp, train.channels_last, train.compile, train.cuda_graph)."""
    channels_last = device.type == "cuda"
    bf16 = Precision(torch.bfloat16, channels_last)
    variants = [("eager fp32", Precision(), Compilation()), ("eager bf16", bf16, Compilation())]
    if not quick:
        variants.append(("compiled bf16", bf16, Compilation(compiled=True)))
    if not quick and device.type == "cuda":
        variants.append(("compiled + CUDA graphs bf16", bf16, Compilation(compiled=True, cuda_graph=True)))
    return variants


class StepBench:
    """One config's training step on ``device``: a batch held in memory and a fresh model per variant."""

    def __init__(self, config_name: str, overrides: list[str], device: torch.device, classes: int):
        self.config = load_config(config_name, ["model.pretrained=none", *overrides])
        self.device, self.classes = device, classes
        self.images, self.labels, modalities = memory_batch(self.config, device)
        self.layout = ModalityLayout.of(modalities.cpu(), device)

    def fresh(self):
        torch.manual_seed(0)
        model = build_model(self.config, self.classes, load_weights=False).to(self.device).train()
        loss_function = build_loss(self.config, self.classes, model).to(self.device)
        return model, loss_function, build_optimizer(model, loss_function, self.config)

    def flops(self) -> int:
        """FLOPs of one step's forward, loss and backward (the optimizer's few are left out)."""
        model, loss_function, _ = self.fresh()
        with FlopCounterMode(display=False) as counter:
            loss_function(model(self.images, self.layout), self.labels, self.layout)["total"].backward()
        return counter.get_total_flops()

    def graph_breaks(self) -> list[str]:
        model, loss_function, _ = self.fresh()

        def forward_and_loss(images, labels, layout):
            return loss_function(model(images, layout), labels, layout)["total"]

        explanation = torch._dynamo.explain(forward_and_loss)(self.images, self.labels, self.layout)
        torch._dynamo.reset()
        return [str(reason.reason).splitlines()[0] for reason in explanation.break_reasons]

    def time(self, precision: Precision, compilation: Compilation, steps: int) -> dict:
        """Seconds per step and peak memory over ``steps`` steps, the milliseconds of each STEP_PHASES range
        in one more, and on a GPU the kernels and host synchronisations of one step."""
        model, loss_function, optimizers = self.fresh()
        if precision.channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward = ForwardAndLoss(model, loss_function)
        compilation.apply(forward)
        scaler = torch.amp.GradScaler(self.device.type, enabled=False)

        def step():
            train_step(forward, optimizers, scaler, self.images, self.labels, self.layout, precision)

        for _ in range(3):  # warm-up (compilation; CUDA graphs record on the third call)
            step()
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(self.device)
        seconds = (time.perf_counter() - started) / steps
        measured = {"seconds": seconds, "memory": peak_memory_gib(self.device)}
        measured["kernels"], measured["phases"] = profile_step(step, self.device)
        if self.device.type == "cuda":
            measured["syncs"] = count_host_syncs(step)
        torch._dynamo.reset()
        return measured


def count_host_syncs(step) -> int:
    """The host synchronisations one call of ``step`` makes (CUDA's sync debug mode warns at each)."""
    synchronize(torch.device("cuda"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def profile_step(step, device: torch.device) -> tuple[int | None, dict[str, float]]:
    """Kernels launched by one call of ``step`` (GPU only) and the milliseconds of each STEP_PHASES range."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        step()
        synchronize(device)
    events = profiler.events()
    kernels = (
        sum(event.device_type == torch.autograd.DeviceType.CUDA for event in events) if len(activities) > 1 else None
    )
    phases = {}
    for average in profiler.key_averages():
        if average.key in STEP_PHASES:
            device_time = getattr(average, "device_time_total", 0.0) if device.type == "cuda" else 0.0
            phases[average.key] = max(average.cpu_time_total, device_time) / 1000
    return kernels, phases


def end_to_end(config_name: str, overrides: list[str], device: torch.device, quick: bool, epochs: int) -> dict:
    """`vireid train` of ``config_name`` for ``epochs`` epochs on a synthetic SYSU-MM01 set, and its
    projection to the config's whole recipe on the real SYSU-MM01."""
    from vireid.synthetic.writer import write_synthetic_dataset

    config = load_config(config_name, overrides)
    with tempfile.TemporaryDirectory() as folder:
        ids, images = (24, 6) if quick else (491, 30)  # 395 training identities as SYSU-MM01 has
        root = write_synthetic_dataset("sysu", Path(folder) / "SYSU-MM01", ids, images, workers=4).root
        run = Path(folder) / "run"
        command = [sys.executable, "-m", "vireid.cli", "train", config_name, "--device", str(device), "--quiet"]
        command += ["--out", str(run), "--set", f"data.root={root}", "--set", "model.pretrained=none"]
        command += ["--set", f"train.epochs={epochs}", "--set", "train.eval_every=1", "--set", "train.eval_offset=0"]
        for override in overrides:
            command += ["--set", override]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs_done = [record for record in records if record.get("kind") == "epoch"]
    steps = [record["step"] - previous for record, previous in zip(epochs_done, [0] + [r["step"] for r in epochs_done])]
    steady = slice(1, None) if len(epochs_done) > 1 else slice(None)  # the first epoch warms up (cuDNN, caches)
    step_seconds = sum(record["seconds"] for record in epochs_done[steady]) / sum(steps[steady])
    # what is not stepping (start-up, evaluations, checkpoints), per epoch: every epoch here is evaluated
    overhead_seconds = (wall - sum(record["seconds"] for record in epochs_done)) / len(epochs_done)
    recipe = config.train
    evaluations = len(evaluated_epochs(recipe))
    projected = recipe.epochs * SYSU_STEPS_PER_EPOCH * step_seconds + evaluations * overhead_seconds
    images_per_second = sum(record["images_per_second"] for record in epochs_done[steady]) / len(epochs_done[steady])
    return {
        "epochs": len(epochs_done),
        "wall": wall,
        "images_per_second": images_per_second,
        "step_seconds": step_seconds,
        "overhead_seconds": overhead_seconds,
        "projected_minutes": projected / 60,
        "recipe": f"{recipe.epochs} epochs x {SYSU_STEPS_PER_EPOCH} steps, {evaluations} evaluations",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="sysu_full")
    parser.add_argument("--device", default="cuda", help="cuda (default; without CUDA: one line, exit 0) or cpu")
    parser.add_argument("--quick", action="store_true", help="a rehearsal: the tiny config, few steps, 2 short epochs")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (after 2 of warm-up)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the end-to-end run")
    parser.add_argument("--append-to")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config override of the end-to-end run"
    )
    arguments = parser.parse_args()
    if arguments.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "speed-check: no CUDA device here (torch.cuda.is_available() is False); nothing measured, nothing written"
        )
        return 0
    device = torch.device(arguments.device)
    config_name = "tiny" if arguments.quick else arguments.config
    sizes = ["data.height=32", "data.width=16"] if arguments.quick else []
    steps = 2 if arguments.quick else arguments.steps
    bench = StepBench(
        config_name, sizes + (list(QUICK_BATCH) if arguments.quick else []), device, 16 if arguments.quick else 395
    )
    flops = bench.flops()
    ceiling_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ceiling = matmul_ceiling(device, ceiling_dtype, 8192 if device.type == "cuda" else 1024)
    ceiling_name = "bf16" if device.type == "cuda" else "fp32"
    batch = len(bench.images)
    rows = [
        f"| step variant ({config_name}, batch {batch}, {bench.config.data.height}x{bench.config.data.width}) "
        f"| img/s | TFLOP/s | % of {ceiling_name} ceiling | peak GiB | kernels/step | host syncs/step |",
        "|---|---|---|---|---|---|---|",
    ]
    profiled = "eager bf16" if device.type == "cuda" else "eager fp32"  # the precision vireid train uses there
    for name, precision, compilation in step_variants(device, arguments.quick):
        measured = bench.time(precision, compilation, steps)
        if name == profiled:
            phases = measured["phases"]
        tflops = flops / measured["seconds"] / 1e12
        rows.append(
            f"| {name} | {batch / measured['seconds']:.1f} | {tflops:.3g} | {100 * tflops / ceiling:.1f} "
            f"| {measured['memory']:.2f} | {NOT_MEASURED if measured['kernels'] is None else measured['kernels']} "
            f"| {measured.get('syncs', NOT_MEASURED)} |"
        )
    breaks = bench.graph_breaks()
    shares = ", ".join(f"{name.split(': ')[1]} {milliseconds:.0f} ms" for name, milliseconds in phases.items())
    lines = [
        "\n".join(rows),
        f"Step FLOPs (forward, loss, backward): {flops / 1e12:.3f} TFLOP; measured {ceiling_name} matmul ceiling "
        f"{ceiling:.2f} TFLOP/s; TFLOP/s counts the same FLOPs in every variant.",
        f"Where an {profiled} step's time goes (profiler ranges): {shares}.",
        f"Graph breaks in the forward pass with its loss: {len(breaks)}"
        + (f" ({'; '.join(sorted(set(breaks)))})" if breaks else ""),
    ]
    e2e_overrides = sizes + (["train.steps_per_epoch=3", "train.eval_trials=1"] if arguments.quick else [])
    e2e_overrides += arguments.set
    result = end_to_end(config_name, e2e_overrides, device, arguments.quick, 2 if arguments.quick else arguments.epochs)
    settings = "".join(f" --set {item}" for item in arguments.set)
    lines.append(
        f"End to end: `vireid train {config_name}{settings}`, {result['epochs']} epochs on synthetic SYSU-MM01 in "
        f"{result['wall']:.0f} s: {result['images_per_second']:.0f} img/s after the first epoch, "
        f"{1000 * result['step_seconds']:.0f} ms a step, {result['overhead_seconds']:.1f} s per epoch besides "
        f"the steps (start-up, evaluation, checkpoint; every epoch evaluated here). Projected to the recipe "
        f"on SYSU-MM01 ({result['recipe']}): {result['projected_minutes']:.1f} minutes."
    )
    table = "\n\n".join(lines)
    print(table)
    if arguments.append_to:
        title = f"Speed check ({config_name}{', quick rehearsal' if arguments.quick else ''})"
        append_section(arguments.append_to, title, table, str(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
