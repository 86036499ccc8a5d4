"""A protocol's results by camera as a heat map: query cameras down, gallery cameras across, each
cell coloured by its rank-1 and holding its rank-1, mAP and scored / all queries per trial (grey and
'–' where no query has a true match in that gallery camera)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vireid.evaluation.by_camera import CameraTable
from vireid.viz.png import save_png

DPI = 150
CELL_INCHES = (1.3, 0.8)  # width, height of one cell


def draw_camera_table(table: CameraTable, out: str | Path) -> Path:
    """The heat map of ``table`` as a PNG at ``out``."""
    rows, columns = len(table.query_cameras), len(table.gallery_cameras)
    rank1 = np.full((rows, columns), np.nan)
    for row, query_camera in enumerate(table.query_cameras):
        for column, gallery_camera in enumerate(table.gallery_cameras):
            cell = table.cell(query_camera, gallery_camera)
            if cell.metrics:
                rank1[row, column] = 100 * cell.metrics["rank1"]
    figure = Figure(figsize=(1.8 + CELL_INCHES[0] * columns, 1.4 + CELL_INCHES[1] * rows), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_facecolor("lightgrey")
    image = axes.imshow(np.ma.masked_invalid(rank1), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for row, query_camera in enumerate(table.query_cameras):
        for column, gallery_camera in enumerate(table.gallery_cameras):
            cell = table.cell(query_camera, gallery_camera)
            counts = f"{cell.scored_queries:.0f} / {cell.queries:.0f}"
            text = (
                f"R1 {rank1[row, column]:.1f}\nmAP {100 * cell.metrics['mAP']:.1f}\n{counts}"
                if cell.metrics
                else f"–\n{counts}"
            )
            light = cell.metrics is not None and rank1[row, column] < 60
            axes.text(column, row, text, ha="center", va="center", fontsize=7, color="white" if light else "black")
    axes.set_xticks(range(columns), [f"cam{camera}" for camera in table.gallery_cameras])
    axes.set_yticks(range(rows), [f"cam{camera}" for camera in table.query_cameras])
    axes.set_xlabel("gallery camera")
    axes.set_ylabel("query camera")
    trials = len(table.trials)
    axes.set_title(f"{table.protocol.name} by camera: mean of {trials} trial{'s' if trials > 1 else ''}", fontsize=9)
    figure.colorbar(image, ax=axes, label="rank-1 (%)")
    figure.tight_layout()
    return save_png(figure, out)
