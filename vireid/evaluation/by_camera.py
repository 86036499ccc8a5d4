"""Results by camera, for every query camera x gallery camera pair of a protocol.

Each pair scores the protocol's queries of that camera against its gallery restricted to that camera
(each trial's own draw), under the dataset's rule, averaged over the trials.

A query whose identity has no image in that camera's gallery (or only images the scoring rule
removes, as SYSU-MM01 removes cam2 for cam3's queries) cannot be scored there: it is left out of
that cell, and the cell says how many of its queries were scored. A cell no query can be scored in,
in any trial, has no figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vireid.datasets import GalleryOptions, Protocol
from vireid.evaluation.feature_file import FeatureSet
from vireid.evaluation.metrics import NoValidQueryError
from vireid.evaluation.protocols import prepare_trials

CELL_METRICS = ("rank1", "mAP", "mINP")


@dataclass(frozen=True)
class CameraCell:
    """One query camera x gallery camera pair, over the trials.

    Attributes:
        query_camera: The queries' camera.
        gallery_camera: The gallery images' camera.
        queries: The queries of that camera, per trial (mean over trials).
        scored_queries: Of them, those with a true match in that camera's gallery, per trial.
        metrics: "rank1", "mAP" and "mINP", the mean over the trials with a scored query; None: none had one.
    """

    query_camera: int
    gallery_camera: int
    queries: float  # the queries of that camera, per trial (mean over trials)
    scored_queries: float  # of them, those with a true match in that camera's gallery, per trial
    metrics: dict[str, float] | None  # mean over the trials with a scored query; None: none had one

    def to_dict(self) -> dict:
        """The cell as results.json records it."""
        return {
            "query_camera": self.query_camera,
            "gallery_camera": self.gallery_camera,
            "queries": self.queries,
            "scored_queries": self.scored_queries,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class CameraTable:
    """Every query camera x gallery camera cell of a protocol.

    Attributes:
        protocol: The protocol.
        trials: The trials scored.
        query_cameras: The queries' cameras, ascending.
        gallery_cameras: The gallery images' cameras, ascending.
        cells: One cell per pair of cameras that met in a trial.
    """

    protocol: Protocol
    trials: tuple[int, ...]
    query_cameras: tuple[int, ...]
    gallery_cameras: tuple[int, ...]
    cells: tuple[CameraCell, ...]

    def cell(self, query_camera: int, gallery_camera: int) -> CameraCell:
        """The cell of one query camera and one gallery camera.

        Args:
            query_camera: The queries' camera.
            gallery_camera: The gallery images' camera.

        Returns:
            The cell.
        """
        return next(c for c in self.cells if (c.query_camera, c.gallery_camera) == (query_camera, gallery_camera))

    @property
    def single_pair(self) -> bool:
        """One query camera and one gallery camera: the table is the protocol's own result (RegDB)."""
        return len(self.query_cameras) == 1 and len(self.gallery_cameras) == 1

    def to_dict(self) -> dict:
        """The table as results.json records it."""
        return {
            "protocol": self.protocol.name,
            "trials": list(self.trials),
            "query_cameras": list(self.query_cameras),
            "gallery_cameras": list(self.gallery_cameras),
            "cells": [cell.to_dict() for cell in self.cells],
        }

    def printed(self) -> str:
        """What the commands print: the rank-1 table, then the mAP one."""
        return f"{self.markdown('rank1')}\n\n{self.markdown('mAP')}"

    def markdown(self, metric: str = "rank1") -> str:
        """One metric's Markdown table.

        Rows: query cameras; columns: gallery cameras; each cell '<metric> % (scored/queries)'.

        Args:
            metric: "rank1", "mAP" or "mINP".

        Returns:
            The table.
        """
        name = {"rank1": "R1", "mAP": "mAP", "mINP": "mINP"}[metric]
        header = f"| {self.protocol.name}: {name} (scored / queries) | " + " | ".join(
            f"gallery cam{camera}" for camera in self.gallery_cameras
        )
        lines = [header + " |", "|---|" + "---|" * len(self.gallery_cameras)]
        for query_camera in self.query_cameras:
            cells = []
            for gallery_camera in self.gallery_cameras:
                cell = self.cell(query_camera, gallery_camera)
                counts = f"({cell.scored_queries:.0f} / {cell.queries:.0f})"
                cells.append(f"{100 * cell.metrics[metric]:.2f} {counts}" if cell.metrics else f"– {counts}")
            lines.append(f"| query cam{query_camera} | " + " | ".join(cells) + " |")
        if self.single_pair:
            lines.append(
                f"\n{self.protocol.name}: one query camera and one gallery camera, so its one cell is the "
                "protocol's own result."
            )
        return "\n".join(lines)


def evaluate_by_camera(
    protocol: Protocol | str,
    feature_sets: Sequence[FeatureSet],
    trials: Sequence[int] | None = None,
    options: GalleryOptions = GalleryOptions(),
    device: str | torch.device | None = None,
) -> CameraTable:
    """The CameraTable of ``protocol`` on ``feature_sets`` (the same trials and draws as evaluate_protocol).

    Args:
        protocol: The protocol, or its name.
        feature_sets: The feature sets: one of every test image, or one per trial.
        trials: The trials to score; None: the default.
        options: How the gallery is drawn, where the dataset offers a choice.
        device: Where to score; None: the CPU.

    Returns:
        The table.
    """
    prepared = prepare_trials(protocol, feature_sets, trials, options, device)
    per_cell: dict[tuple[int, int], list[tuple[int, int, dict[str, float] | None]]] = {}
    query_cameras, gallery_cameras = set(), set()
    for _, position, query_rows, gallery_rows in prepared.runs:
        cameras = feature_sets[position].images.camera_ids
        query_rows, gallery_rows = np.asarray(query_rows), np.asarray(gallery_rows)
        query_cameras.update(cameras[query_rows].tolist())
        gallery_cameras.update(cameras[gallery_rows].tolist())
        for query_camera in np.unique(cameras[query_rows]).tolist():
            queries = query_rows[cameras[query_rows] == query_camera]
            for gallery_camera in np.unique(cameras[gallery_rows]).tolist():
                gallery = gallery_rows[cameras[gallery_rows] == gallery_camera]
                try:
                    metrics = prepared.scored(position, queries.tolist(), gallery.tolist(), max_rank=1)
                    scored = metrics.num_valid_queries
                    figures = {"rank1": metrics.rank(1), "mAP": metrics.mAP, "mINP": metrics.mINP}
                except NoValidQueryError:
                    scored, figures = 0, None
                per_cell.setdefault((query_camera, gallery_camera), []).append((len(queries), scored, figures))
    cells = []
    for (query_camera, gallery_camera), records in sorted(per_cell.items()):
        scored_trials = [figures for _, _, figures in records if figures is not None]
        metrics = (
            {name: float(np.mean([figures[name] for figures in scored_trials])) for name in CELL_METRICS}
            if scored_trials
            else None
        )
        cells.append(
            CameraCell(
                query_camera,
                gallery_camera,
                float(np.mean([queries for queries, _, _ in records])),
                float(np.mean([scored for _, scored, _ in records])),
                metrics,
            )
        )
    return CameraTable(
        prepared.protocol,
        tuple(trial for trial, *_ in prepared.runs),
        tuple(sorted(query_cameras)),
        tuple(sorted(gallery_cameras)),
        tuple(cells),
    )
