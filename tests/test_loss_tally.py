"""The loss tally keeps an epoch's loss terms on the device: its sums are the very numbers a
host-side sum of each step's values gives, and it remembers the first step whose total was not
finite (how the trainer reads it: tests/test_engine.py)."""

import numpy as np
import pytest
import torch

from vireid.engine.loss_tally import LossTally


def _step(rng, names=("id", "triplet", "total")):
    return {name: torch.tensor(rng.standard_normal() * 10, dtype=torch.float32) for name in names}


def test_sums_and_last_values_are_those_of_each_step_read_on_the_host():
    rng = np.random.default_rng(0)
    tally = LossTally(("id", "triplet", "total"), torch.device("cpu"))
    host_sums = {"id": 0.0, "triplet": 0.0, "total": 0.0}
    for step in range(1, 38):
        losses = _step(rng)
        tally.add(losses, step)
        for name, value in losses.items():
            host_sums[name] += value.item()  # what the trainer summed before: doubles, in step order
    reading = tally.read()
    assert reading.sums == host_sums  # the same double additions in the same order: equal to the bit
    assert reading.last == {name: value.item() for name, value in losses.items()}
    assert reading.first_non_finite_step is None and reading.first_non_finite == {}


def test_a_bf16_term_is_held_exactly():
    tally = LossTally(("cpm", "total"), torch.device("cpu"))
    value = torch.tensor(3.140625, dtype=torch.bfloat16)  # 3 + 9/64: exact in bf16
    tally.add({"cpm": value, "total": torch.tensor(0.5)}, 1)
    tally.add({"cpm": value, "total": torch.tensor(0.25)}, 2)
    assert tally.read().sums == {"cpm": 6.28125, "total": 0.75}


def test_the_first_non_finite_step_is_remembered_with_its_terms():
    tally = LossTally(("id", "total"), torch.device("cpu"))
    tally.add({"id": torch.tensor(1.0), "total": torch.tensor(2.0)}, 1)
    tally.add({"id": torch.tensor(3.0), "total": torch.tensor(float("inf"))}, 2)
    tally.add({"id": torch.tensor(5.0), "total": torch.tensor(float("nan"))}, 3)
    reading = tally.read()
    assert reading.first_non_finite_step == 2
    assert reading.first_non_finite == {"id": 3.0, "total": float("inf")}
    assert reading.last["id"] == 5.0 and np.isnan(reading.last["total"])


def test_a_tally_needs_the_total():
    with pytest.raises(ValueError, match="must include 'total'"):
        LossTally(("id",), torch.device("cpu"))
