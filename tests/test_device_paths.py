"""The CPU side of the device-dependent branches: fp16 autocast with the GradScaler, the precision
each device gets by default, the process-group backend choice, torch.compile (slow), and
`make gpu-check` on a machine without CUDA, or rehearsed on the CPU (slow)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vireid.engine.distributed import setup_environment
from vireid.engine.trainer import Precision, build_optimizer, train_step
from vireid.errors import UserError
from vireid.models.pooling import GeM
from vireid.recipe import build_loss, build_model, load_config

GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SPEED_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_check.py"


def _tiny_step_parts(*overrides: str):
    config = load_config("tiny", ["data.height=32", "data.width=16", "model.part_dim=16", *overrides])
    torch.manual_seed(0)
    model = build_model(config, 4, load_weights=False).train()
    images = torch.randn(8, 3, 32, 16)
    labels, modalities = torch.tensor([0, 0, 1, 1] * 2), torch.tensor([0] * 4 + [1] * 4)
    return config, model, images, labels, modalities


def test_gem_pools_in_fp32_so_fp16_gradients_stay_finite():
    """Under fp16 autocast an all-zero channel (a dead ReLU) made mean + eps underflow to 0, whose
    1/p-th power has an infinite gradient: every fp16 step was skipped by the GradScaler."""
    feature_map = torch.rand(2, 3, 4, 2, dtype=torch.float16)
    feature_map[:, 1] = 0
    feature_map.requires_grad_(True)
    pooled = GeM(3.0)(feature_map)
    assert pooled.dtype == torch.float32 and torch.all(pooled[:, 1] > 0)
    pooled.sum().backward()
    assert torch.isfinite(feature_map.grad).all()


@pytest.mark.slow
def test_fp16_autocast_with_the_grad_scaler_trains_on_the_cpu():
    """A step whose scaled gradients overflow fp16 is skipped and lowers the scale; the next updates."""
    config, model, images, labels, modalities = _tiny_step_parts()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, backoff_factor=2.0**-12)  # 2^24: sure to overflow
    loss = build_loss(config, 4, model)
    optimizer = build_optimizer(model, loss, config)
    for expected_update, expected_scale in ((False, 2.0**12), (True, 2.0**12)):
        before = [parameter.detach().clone() for parameter in model.parameters()]
        losses = train_step(
            model, loss, optimizer, scaler, images, labels, modalities, Precision(torch.float16, channels_last=True)
        )
        changed = any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))
        assert torch.isfinite(losses["total"]) and (changed, scaler.get_scale()) == (expected_update, expected_scale)


def test_each_device_gets_its_default_precision():
    train = load_config("tiny").train
    assert Precision.of(train, torch.device("cpu")) == Precision(None, False, 0.0)
    assert Precision.of(train, torch.device("cuda")) == Precision(torch.bfloat16, True, 0.0)  # no GPU needed to ask
    fp16 = load_config("tiny", ["train.amp=fp16", "train.channels_last=never"]).train
    assert Precision.of(fp16, torch.device("cuda")) == Precision(torch.float16, False, 0.0)


def test_the_process_group_backend_can_be_named_and_is_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("VIREID_DDP_BACKEND", "mpi")
    with pytest.raises(UserError, match="VIREID_DDP_BACKEND: expected nccl or gloo, got 'mpi'"):
        setup_environment("cpu")


def test_gpu_check_without_cuda_says_so_in_one_line_and_writes_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: make gpu-check runs for real")
    done = subprocess.run(
        [sys.executable, str(GPU_CHECK), "--append-to", str(tmp_path / "BENCHMARKS.md")], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == [
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check, nothing written"
    ]
    assert not (tmp_path / "BENCHMARKS.md").exists()


@pytest.mark.slow
def test_torch_compile_trains_a_tiny_model_on_the_cpu():
    config, model, images, labels, modalities = _tiny_step_parts("model.backbone=resnet18")
    compiled = torch.compile(model)
    loss = build_loss(config, 4, model)
    optimizer = build_optimizer(model, loss, config)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    eager_loss = loss(model(images, modalities), labels, modalities)["total"]
    losses = train_step(compiled, loss, optimizer, scaler, images, labels, modalities)
    assert torch.isclose(losses["total"], eager_loss.detach(), rtol=1e-4)  # the same loss before the update


def _rehearsed(script: Path, tmp_path: Path) -> str:
    """What ``script --device cpu --quick`` appends to a fresh BENCHMARKS.md (it must succeed)."""
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, str(script), "--device", "cpu", "--quick", "--append-to", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text()


@pytest.mark.slow
def test_gpu_check_rehearsed_on_the_cpu_passes_every_check(tmp_path):
    table = _rehearsed(GPU_CHECK, tmp_path)
    assert "## GPU check (make gpu-check)" in table and "FAIL" not in table
    # 3 step variants, 2 of DEEN's, features, DEEN's features, train and resume, DDP, test, scoring,
    # extract, ONNX, reference loop
    assert table.count("| ok |") == 14
    assert "train step, sysu_deen 64x32, bf16" in table


def test_speed_check_without_cuda_says_so_in_one_line_and_writes_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: make gpu-check runs the speed check for real")
    done = subprocess.run(
        [sys.executable, str(SPEED_CHECK), "--append-to", str(tmp_path / "BENCHMARKS.md")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.startswith("speed-check: no CUDA device here")
    assert not (tmp_path / "BENCHMARKS.md").exists()


@pytest.mark.slow
def test_speed_check_rehearsed_on_the_cpu_writes_its_table(tmp_path):
    section = _rehearsed(SPEED_CHECK, tmp_path)
    assert "## Speed check (tiny, quick rehearsal)" in section and "device cpu" in section
    rows = re.findall(r"^\| (eager fp32|eager bf16) \| ([\d.]+) \| ([\d.]+) \|", section, flags=re.M)
    assert [name for name, _, _ in rows] == ["eager fp32", "eager bf16"]
    assert all(float(images) > 0 and float(tflops) > 0 for _, images, tflops in rows)
    phases = re.search(r"forward and loss (\d+) ms, backward (\d+) ms, optimizer (\d+) ms", section)
    assert phases and all(int(value) > 0 for value in phases.groups())  # the engine's own step, profiled
    assert "Graph breaks in the forward pass with its loss: 0" in section
    assert re.search(
        r"Projected to the recipe on SYSU-MM01 \(12 epochs x 696 steps, 3 evaluations\): [\d.]+ minutes", section
    )
