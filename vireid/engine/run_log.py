"""The run folder's logs: metrics.jsonl (one JSON object per line) and TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    """Appends records to metrics.jsonl and their numbers to TensorBoard; a no-op when not ``enabled``
    (every rank but the first under DDP)."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if isinstance(value, (int, float)) and name not in ("epoch", "step"):
                self.writer.add_scalar(f"{record['kind']}/{name}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["RunLog"]
