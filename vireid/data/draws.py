"""Query and gallery selection from person folders, with the reference random draws.

SYSU-MM01 and LLCM pick their test query and gallery from ``camN/<id4>/`` person
folders. The community code (AGW and everything built on it) walks the test ids
in sorted order and, for each id, the cameras in a fixed order; the query takes
every image of each existing folder, the single-shot gallery draws ONE image
per existing folder with ``random.seed(trial)`` then ``random.choice`` over the
folder's sorted full paths. Reproducing that exact sequence of draws is what
makes galleries identical to published work.

Everything here works on a Split of all test images (read from disk, or stored
in a feature file), so the same selection serves the readers and the evaluator.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import PurePath
from typing import Sequence

import numpy as np

from vireid.data.splits import Split
from vireid.errors import DatasetError
from vireid.modality import Modality

MULTI_SHOT_IMAGES = 10
"""Gallery images per person folder in the multi-shot setting (the dataset authors' 10-shot)."""

FolderKey = tuple[int, int, int]  # (modality, person id, camera id)


class PersonFolders:
    """Rows of a Split grouped by (modality, person id, camera id), each group
    sorted by full path: the contents of one ``camN/<id4>/`` folder."""

    def __init__(self, images: Split):
        groups: dict[FolderKey, list[int]] = defaultdict(list)
        for row, key in enumerate(
            zip(images.modalities.tolist(), images.person_ids.tolist(), images.camera_ids.tolist())
        ):
            groups[key].append(row)
        self.images = images
        self.rows = {key: sorted(rows, key=lambda row: images.paths[row]) for key, rows in groups.items()}
        self.person_ids = sorted({int(person_id) for person_id in images.person_ids})

    def folder(self, modality: Modality, person_id: int, camera_id: int) -> list[int]:
        """Row indices of one folder in sorted-path order; empty if the folder does not exist."""
        return self.rows.get((int(modality), person_id, camera_id), [])

    def walk(self, modality: Modality, cameras: Sequence[int]):
        """(person id, camera id, rows) of every existing folder: ids sorted, cameras in the given order."""
        for person_id in self.person_ids:
            for camera_id in cameras:
                rows = self.folder(modality, person_id, camera_id)
                if rows:
                    yield person_id, camera_id, rows


def all_images(folders: PersonFolders, modality: Modality, cameras: Sequence[int]) -> list[int]:
    """Every image of the given cameras: the query of SYSU-MM01 and LLCM."""
    return [row for _, _, rows in folders.walk(modality, cameras) for row in rows]


def reference_draws(
    folders: PersonFolders, modality: Modality, cameras: Sequence[int], trial: int, shot: str
) -> list[int]:
    """Gallery rows drawn the way the reference code draws them.

    ``shot="single"``: ``random.seed(trial)``, then one ``random.choice`` per
    existing folder. ``shot="multi"``: the same seed scheme with
    ``random.sample(folder, min(10, len(folder)))`` per folder.
    """
    generator = random.Random(trial)  # the same stream as random.seed(trial) on the module functions
    gallery: list[int] = []
    for _, _, rows in folders.walk(modality, cameras):
        if shot == "single":
            gallery.append(generator.choice(rows))
        elif shot == "multi":
            gallery.extend(generator.sample(rows, min(MULTI_SHOT_IMAGES, len(rows))))
        else:
            raise ValueError(f"shot must be 'single' or 'multi', got {shot!r}")
    return gallery


def official_draws(
    folders: PersonFolders,
    modality: Modality,
    cameras: Sequence[int],
    trial: int,
    shot: str,
    permutations: np.ndarray,
    source: str,
) -> list[int]:
    """Gallery rows chosen by SYSU-MM01's own ``exp/rand_perm_cam.mat``.

    ``permutations`` is the loaded ``rand_perm_cam`` cell array: entry
    ``[camera - 1][0]`` holds one (trials, images) matrix of 1-based image
    numbers per person id (``[person_id - 1]``); row ``trial`` is that trial's
    permutation, of which the first 1 (single-shot) or 10 (multi-shot) numbers
    name the gallery images ``NNNN.jpg``. Cameras outer, ids inner, as the
    dataset authors' evaluation lists them.
    """
    shots = {"single": 1, "multi": MULTI_SHOT_IMAGES}.get(shot)
    if shots is None:
        raise ValueError(f"shot must be 'single' or 'multi', got {shot!r}")
    gallery: list[int] = []
    for camera_id in cameras:
        per_person = _cell(permutations, camera_id - 1, source, f"camera {camera_id}")
        for person_id in folders.person_ids:
            rows = folders.folder(modality, person_id, camera_id)
            if not rows:
                continue
            numbers = np.asarray(_cell(per_person, person_id - 1, source, f"camera {camera_id}, person {person_id}"))
            if numbers.size == 0:
                continue
            if numbers.ndim != 2 or trial >= numbers.shape[0]:
                raise DatasetError(
                    f"{source}: camera {camera_id}, person {person_id}: expected a (trials, images) "
                    f"matrix with a row for trial {trial}, found shape {numbers.shape}"
                )
            by_stem = {PurePath(folders.images.paths[row]).stem: row for row in rows}
            for number in numbers[trial][:shots]:
                stem = f"{int(number):04d}"
                if stem not in by_stem:
                    raise DatasetError(
                        f"{source}: trial {trial} names image {stem}.jpg of camera {camera_id}, "
                        f"person {person_id}, which is not among the test images"
                    )
                gallery.append(by_stem[stem])
    return gallery


def _cell(cells: np.ndarray, index: int, source: str, what: str):
    """Entry ``index`` of a MATLAB cell vector loaded by scipy (shape (n,), (n, 1) or (1, n))."""
    flat = np.asarray(cells, dtype=object).reshape(-1)
    if index >= flat.size:
        raise DatasetError(f"{source}: has no entry for {what} (it holds {flat.size})")
    return flat[index]
