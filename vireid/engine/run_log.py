"""The run folder's logs: metrics.jsonl (one JSON object per line) and TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

from vireid.atomic import write_text


class RunLog:
    """Appends records to metrics.jsonl and their numbers to TensorBoard; a no-op when not ``enabled``
    (every rank but the first under DDP).

    A run that starts at ``start_step`` (0 for a new run, the checkpoint's step
    for a resumed one) first drops what the folder's logs hold from that step
    on: the records of a run that died, or of the steps a resumed run repeats.
    metrics.jsonl is truncated; TensorBoard is told to purge its later events.
    """

    def __init__(self, run_dir: Path, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._keep_records_before(start_step)
            # TensorBoard drops earlier events of step >= purge_step: those after the checkpoint's step
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)

    def _keep_records_before(self, start_step: int) -> None:
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= start_step]
        write_text(self.path, "".join(f"{line}\n" for line in kept))

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


def _step_of(line: str) -> float:
    """A record's step; infinite for a line a killed process left half-written (dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


__all__ = ["RunLog"]
