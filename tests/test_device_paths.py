"""The CPU side of the device-dependent branches: fp16 autocast with the GradScaler, the precision
each device gets by default, the process-group backend choice, train.compile (slow), and
`make gpu-check` on a machine without CUDA, or rehearsed on the CPU (slow)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vireid.config import ConfigError, TrainConfig
from vireid.engine.distributed import setup_environment
from vireid.engine.step import Compilation, ForwardAndLoss, Precision, train_step
from vireid.engine.trainer import build_optimizer
from vireid.errors import UserError
from vireid.modality import ModalityLayout
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
        precision = Precision(torch.float16, channels_last=True)
        losses = train_step(ForwardAndLoss(model, loss), optimizer, scaler, images, labels, modalities, precision)
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


def _steps(compilation: Compilation, learning_rates: list[float]) -> tuple[list[float], list[torch.Tensor], list[int]]:
    """The tiny model's total losses over one step per learning rate (set as the schedule sets it), how
    far its parameters moved, and the count of graphs dynamo has compiled after each step. SGD: Adam's
    normalised updates amplify the compiled kernels' rounding past any useful bound."""
    config, model, images, labels, modalities = _tiny_step_parts("model.backbone=resnet18", "train.optimizer=sgd")
    loss = build_loss(config, 4, model)
    optimizers = build_optimizer(model, loss, config)
    initial = [parameter.detach().clone() for parameter in model.parameters()]
    factors = [rate / learning_rates[0] for rate in learning_rates]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizers[0], lambda epoch: factors[min(epoch, len(factors) - 1)])
    forward = ForwardAndLoss(model, loss)
    compilation.apply(forward)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    totals, graphs = [], []
    for _ in learning_rates:
        totals.append(train_step(forward, optimizers, scaler, images, labels, ModalityLayout.of(modalities))["total"])
        scheduler.step()
        graphs.append(counters["stats"]["unique_graphs"])
    torch._dynamo.reset()
    moved = [parameter.detach() - before for parameter, before in zip(model.parameters(), initial)]
    return [total.item() for total in totals], moved, graphs


@pytest.mark.slow
def test_the_compiled_step_trains_as_the_eager_one_and_compiles_once():
    """train.compile on the CPU: the forward pass and loss as one graph (fullgraph) with its backward;
    three steps at three learning rates move the model as eager steps do (float rounding apart), and
    the steps after the first compile nothing new."""
    rates = [0.01, 0.02, 0.005]
    eager_totals, eager_moves, eager_graphs = _steps(Compilation(), rates)
    compiled_totals, compiled_moves, graphs = _steps(Compilation(compiled=True), rates)
    assert eager_graphs == [0, 0, 0] and graphs[0] >= 1 and graphs[2] == graphs[1] == graphs[0]
    assert compiled_totals == pytest.approx(eager_totals, rel=1e-4)
    assert eager_totals[2] != pytest.approx(eager_totals[0], rel=1e-3)  # the steps moved the model
    eager_move = torch.cat([move.flatten() for move in eager_moves])
    compiled_move = torch.cat([move.flatten() for move in compiled_moves])
    assert (compiled_move - eager_move).norm() < 0.01 * eager_move.norm()  # the same update, to 1 %


def test_compilation_settings_are_checked_against_the_device():
    assert Compilation.of(TrainConfig(), torch.device("cuda")) == Compilation()  # auto: off until measured faster
    assert Compilation.of(TrainConfig(compile="always"), torch.device("cpu")) == Compilation(compiled=True)
    both = TrainConfig(compile="always", cuda_graph="always")
    assert Compilation.of(both, torch.device("cuda")) == Compilation(compiled=True, cuda_graph=True)
    with pytest.raises(ConfigError, match=r"^train.cuda_graph: always needs a CUDA device; this run trains on cpu$"):
        Compilation.of(both, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"^train.cuda_graph: always replays the compiled step; it needs train.com"):
        Compilation.of(TrainConfig(cuda_graph="always"), torch.device("cuda"))


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
    rows = re.findall(r"^\| (eager fp32|eager bf16) \| ([\d.]+) \| ([\d.e+-]+) \|", section, flags=re.M)
    assert [name for name, _, _ in rows] == ["eager fp32", "eager bf16"]
    assert all(float(images) > 0 and float(tflops) > 0 for _, images, tflops in rows)  # 3 digits: bf16 on a CPU is slow
    phases = re.search(r"forward and loss (\d+) ms, backward (\d+) ms, optimizer (\d+) ms", section)
    assert phases and all(int(value) > 0 for value in phases.groups())  # the engine's own step, profiled
    assert "Graph breaks in the forward pass with its loss: 0" in section
    assert re.search(
        r"Projected to the recipe on SYSU-MM01 \(12 epochs x 696 steps, 3 evaluations\): [\d.]+ minutes", section
    )
