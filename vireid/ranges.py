"""Ranges of numbers a setting may take (config keys, command-line flags, re-ranking's
parameters), checked and described one way: NaN and infinite values are in no range."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """The finite numbers from ``lowest`` to ``highest`` (None: no end), each end included
    unless its ``*_excluded`` says otherwise: ``Range(0, 1, highest_excluded=True)`` is [0, 1)."""

    lowest: float | None = None
    highest: float | None = None
    lowest_excluded: bool = False
    highest_excluded: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lowest is not None and (value <= self.lowest if self.lowest_excluded else value < self.lowest):
            return False
        if self.highest is not None and (value >= self.highest if self.highest_excluded else value > self.highest):
            return False
        return True

    def describe(self) -> str:
        """The range in words: 'at least 1', 'more than 0', '0 to 1', 'at least 0 and less than 1'."""
        low = None if self.lowest is None else f"{'more than' if self.lowest_excluded else 'at least'} {self.lowest}"
        high = None if self.highest is None else f"{'less than' if self.highest_excluded else 'at most'} {self.highest}"
        if low and high:
            both_included = not (self.lowest_excluded or self.highest_excluded)
            return f"{self.lowest} to {self.highest}" if both_included else f"{low} and {high}"
        return low or high or "a finite number"


__all__ = ["Range"]
