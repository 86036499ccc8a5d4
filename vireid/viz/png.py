"""Writing a matplotlib figure to a PNG file atomically (no half-written picture after a crash),
and refusing, before drawing, a picture too large to draw."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from vireid.atomic import atomic_path
from vireid.errors import UserError
from vireid.memory import require_memory

MAX_SIDE = 2**16 - 1
"""The most pixels matplotlib's Agg renderer draws along a side."""
BYTES_PER_PIXEL = 7
"""A picture's memory per pixel while drawn: its RGB canvas and Agg's RGBA buffer."""


def save_png(figure: Figure, out: str | Path) -> Path:
    """Writes ``figure`` at its own dpi to ``out`` (folders created) and returns ``out`` as a Path."""
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=figure.dpi)
    return Path(out)


def require_picture_size(height: int, width: int, what: str) -> None:
    """A UserError, before anything is drawn, for a picture of ``width`` x ``height`` pixels
    that matplotlib cannot draw or this machine cannot hold; ``what`` says what it shows."""
    if max(height, width) > MAX_SIDE:
        raise UserError(f"{what}: a picture of {width}x{height} pixels; matplotlib draws at most {MAX_SIDE} per side")
    require_memory(height * width * BYTES_PER_PIXEL, f"{what}: a picture of {width}x{height} pixels")
