"""The loss terms of an epoch's steps, kept on the training device.

Reading a device tensor on the host (``.item()``, ``bool(tensor)``) makes the host wait until the
device has finished everything queued before it; done after every step, it leaves the device idle
while the host prepares the next. The tally keeps what the log and the epoch record need on the
device: the running sums of every term (float64, added in step order, so that the epoch means are
the very numbers a host-side sum of each step's values gives), the last step's values, and the
first step whose total was not finite with its values. The trainer reads it once per log interval
and at the end of the epoch, before any checkpoint is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TallyReading:
    """What a LossTally held when read, on the host."""

    sums: dict[str, float]  # term -> the sum over the steps added so far
    last: dict[str, float]  # term -> the last step's value
    first_non_finite_step: int | None  # the first step whose total was NaN or infinite, or None
    first_non_finite: dict[str, float]  # that step's terms (empty when there was none)


class LossTally:
    """Running sums of ``names`` (the loss terms and ``total``) over steps, on ``device``."""

    def __init__(self, names: tuple[str, ...], device: torch.device):
        if "total" not in names:
            raise ValueError(f"the tallied terms must include 'total', got {names}")
        self.names = names
        self._total = names.index("total")
        self._sums = torch.zeros(len(names), dtype=torch.float64, device=device)
        self._last = torch.zeros(len(names), dtype=torch.float64, device=device)
        self._first_non_finite = torch.zeros(len(names), dtype=torch.float64, device=device)
        self._first_non_finite_step = torch.full((), -1, dtype=torch.float64, device=device)

    def add(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Adds one step's terms (0-d tensors; float64 holds any float dtype exactly), without waiting."""
        values = torch.stack([losses[name].detach().to(torch.float64) for name in self.names])  # (T,)
        self._sums += values
        self._last = values
        new = ~torch.isfinite(values[self._total]) & (self._first_non_finite_step < 0)
        self._first_non_finite_step = torch.where(new, float(step), self._first_non_finite_step)
        self._first_non_finite = torch.where(new, values, self._first_non_finite)

    def read(self) -> TallyReading:
        """Everything held, in one transfer to the host (the one wait for the device)."""
        held = torch.cat([self._sums, self._last, self._first_non_finite, self._first_non_finite_step[None]])
        values = held.tolist()
        count = len(self.names)
        sums, last, first = (dict(zip(self.names, values[index * count : (index + 1) * count])) for index in range(3))
        step = int(values[-1])
        return TallyReading(sums, last, step if step >= 0 else None, first if step >= 0 else {})
