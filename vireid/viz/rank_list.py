"""Rank lists as a PNG: each query (named above its row) followed by its best gallery matches.

A match's frame and corner mark say whether it is the query's person: green ✓ (same
person), red ✗ (another person), grey and unmarked when a person id is unknown (a
user's own images), since right and wrong cannot be told. A legend says so in the
picture; under each image: its rank, modality, camera, person id and similarity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath
from PIL import Image

from vireid.data.images import load_image
from vireid.errors import UserError
from vireid.modality import Modality
from vireid.viz.png import require_picture_size, save_png
from vireid.wording import counted

DPI = 100  # the canvas is drawn one array pixel per PNG pixel at this dpi
BORDER = 6  # frame thickness in pixels
MIN_COLUMN_WIDTH = 80  # room for the labels under small images
COLUMN_SPACING = 6
QUERY_GAP = 30  # between the query and its rank-1 match
ROW_HEADER_HEIGHT = 14  # the query's file name above its row
LABEL_HEIGHT = 50  # four lines of text under each image
ROW_SPACING = 8
MARGIN = 10
TITLE_HEIGHT = 24
LEGEND_HEIGHT = 22
FONT_SIZE = 7
LEGEND_FONT_SIZE = 8
MARK_FONT_SIZE = 11
TITLE_FONT_SIZE = 10
LEGEND_HANDLE_LENGTH, LEGEND_TEXT_PAD, LEGEND_COLUMN_SPACING = 1.2, 0.8, 1.5  # in font sizes


@dataclass(frozen=True)
class Frame:
    """How an image is framed and marked, and what the legend says that means."""

    colour: tuple[int, int, int]
    mark: str  # drawn on the image's top right corner; "" for none
    meaning: str


QUERY = Frame((40, 90, 220), "", "query")
SAME_PERSON = Frame((0, 180, 0), "✓", "✓ same person as the query")
ANOTHER_PERSON = Frame((220, 0, 0), "✗", "✗ another person")
PERSON_UNKNOWN = Frame((150, 150, 150), "", "person id unknown (e.g. your own images): not judged right or wrong")
LEGEND_ORDER = (QUERY, SAME_PERSON, ANOTHER_PERSON, PERSON_UNKNOWN)


@dataclass(frozen=True)
class RankedImage:
    """One picture in a rank list: a query, or a gallery image at its rank."""

    path: str
    modality: int  # a Modality value
    person_id: int | None = None  # None when unknown (e.g. a user's own images)
    score: float | None = None  # similarity to the query (cosine, or dot product), shown under a gallery image
    camera_id: int | None = None  # None when unknown


@dataclass(frozen=True)
class _Cell:
    image: RankedImage
    frame: Frame
    label: str


def _modality(image: RankedImage) -> Modality:
    if image.modality not in tuple(Modality):
        raise UserError(
            f"{image.path}: modality must be {int(Modality.VISIBLE)} (visible) or "
            f"{int(Modality.INFRARED)} (infrared), got {image.modality!r}"
        )
    return Modality(image.modality)


def _match_frame(query: RankedImage, match: RankedImage) -> Frame:
    if query.person_id is None or match.person_id is None:
        return PERSON_UNKNOWN
    return SAME_PERSON if match.person_id == query.person_id else ANOTHER_PERSON


def _where_and_who(image: RankedImage) -> list[str]:
    """The lines naming the image's modality, camera and person, where known."""
    where = _modality(image).name.lower()
    if image.camera_id is not None:
        where += f" · cam {image.camera_id}"
    return [where] + ([f"id {image.person_id}"] if image.person_id is not None else [])


def _query_cell(query: RankedImage) -> _Cell:
    return _Cell(query, QUERY, "\n".join(["query", *_where_and_who(query)]))


def _match_cell(query: RankedImage, rank: int, match: RankedImage) -> _Cell:
    lines = [f"rank {rank}", *_where_and_who(match)]
    if match.score is not None:
        lines.append(f"similarity {match.score:.3f}")
    return _Cell(match, _match_frame(query, match), "\n".join(lines))


def _query_names(queries: Sequence[RankedImage]) -> list[str]:
    """The queries' file paths relative to the folder they all lie in."""
    folders = [os.path.dirname(os.path.abspath(query.path)) for query in queries]
    common = os.path.commonpath(folders)
    return [os.path.relpath(os.path.abspath(query.path), common) for query in queries]


def _text_width(text: str, size: float, weight: str = "normal") -> float:
    """Pixels that ``text`` takes in the default font at ``size`` points."""
    width, _, _ = TextToPath().get_text_width_height_descent(
        text, FontProperties(size=size, weight=weight), ismath=False
    )
    return width * DPI / 72


def _query_header(name: str, width: float) -> str:
    """ "query: NAME", the start of NAME replaced by "…" as far as needed to fit ``width`` pixels."""
    header = f"query: {name}"
    while len(name) > 1 and _text_width(header, FONT_SIZE, "bold") > width:
        name = name[1:]
        header = f"query: …{name}"
    return header


def _framed(image: RankedImage, image_size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """(height + 2 BORDER, width + 2 BORDER, 3) uint8: the resized image inside a frame of ``colour``."""
    height, width = image_size
    pixels = np.asarray(load_image(image.path).resize((width, height), Image.Resampling.BILINEAR))
    cell = np.empty((height + 2 * BORDER, width + 2 * BORDER, 3), dtype=np.uint8)
    cell[:] = colour
    cell[BORDER : BORDER + height, BORDER : BORDER + width] = pixels
    return cell


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or not all(isinstance(side, (int, np.integer)) and side > 0 for side in image_size):
        raise UserError(f"image_size: expected two positive integers (height, width), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _rgb(frame: Frame) -> tuple[float, float, float]:
    return tuple(channel / 255 for channel in frame.colour)


@dataclass(frozen=True)
class _Layout:
    """Where things go on the canvas, in pixels (x right, y down)."""

    image_size: tuple[int, int]  # (height, width) of every image
    heading_height: int  # the title and the legend

    @property
    def cell_size(self) -> tuple[int, int]:
        """(height, width) of a framed image."""
        return self.image_size[0] + 2 * BORDER, self.image_size[1] + 2 * BORDER

    @property
    def column_width(self) -> int:
        return max(self.cell_size[1], MIN_COLUMN_WIDTH)

    @property
    def row_height(self) -> int:
        return ROW_HEADER_HEIGHT + self.cell_size[0] + LABEL_HEIGHT

    def canvas_size(self, num_rows: int, longest: int) -> tuple[int, int]:
        """(height, width) of the canvas for ``num_rows`` queries
        with at most ``longest`` matches (without the heading)."""
        height = 2 * MARGIN + self.heading_height + num_rows * self.row_height + (num_rows - 1) * ROW_SPACING
        return height, self.column_left(longest + 1) - COLUMN_SPACING + MARGIN

    def row_top(self, row: int) -> int:
        return MARGIN + self.heading_height + row * (self.row_height + ROW_SPACING)

    def column_left(self, column: int) -> int:
        """Column 0 holds the query; the matches follow after QUERY_GAP."""
        if column == 0:
            return MARGIN
        return MARGIN + self.column_width + QUERY_GAP + (column - 1) * (self.column_width + COLUMN_SPACING)


def _draw_row(axes: Axes, canvas: np.ndarray, layout: _Layout, top: int, header: str, cells: list[_Cell]) -> None:
    """The query's name, then each cell's framed image into ``canvas``, its label and its mark onto ``axes``."""
    axes.text(MARGIN, top, header, ha="left", va="top", fontsize=FONT_SIZE, fontweight="bold")
    image_top = top + ROW_HEADER_HEIGHT
    cell_height, cell_width = layout.cell_size
    for column, cell in enumerate(cells):
        column_left = layout.column_left(column)
        left = column_left + (layout.column_width - cell_width) // 2
        canvas[image_top : image_top + cell_height, left : left + cell_width] = _framed(
            cell.image, layout.image_size, cell.frame.colour
        )
        axes.text(
            column_left + layout.column_width / 2,
            image_top + cell_height + 2,
            cell.label,
            ha="center",
            va="top",
            fontsize=FONT_SIZE,
            linespacing=1.15,
        )
        if cell.frame.mark:
            axes.text(
                left + cell_width - BORDER,
                image_top + BORDER,
                cell.frame.mark,
                ha="right",
                va="top",
                fontsize=MARK_FONT_SIZE,
                fontweight="bold",
                color=_rgb(cell.frame),
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"},
            )


def _legend_width(frames: list[Frame]) -> float:
    """Pixels, about, of the legend's row of ``frames``."""
    em = LEGEND_FONT_SIZE * DPI / 72
    entries = sum(
        _text_width(frame.meaning, LEGEND_FONT_SIZE) + (LEGEND_HANDLE_LENGTH + LEGEND_TEXT_PAD) * em for frame in frames
    )
    return entries + (len(frames) - 1) * LEGEND_COLUMN_SPACING * em + 2 * em  # 2 em: the legend's own padding


def _draw_legend(axes: Axes, frames: list[Frame], centre_height: float) -> None:
    """One entry per kind of frame, in a row centred at ``centre_height`` (axes fraction, up)."""
    handles = [Patch(facecolor="white", edgecolor=_rgb(frame), linewidth=2.5, label=frame.meaning) for frame in frames]
    axes.legend(
        handles=handles,
        loc="center",
        bbox_to_anchor=(0.5, centre_height),
        ncol=len(handles),
        frameon=False,
        fontsize=LEGEND_FONT_SIZE,
        handlelength=LEGEND_HANDLE_LENGTH,
        handletextpad=LEGEND_TEXT_PAD,
        columnspacing=LEGEND_COLUMN_SPACING,
    )


def rank_list_figure(
    queries: Sequence[RankedImage],
    ranked: Sequence[Sequence[RankedImage]],
    title: str | None = None,
    image_size: tuple[int, int] = (128, 64),
    count_flags: tuple[str, str] | None = None,
) -> Figure:
    """The picture: one row per query, its image then ``ranked[row]`` from rank 1 on.

    Rows may have different lengths; ``image_size`` is (height, width) of every image.
    ``count_flags`` names the command's flags that set the number of queries and of matches
    (``("--picture-queries", "--top-k")``), so that a picture too large to draw names what to lower.
    """
    if not queries:
        raise UserError("queries: expected at least one query image, got none")
    if len(ranked) != len(queries):
        raise UserError(
            f"ranked: expected one list of gallery images per query ({len(queries)} queries), got {len(ranked)} lists"
        )
    layout = _Layout(_check_image_size(image_size), (TITLE_HEIGHT if title else 0) + LEGEND_HEIGHT)
    rows = [
        [_query_cell(query)] + [_match_cell(query, rank, match) for rank, match in enumerate(matches, 1)]
        for query, matches in zip(queries, ranked)
    ]
    shown = {cell.frame for cells in rows for cell in cells}
    frames = [frame for frame in LEGEND_ORDER if frame in shown]
    longest = max(len(matches) for matches in ranked)
    canvas_height, columns_width = layout.canvas_size(len(rows), longest)
    heading_width = max(_legend_width(frames), _text_width(title, TITLE_FONT_SIZE) if title else 0)
    canvas_width = max(columns_width, round(heading_width) + 2 * MARGIN)
    query_flag, match_flag = (f" ({flag})" for flag in count_flags) if count_flags else ("", "")
    queries_shown, matches_shown = counted(len(rows), "query", "queries"), counted(longest, "match", "matches")
    what = f"rank lists of {queries_shown}{query_flag} x {matches_shown}{match_flag}"
    require_picture_size(canvas_height, canvas_width, what)
    canvas = np.full((canvas_height, canvas_width, 3), 255, dtype=np.uint8)
    figure = Figure(figsize=(canvas_width / DPI, canvas_height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    for row, (cells, name) in enumerate(zip(rows, _query_names(queries))):
        _draw_row(axes, canvas, layout, layout.row_top(row), _query_header(name, canvas_width - 2 * MARGIN), cells)
    axes.imshow(canvas, interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.text(
            canvas_width / 2, MARGIN + TITLE_HEIGHT / 2, title, ha="center", va="center", fontsize=TITLE_FONT_SIZE
        )
    legend_centre = 1 - (MARGIN + layout.heading_height - LEGEND_HEIGHT / 2) / canvas_height
    _draw_legend(axes, frames, legend_centre)
    return figure


def draw_rank_list(
    queries: Sequence[RankedImage],
    ranked: Sequence[Sequence[RankedImage]],
    out: str | Path,
    title: str | None = None,
    image_size: tuple[int, int] = (128, 64),
    count_flags: tuple[str, str] | None = None,
) -> Path:
    """Writes the PNG ``out`` of :func:`rank_list_figure`."""
    return save_png(rank_list_figure(queries, ranked, title, image_size, count_flags), out)
