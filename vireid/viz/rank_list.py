"""Rank lists as a PNG: each query followed by its best gallery matches, framed green (same
person), red (another person) or grey (unknown)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from vireid.atomic import atomic_path
from vireid.data.images import load_image
from vireid.data.splits import Modality
from vireid.errors import UserError

QUERY_COLOUR = (40, 90, 220)
MATCH_COLOUR = (0, 180, 0)
MISMATCH_COLOUR = (220, 0, 0)
UNKNOWN_COLOUR = (150, 150, 150)
MODALITY_ABBREVIATIONS = {Modality.VISIBLE: "VIS", Modality.INFRARED: "IR"}

DPI = 100  # the canvas is drawn one array pixel per PNG pixel at this dpi
BORDER = 6  # frame thickness in pixels
MIN_COLUMN_WIDTH = 76  # room for the labels under small images
COLUMN_SPACING = 6
QUERY_GAP = 30  # between the query and its rank-1 match
LABEL_HEIGHT = 40  # three lines of text under each image
ROW_SPACING = 8
MARGIN = 10
TITLE_HEIGHT = 30
FONT_SIZE = 7
TITLE_FONT_SIZE = 10


@dataclass(frozen=True)
class RankedImage:
    """One picture in a rank list: a query, or a gallery image at its rank."""

    path: str
    modality: int  # a Modality value
    person_id: int | None = None  # None when unknown (e.g. a user's own images)
    score: float | None = None  # similarity shown under a gallery image


def _modality(image: RankedImage) -> Modality:
    if image.modality not in tuple(Modality):
        raise UserError(
            f"{image.path}: modality must be {int(Modality.VISIBLE)} (visible) or "
            f"{int(Modality.INFRARED)} (infrared), got {image.modality!r}"
        )
    return Modality(image.modality)


def _border_colour(query: RankedImage, match: RankedImage) -> tuple[int, int, int]:
    if query.person_id is None or match.person_id is None:
        return UNKNOWN_COLOUR
    return MATCH_COLOUR if match.person_id == query.person_id else MISMATCH_COLOUR


def _framed(image: RankedImage, image_size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """(height + 2 BORDER, width + 2 BORDER, 3) uint8: the resized image inside a frame of ``colour``."""
    height, width = image_size
    pixels = np.asarray(load_image(image.path).resize((width, height), Image.Resampling.BILINEAR))
    cell = np.empty((height + 2 * BORDER, width + 2 * BORDER, 3), dtype=np.uint8)
    cell[:] = colour
    cell[BORDER : BORDER + height, BORDER : BORDER + width] = pixels
    return cell


def _query_label(query: RankedImage) -> str:
    lines = ["query", _modality(query).name.lower()]
    if query.person_id is not None:
        lines.append(f"id {query.person_id}")
    return "\n".join(lines)


def _match_label(rank: int, match: RankedImage) -> str:
    lines = [f"rank {rank} · {MODALITY_ABBREVIATIONS[_modality(match)]}"]
    if match.person_id is not None:
        lines.append(f"id {match.person_id}")
    if match.score is not None:
        lines.append(f"{match.score:.3f}")
    return "\n".join(lines)


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or not all(isinstance(side, (int, np.integer)) and side > 0 for side in image_size):
        raise UserError(f"image_size: expected two positive integers (height, width), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def draw_rank_list(
    queries: Sequence[RankedImage],
    ranked: Sequence[Sequence[RankedImage]],
    out: str | Path,
    title: str | None = None,
    image_size: tuple[int, int] = (128, 64),
) -> Path:
    """Writes the PNG ``out``: one row per query, its image then ``ranked[row]`` from rank 1 on.

    Rows may have different lengths; ``image_size`` is (height, width) of every image.
    """
    if not queries:
        raise UserError("queries: expected at least one query image, got none")
    if len(ranked) != len(queries):
        raise UserError(
            f"ranked: expected one list of gallery images per query ({len(queries)} queries), got {len(ranked)} lists"
        )
    height, width = _check_image_size(image_size)
    cell_height, cell_width = height + 2 * BORDER, width + 2 * BORDER
    column_width = max(cell_width, MIN_COLUMN_WIDTH)
    row_height = cell_height + LABEL_HEIGHT
    longest = max(len(matches) for matches in ranked)
    title_height = TITLE_HEIGHT if title else 0
    canvas_width = 2 * MARGIN + column_width + QUERY_GAP + longest * column_width + max(longest - 1, 0) * COLUMN_SPACING
    canvas_height = 2 * MARGIN + title_height + len(queries) * row_height + (len(queries) - 1) * ROW_SPACING
    canvas = np.full((canvas_height, canvas_width, 3), 255, dtype=np.uint8)
    labels = []  # (x centre, y top, text) in canvas pixels
    for row, (query, matches) in enumerate(zip(queries, ranked)):
        top = MARGIN + title_height + row * (row_height + ROW_SPACING)
        cells = [(query, QUERY_COLOUR, _query_label(query))]
        cells += [
            (match, _border_colour(query, match), _match_label(rank, match)) for rank, match in enumerate(matches, 1)
        ]
        for column, (image, colour, label) in enumerate(cells):
            column_left = MARGIN + column * column_width
            if column > 0:
                column_left += QUERY_GAP + (column - 1) * COLUMN_SPACING
            left = column_left + (column_width - cell_width) // 2
            canvas[top : top + cell_height, left : left + cell_width] = _framed(image, (height, width), colour)
            labels.append((column_left + column_width / 2, top + cell_height + 2, label))

    figure = Figure(figsize=(canvas_width / DPI, canvas_height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(canvas, interpolation="nearest")
    axes.set_axis_off()
    for x, y, text in labels:
        axes.text(x, y, text, ha="center", va="top", fontsize=FONT_SIZE, linespacing=1.15)
    if title:
        title_centre = (canvas_width / 2, MARGIN + title_height / 2)
        axes.text(*title_centre, title, ha="center", va="center", fontsize=TITLE_FONT_SIZE)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return Path(out)
