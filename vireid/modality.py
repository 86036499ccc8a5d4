"""Which sensor took an image: the one value every part of vireid shares (data,
models, losses, retrieval), kept here so that none of them depends on another for it;
and a batch's modalities as a layout known on the host (ModalityLayout)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch


class Modality(IntEnum):
    """Which sensor took an image. Stored as int8 in arrays and files."""

    VISIBLE = 0
    INFRARED = 1


@dataclass(frozen=True, eq=False)
class ModalityLayout:
    """A batch's modalities, known on the host as well as on the device.

    Routing rows by modality from a device tensor (``nonzero``, boolean indexing) makes the host
    wait for the device, and its data-dependent shapes break a compiled graph. The training batches'
    modalities are known on the host before they reach the device (the loader gives them on the
    CPU), so their layout is kept as runs of consecutive rows: selecting a modality's rows is slicing
    with Python numbers, and putting parts back in batch order is concatenating slices.

    Attributes:
        runs: ((modality, start, stop), ...): the batch as runs of consecutive rows of one modality.
        tensor: (B,) int64 modalities on the batch's device, for arithmetic (``torch.where``).
    """

    runs: tuple[tuple[int, int, int], ...]
    tensor: torch.Tensor

    @staticmethod
    def of(modalities: torch.Tensor, device: torch.device | str | None = None) -> ModalityLayout:
        """The layout of (B,) ``modalities`` (read on the host: give the CPU copy where there is one).

        Args:
            modalities: (B,) modality values.
            device: Where the layout's tensor goes (default: where ``modalities`` are); copied
                without waiting when ``modalities`` are in pinned memory.

        Returns:
            The layout.
        """
        values = modalities.tolist()
        runs, start = [], 0
        for row in range(1, len(values) + 1):
            if row == len(values) or values[row] != values[start]:
                runs.append((int(values[start]), start, row))
                start = row
        tensor = modalities.to(device or modalities.device, dtype=torch.int64, non_blocking=True)
        return ModalityLayout(tuple(runs), tensor)

    def modalities(self) -> tuple[int, ...]:
        """The modalities present, in the order of their first rows."""
        return tuple(dict.fromkeys(modality for modality, _, _ in self.runs))

    def take(self, rows: torch.Tensor, modality: int) -> torch.Tensor:
        """The rows of ``rows`` (B, ...) of ``modality``, in batch order (a view where they are one run)."""
        parts = [rows[start:stop] for value, start, stop in self.runs if value == modality]
        if not parts:
            return rows[:0]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def put_back(self, parts: dict[int, torch.Tensor]) -> torch.Tensor:
        """The inverse of take: each modality's rows (as take gives them) back in batch order."""
        taken = {modality: 0 for modality in parts}
        pieces = []
        for modality, start, stop in self.runs:
            pieces.append(parts[modality][taken[modality] : taken[modality] + stop - start])
            taken[modality] += stop - start
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def modality_layout(modalities: torch.Tensor | ModalityLayout) -> ModalityLayout:
    """``modalities`` as a ModalityLayout: itself, or the layout of a (B,) tensor (read on the host)."""
    return modalities if isinstance(modalities, ModalityLayout) else ModalityLayout.of(modalities)
