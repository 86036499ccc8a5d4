"""Writing a matplotlib figure to a PNG file atomically (no half-written picture after a crash)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from vireid.atomic import atomic_path


def save_png(figure: Figure, out: str | Path) -> Path:
    """Writes ``figure`` at its own dpi to ``out`` (folders created) and returns ``out`` as a Path."""
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=figure.dpi)
    return Path(out)
