"""RegDB reader: the per-trial index files and the two test directions.

Layout::

    RegDB/Visible/..., RegDB/Thermal/...        images (paths in the index files are relative to the root)
    RegDB/idx/{train,test}_{visible,thermal}_{t}.txt   t = 1..10, lines "relative/path.bmp label"

A model is trained per trial on that trial's train files and tested on its test
files. RegDB has one camera per modality: camera 1 is visible, camera 2 thermal.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.data.files import read_index_file, require_dir
from vireid.data.splits import Modality, QueryGallery, Split, relabel

TRIALS = tuple(range(1, 11))
CAMERAS = {Modality.VISIBLE: 1, Modality.INFRARED: 2}
INDEX_NAMES = {Modality.VISIBLE: "visible", Modality.INFRARED: "thermal"}
DIRECTIONS = {"v2t": (Modality.VISIBLE, Modality.INFRARED), "t2v": (Modality.INFRARED, Modality.VISIBLE)}
"""(query modality, gallery modality) of each test direction."""


def _index_split(root: Path, part: str, trial: int) -> Split:
    """Visible then thermal images of ``idx/{part}_{visible|thermal}_{trial}.txt``, file order kept."""
    if trial not in TRIALS:
        raise ValueError(f"RegDB trial must be one of 1..10, got {trial!r}")
    require_dir(root, "the RegDB root folder (Visible/, Thermal/, idx/)")
    require_dir(root / "idx", "RegDB's idx/ folder of train_/test_ visible/thermal index files")
    parts = []
    for modality, name in INDEX_NAMES.items():
        entries = read_index_file(root / "idx" / f"{part}_{name}_{trial}.txt", root)
        parts.append(
            Split(
                paths=[path for path, _ in entries],
                person_ids=[label for _, label in entries],
                camera_ids=[CAMERAS[modality]] * len(entries),
                modalities=[modality] * len(entries),
            )
        )
    return Split.concatenate(parts)


def regdb_train_split(root: str | Path, trial: int = 1) -> Split:
    """Training set of one trial, labels re-indexed 0..K-1 by person id."""
    images = _index_split(Path(root), "train", trial)
    return Split(images.paths, images.person_ids, images.camera_ids, images.modalities, relabel(images.person_ids))


def regdb_test_images(root: str | Path, trial: int = 1) -> Split:
    """Test images of one trial: test_visible_t then test_thermal_t."""
    return _index_split(Path(root), "test", trial)


def regdb_direction_rows(test_images: Split, direction: str = "v2t") -> tuple[list[int], list[int]]:
    """Rows of the query (every test image of one modality) and gallery (every one of the other)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"RegDB direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
    query_modality, gallery_modality = DIRECTIONS[direction]
    return (
        np.flatnonzero(test_images.modalities == query_modality).tolist(),
        np.flatnonzero(test_images.modalities == gallery_modality).tolist(),
    )


def regdb_test_split(root: str | Path, trial: int = 1, direction: str = "v2t") -> QueryGallery:
    """Query and gallery of RegDB trial ``trial`` (1..10) in direction ``v2t`` or ``t2v``."""
    test_images = regdb_test_images(root, trial)
    query_rows, gallery_rows = regdb_direction_rows(test_images, direction)
    return QueryGallery(test_images.subset(query_rows), test_images.subset(gallery_rows))
