"""train.fused_optimizer: the whole update as one fused kernel (on a GPU by default). On the CPU the
fused SGD update moves the parameters as the per-tensor loop does over 20 training steps; fused AdamW
rounds differently, which its normalised updates amplify over steps (0.013 apart after 20 here), so
it is compared over one step."""

import copy

import pytest
import torch
from noise_training import noise_batches, train_on_noise

from vireid.config import TrainConfig
from vireid.engine.trainer import fused_update, load_optimizer_state
from vireid.recipe import load_config


def _trained(optimizer_name: str, fused: str, steps: int, momentum: float = 0.9) -> list[torch.Tensor]:
    """The tiny model's parameters after ``steps`` training steps on seeded random batches."""
    config = load_config("tiny", ["model.pretrained=none", f"train.optimizer={optimizer_name}"])
    train = TrainConfig(**{**config.train.__dict__, "fused_optimizer": fused, "momentum": momentum})
    model, optimizers, _ = train_on_noise(config, train, noise_batches(1, steps))
    assert all(bool(group["fused"]) == (fused == "always") for group in optimizers[0].param_groups)
    return [parameter.detach().clone() for parameter in model.parameters()]


def _largest_difference(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(first, second))


@pytest.mark.parametrize("optimizer_name, steps", [("sgd", 20), ("adamw", 1)])
def test_the_fused_update_moves_the_parameters_as_the_loop_does(optimizer_name, steps):
    loop, fused = _trained(optimizer_name, "never", steps), _trained(optimizer_name, "always", steps)
    assert _largest_difference(loop, fused) < 1e-6  # float rounding at most
    if optimizer_name == "sgd":  # the bound tells optimizers apart: another momentum moves them by far more
        assert _largest_difference(loop, _trained("sgd", "never", steps, momentum=0.8)) > 1e-3


def test_auto_fuses_on_a_gpu_only():
    assert not fused_update(TrainConfig(), "cpu") and fused_update(TrainConfig(), "cuda")
    assert fused_update(TrainConfig(fused_optimizer="always"), "cpu")
    assert not fused_update(TrainConfig(fused_optimizer="never"), "cuda")


def test_a_resumed_optimizer_keeps_this_run_s_kernel_choice():
    weight = torch.nn.Parameter(torch.ones(3))
    saved = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.grad = torch.full((3,), 0.5)
    saved.step()
    fused = torch.optim.SGD([copy.deepcopy(weight)], lr=0.1, momentum=0.9, fused=True)
    load_optimizer_state(fused, saved.state_dict())
    assert fused.param_groups[0]["fused"] is True
    assert torch.equal(fused.state[fused.param_groups[0]["params"][0]]["momentum_buffer"], torch.full((3,), 0.5))
