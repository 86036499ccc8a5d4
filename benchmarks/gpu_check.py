"""`make gpu-check`: every CUDA path of vireid run and checked on the GPU, in a few minutes, with a
dated table appended to BENCHMARKS.md that names the GPU. Without CUDA it says so in one line and
exits 0 (CI calls it). A script, not a test:

    python benchmarks/gpu_check.py [--append-to BENCHMARKS.md]
    python benchmarks/gpu_check.py --device cpu --quick     # the same checks, small, on the CPU (a rehearsal;
                                                            # without fp16 and compile, slow on a CPU)

Each check is a row: what ran, whether its result is right, its figures, its seconds.

1. training steps of the paper's model (``sysu_full``: ResNet-50, 288x144, batch 64) from memory in
   fp32, bf16 autocast, fp16 autocast with the GradScaler, bf16 channels-last, and bf16 channels-last
   under ``torch.compile``: every loss finite, the first step's loss within 5 % of fp32's (same model,
   same batch); images/s and the share of the measured matmul ceiling of the step's precision;
   then DEEN's (``sysu_deen``: 384x144, batch 48) in fp32 and bf16 autocast, checked alike;
2. one model's test features in fp32 and in bf16 autocast: cosine similarity of each image's pair
   at least 0.99; the same for DEEN's six-block feature;
3. ``vireid train`` of the paper's model from random weights on synthetic data, whole epochs, decoded-image
   cache and augmentation on the device, 2 epochs evaluated after each: both evaluations score (finite
   features); then 1 epoch and ``--resume`` to 2: the resumed run ends at the same epoch and step, with
   finite losses (GPU kernels are not bit-reproducible, so parameters are compared, not required equal);
4. DDP: ``torchrun`` with 2 processes, NCCL on 2 GPUs, else gloo with both processes on GPU 0
   (``VIREID_DDP_BACKEND=gloo``): the parameters of both ranks identical at the end;
5. ``vireid test --device cuda --rerank`` against ``--device cpu`` on the same checkpoint, with TF32
   convolutions off for the comparison: the test features' cosine at least 0.999 per image; then one
   feature file scored and re-ranked on the GPU and on the CPU (``vireid evaluate``): within 0.5 points;
6. ``vireid extract --device cuda`` against ``--device cpu``: cosine at least 0.999 per image;
7. ONNX export of the checkpoint trained on the GPU (the export itself runs on the CPU): ONNX Runtime
   against PyTorch, max abs difference below 1e-3;
8. the AGW reference's training loop against vireid's (reference_train_loop.py) at 288x144, each
   loop's images/s and its share of time waiting for data.

How fast the step is, and where its time goes, is benchmarks/speed_check.py's table, which `make
gpu-check` runs after this one (from the profiler's ranges around the engine's own step).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import QUICK_BATCH, append_section, memory_batch, synchronize  # noqa: E402

FEATURE_AGREEMENT = 0.99  # cosine of fp32 and bf16 features of one image
DEVICE_AGREEMENT = 0.999  # cosine of one image's features extracted on the GPU and on the CPU
METRIC_AGREEMENT = 0.5  # points (percent) between GPU- and CPU-scored figures
ONNX_AGREEMENT = 1e-3  # max abs difference of ONNX Runtime and PyTorch features
DEEN_QUICK = ("model.backbone=resnet18", "data.height=64", "data.width=32", *QUICK_BATCH)  # DEEN's network, CPU-sized
LOSS_AGREEMENT = 0.05  # relative gap of a low-precision variant's first loss to fp32's, same model and batch


class Checks:
    """The rows of the table: each check's name, verdict, figures and seconds."""

    def __init__(self):
        self.rows: list[tuple[str, bool, str, float]] = []

    def run(self, name: str, check) -> None:
        """Run ``check()`` -> (ok, figures); an exception is a failed row with its message."""
        started = time.perf_counter()
        try:
            ok, figures = check()
        except Exception as error:  # a check that breaks is a finding, not the end of the others
            ok, figures = False, f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        self.rows.append((name, ok, figures, time.perf_counter() - started))
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {figures} ({self.rows[-1][3]:.0f} s)", flush=True)

    def table(self) -> str:
        lines = ["| check | result | figures | seconds |", "|---|---|---|---|"]
        lines += [
            f"| {name} | {'ok' if ok else 'FAIL'} | {figures} | {seconds:.0f} |"
            for name, ok, figures, seconds in self.rows
        ]
        return "\n".join(lines)

    @property
    def all_ok(self) -> bool:
        return all(ok for _, ok, _, _ in self.rows)


EXACT_CONVOLUTIONS = {"NVIDIA_TF32_OVERRIDE": "0"}
"""For runs compared with the CPU's: cuDNN convolutions without TF32 (its default on a GPU)."""


def run_command(command: list[str], environment: dict | None = None) -> str:
    """Run ``command`` (at most 300 s); its output, or a RuntimeError with its last error line."""
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(environment or {})}, timeout=300
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(next((line for line in reversed(lines) if "Error" in line), lines[-1]))
    return done.stdout


def vireid(*arguments: str, environment: dict | None = None) -> str:
    """Run the vireid command line in a fresh process (see run_command)."""
    return run_command([sys.executable, "-m", "vireid.cli", *arguments, "--quiet"], environment)


def release(device: torch.device) -> None:
    """Give back what the checks in this process hold: compiled graphs and cached GPU memory."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def step_matrix(config_name: str, device: torch.device, steps: int, variants: list[str], overrides=()):
    """Check 1: the training steps of each precision variant, from a batch held in memory."""
    from bench_train_step import matmul_ceiling
    from torch.utils.flop_counter import FlopCounterMode

    from vireid.engine.step import ForwardAndLoss, Precision, train_step
    from vireid.engine.trainer import build_optimizer
    from vireid.recipe import build_loss, build_model, load_config

    config = load_config(config_name, ["model.pretrained=none", *overrides])
    images, labels, modalities = memory_batch(config, device)
    size = 8192 if device.type == "cuda" else 1024
    ceilings = {dtype: matmul_ceiling(device, dtype or torch.float32, size) for dtype in (None, torch.bfloat16)}
    ceilings[torch.float16] = ceilings[torch.bfloat16]  # the same tensor-core rate
    first_losses: dict[str, float] = {}  # the first step's loss of each variant: precision must not move it much
    settings = {
        "fp32": (None, False, False),
        "bf16": (torch.bfloat16, False, False),
        "fp16 + GradScaler": (torch.float16, False, False),
        "bf16 channels-last": (torch.bfloat16, True, False),
        "bf16 channels-last compile": (torch.bfloat16, True, True),
    }

    def check(variant: str):
        def run():
            dtype, channels_last, compiled = settings[variant]
            torch.manual_seed(0)
            model = build_model(config, 395, load_weights=False).to(device).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            loss = build_loss(config, 395, model)
            optimizer = build_optimizer(model, loss, config)
            scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
            stepped = ForwardAndLoss(torch.compile(model) if compiled else model, loss)
            precision = Precision(dtype, channels_last)
            totals = [train_step(stepped, optimizer, scaler, images, labels, modalities, precision)["total"]]
            with FlopCounterMode(display=False) as counter:
                train_step(ForwardAndLoss(model, loss), optimizer, scaler, images, labels, modalities, precision)
            synchronize(device)
            started = time.perf_counter()
            for _ in range(steps):
                totals.append(train_step(stepped, optimizer, scaler, images, labels, modalities, precision)["total"])
            synchronize(device)
            seconds = time.perf_counter() - started
            finite = all(bool(torch.isfinite(total)) for total in totals)
            first_losses[variant] = totals[0].item()
            drift = abs(totals[0].item() / first_losses.get("fp32", totals[0].item()) - 1)
            rate = steps * len(images) / seconds
            ceiling = ceilings[dtype]
            share = counter.get_total_flops() * steps / seconds / 1e12 / ceiling
            losses = f"loss {totals[0].item():.3f} -> {totals[-1].item():.3f} ({100 * drift:.2f} % from fp32's first)"
            losses += f", loss scale {scaler.get_scale():g}" if scaler.is_enabled() else ""
            figures = f"{rate:.0f} img/s, {100 * share:.0f} % of the {ceiling:.3g} TFLOP/s {_name(dtype)} ceiling"
            return finite and drift < LOSS_AGREEMENT, f"{figures}; {losses}"

        return run

    return [
        (f"train step, {config.name} {config.data.height}x{config.data.width}, {variant}", check(variant))
        for variant in variants
    ]


def _name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def feature_agreement(config_name: str, device: torch.device, overrides=()):
    """Check 2: fp32 and bf16-autocast test features of one model."""
    from vireid.engine.extract import batch_features
    from vireid.recipe import build_model, load_config

    config = load_config(config_name, ["model.pretrained=none", *overrides])
    torch.manual_seed(0)
    model = build_model(config, 395, load_weights=False).to(device).eval()
    images, _, modalities = memory_batch(config, device)
    plain = batch_features(model, images, modalities, config)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low = batch_features(model, images, modalities, config).float()
    cosine = torch.nn.functional.cosine_similarity(plain, low, dim=1)  # features scored by dot are not unit
    return bool(
        cosine.min() >= FEATURE_AGREEMENT
    ), f"cosine min {cosine.min():.4f}, mean {cosine.mean():.4f} (>= {FEATURE_AGREEMENT})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a rehearsal on the CPU: the tiny config for the step checks, the paper's model at 64x32 end to end",
    )
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    if arguments.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check, nothing written")
        return 0
    device = torch.device(arguments.device)
    config_name = "tiny" if arguments.quick else "sysu_full"
    steps = 2 if arguments.quick else 10
    variants = ["fp32", "bf16", "fp16 + GradScaler", "bf16 channels-last", "bf16 channels-last compile"]
    checks = Checks()
    quick_variants = ["fp32", "bf16", "bf16 channels-last"]
    small, deen = (QUICK_BATCH, DEEN_QUICK) if arguments.quick else ((), ())
    for name, check in step_matrix(config_name, device, steps, quick_variants if arguments.quick else variants, small):
        checks.run(name, check)
    for name, check in step_matrix("sysu_deen", device, steps, ["fp32", "bf16"], deen):
        checks.run(name, check)
    checks.run("fp32 and bf16 test features agree", lambda: feature_agreement(config_name, device, small))
    checks.run("fp32 and bf16 DEEN test features agree", lambda: feature_agreement("sysu_deen", device, deen))
    release(device)
    with tempfile.TemporaryDirectory() as folder:
        end_to_end(Path(folder), device, arguments.quick, checks)
    table = checks.table()
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, "GPU check (make gpu-check)", table, str(device))
    return 0 if checks.all_ok else 1


def end_to_end(folder: Path, device: torch.device, quick: bool, checks: Checks) -> None:
    """Checks 3 to 8: the command line on synthetic data."""
    from vireid.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from vireid.evaluation.feature_file import load_features
    from vireid.modality import Modality
    from vireid.retrieval.export import export_onnx, max_abs_difference
    from vireid.synthetic.writer import write_synthetic_dataset

    root = write_synthetic_dataset("sysu", folder / "SYSU-MM01", 24 if quick else 60, 6, workers=2).root
    # the paper's model as a user trains it, from random weights (no ImageNet download here): on the GPU whole
    # epochs of the data with the config's warm-up; the CPU rehearsal on ResNet-18 at 64x32, 4 steps an epoch
    # (the same commands; ResNet-50's overflowing BatchNorm averages are tests/test_batch_norm.py's)
    config = "sysu_full"
    common = ["--set", f"data.root={root}", "--set", "model.pretrained=none"]
    if quick:
        common += ["--set", "model.backbone=resnet18", "--set", "data.height=64", "--set", "data.width=32"]
        common += ["--set", "train.steps_per_epoch=4"]
    common += [
        "--set",
        "train.eval_every=0",
        "--set",
        f"train.cache_dir={folder / 'cache'}",
        "--set",
        "train.workers=2",
    ]
    common += ["--device", str(device)]
    straight, halfway = folder / "straight", folder / "resumed"

    def train_and_resume():
        vireid(
            "train",
            config,
            *common,
            "--set",
            "train.epochs=2",
            "--set",
            "train.eval_every=1",
            "--set",
            "train.eval_offset=0",
            "--set",
            "train.augment_on=device",
            "--out",
            str(straight),
        )
        vireid(
            "train",
            config,
            *common,
            "--set",
            "train.epochs=1",
            "--set",
            "train.augment_on=device",
            "--out",
            str(halfway),
        )
        vireid("train", "--resume", str(halfway / "last.pt"), "--set", "train.epochs=2", "--device", str(device))
        first, second = load_checkpoint(straight / "last.pt"), load_checkpoint(halfway / "last.pt")
        records = [json.loads(line) for line in (halfway / "metrics.jsonl").read_text().splitlines()]
        finite = all(np.isfinite(record["total"]) for record in records if "total" in record)
        same_place = (first.epoch, first.step) == (second.epoch, second.step) and first.epoch == 2
        difference = max(float((first.model[k].float() - second.model[k].float()).abs().max()) for k in first.model)
        evaluations = [
            record
            for record in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines())
            if record["kind"] == "epoch"
        ]
        failed = [record[key] for record in evaluations for key in record if key.endswith("/failed")]
        scores = [f"{100 * record['sysu-all/rank1']:.1f}" for record in evaluations if "sysu-all/rank1" in record]
        evaluated = len(scores) == 2 and not failed
        return (
            finite and same_place and evaluated,
            f"epoch 2, step {first.step} both; largest parameter difference straight vs resumed "
            f"{difference:.2e}; sysu-all R1 after epochs 1 and 2: {', '.join(scores) or 'none'}"
            + (f"; evaluation failed: {failed[0]}" if failed else ""),
        )

    checks.run("vireid train (cache, device augmentation) and --resume", train_and_resume)

    def distributed():
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        backend = "nccl" if gpus >= 2 else "gloo"
        environment = {"VIREID_DDP_BACKEND": backend}
        out = folder / "ddp"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        command += ["-m", "vireid.cli", "train", config, *common[:-2], "--device", device.type]  # ranks spread
        command += ["--set", "train.epochs=1", "--set", "train.workers=0", "--out", str(out), "--quiet"]
        run_command(command, environment)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        checksums = next(record["parameter_checksums"] for record in records if record["kind"] == "distributed")
        where = "2 GPUs, NCCL" if gpus >= 2 else ("both on one GPU, gloo" if gpus else "CPU, gloo")
        return len(set(checksums)) == 1, f"2 processes ({where}); parameter checksums {checksums[0]:.6f} on both"

    checks.run("DDP under torchrun", distributed)
    checkpoint = straight / "last.pt"
    places = dict.fromkeys((str(device), "cpu"))  # the rehearsal on the CPU runs each command once

    def test_on_device():
        """`vireid test` on the device and on the CPU: the same features (TF32 off for the comparison)."""
        features = {}
        for where in places:
            out = folder / f"test-{where.replace(':', '')}"
            arguments = ["test", str(checkpoint), "--device", where, "--rerank", "--trials", "0-2", "--out", str(out)]
            vireid(*arguments, environment=EXACT_CONVOLUTIONS)
            features[where] = load_features(out / "features.npz").features
        cosine = (features[str(device)] * features["cpu"]).sum(1)
        figures = f"{len(cosine)} test images, feature cosine min {cosine.min():.5f} (>= {DEVICE_AGREEMENT})"
        return bool(cosine.min() >= DEVICE_AGREEMENT), figures

    checks.run("vireid test --rerank on the device", test_on_device)

    def scoring_on_device():
        """One feature file scored and re-ranked on the device and on the CPU: the same figures."""
        features, scores = folder / "test-cpu" / "features.npz", {}
        for where in places:
            out = folder / f"scores-{where.replace(':', '')}.json"
            arguments = ["--protocol", "sysu-all", "--trials", "0-2", "--rerank", "--json", str(out)]
            command = [sys.executable, "-m", "vireid.cli", "evaluate", "--features", str(features), *arguments]
            run_command([*command, "--device", where])  # evaluate has no --quiet
            scores[where] = json.loads(out.read_text())
        pairs = zip(scores[str(device)], scores["cpu"])
        gap = max(abs(a["mean"][name] - b["mean"][name]) * 100 for a, b in pairs for name in a["mean"])
        figures = f"sysu-all, plain and re-ranked: largest gap to the CPU's {gap:.3f} points (<= {METRIC_AGREEMENT})"
        return gap <= METRIC_AGREEMENT, figures

    checks.run("scoring and re-ranking on the device", scoring_on_device)

    def extract_on_device():
        images = folder / "test_images.txt"
        images.write_text("\n".join(str(path) for path in sorted(Path(root).glob("cam3/*/*.jpg"))[:64]) + "\n")
        features = {}
        for where in places:
            out = folder / f"extract-{where.replace(':', '')}.npz"
            arguments = ["--images", str(images), "--modality", "infrared", "--device", where, "--out", str(out)]
            vireid("extract", str(checkpoint), *arguments, environment=EXACT_CONVOLUTIONS)
            features[where] = load_features(out).features
        cosine = (features[str(device)] * features["cpu"]).sum(1)
        figures = f"{len(cosine)} images, cosine min {cosine.min():.5f} (>= {DEVICE_AGREEMENT})"
        return bool(cosine.min() >= DEVICE_AGREEMENT), figures

    checks.run("vireid extract on the device", extract_on_device)

    def export_checkpoint():
        model, model_config, _ = model_from_checkpoint(checkpoint, "cpu")
        path = export_onnx(model, model_config, Modality.INFRARED, folder / "model.infrared.onnx")
        difference = max_abs_difference(path, model, model_config, Modality.INFRARED)
        figures = f"ONNX Runtime vs PyTorch max abs diff {difference:.2e} (< {ONNX_AGREEMENT})"
        return difference < ONNX_AGREEMENT, figures

    checks.run("ONNX export of the checkpoint trained on the device (export runs on the CPU)", export_checkpoint)

    def reference_loop():
        command = [sys.executable, str(Path(__file__).with_name("reference_train_loop.py")), "--device", str(device)]
        command += ["--sizes", "64x32" if quick else "288x144", "--steps", "3" if quick else "20"]
        command += ["--variants", "cache", "device"] + ([] if quick else ["bf16", "--workers", "8"])
        command += ["--set", "model.backbone=resnet18", "--repeats", "1"] if quick else []  # the code, not the rates
        rows = [line for line in run_command(command).splitlines() if line.startswith("| ") and "×" in line]
        cells = [row.strip("|").split("|") for row in dict.fromkeys(rows) if "images/s" not in row]
        return True, "; ".join(
            f"{loop.strip()} {rate.strip()} img/s, waiting {wait.strip()}, {speed.strip()}"
            for _, loop, rate, wait, speed in cells
        )

    checks.run("the AGW reference's training loop against vireid's", reference_loop)


if __name__ == "__main__":
    sys.exit(main())
