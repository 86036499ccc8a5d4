"""LLCM reader: the low-light cross-modality dataset's layout and test protocol.

Layout::

    LLCM/idx/train_vis.txt, idx/train_nir.txt   lines "relative/path label"
    LLCM/idx/test_id.txt                       one line of comma-separated ids
    LLCM/test_vis/cam1..cam9/<id4>/...          visible test images
    LLCM/test_nir/cam1,2,4..9/<id4>/...         near-infrared test images (no cam3)
"""
from __future__ import annotations

from pathlib import Path

from vireid.data.draws import PersonFolders, all_images, reference_draws
from vireid.data.files import camera_from_path, person_folder_images, read_id_list, read_index_file, require_dir
from vireid.data.splits import Modality, QueryGallery, Split, relabel
from vireid.errors import DatasetError

TEST_CAMERAS = {Modality.VISIBLE: (1, 2, 3, 4, 5, 6, 7, 8, 9), Modality.INFRARED: (1, 2, 4, 5, 6, 7, 8, 9)}
TEST_FOLDERS = {Modality.VISIBLE: "test_vis", Modality.INFRARED: "test_nir"}
TRAIN_INDEX_FILES = {Modality.VISIBLE: "idx/train_vis.txt", Modality.INFRARED: "idx/train_nir.txt"}
MODES = {"ir2vis": (Modality.INFRARED, Modality.VISIBLE), "vis2ir": (Modality.VISIBLE, Modality.INFRARED)}
"""(query modality, gallery modality) of each test mode."""


def _check_root(root: Path) -> Path:
    require_dir(root, "the LLCM root folder (idx/, test_vis/, test_nir/)")
    require_dir(root / "idx", "LLCM's idx/ folder with train_vis.txt, train_nir.txt and test_id.txt")
    return root


def llcm_train_split(root: str | Path) -> Split:
    """Training set: idx/train_vis.txt then idx/train_nir.txt in file order.

    Person id = the label column; camera id = the ``camN`` part of each path;
    labels re-indexed 0..K-1 by person id.
    """
    root = _check_root(Path(root))
    parts = []
    for modality, index_file in TRAIN_INDEX_FILES.items():
        entries = read_index_file(root / index_file, root)
        paths = [path for path, _ in entries]
        parts.append(
            Split(
                paths=paths,
                person_ids=[label for _, label in entries],
                camera_ids=[camera_from_path(path) for path in paths],
                modalities=[modality] * len(entries),
            )
        )
    images = Split.concatenate(parts)
    return Split(images.paths, images.person_ids, images.camera_ids, images.modalities, relabel(images.person_ids))


def llcm_test_images(root: str | Path) -> Split:
    """Every test image: visible then infrared; within each, test ids sorted, cameras in order, files sorted."""
    root = _check_root(Path(root))
    person_ids = read_id_list(root / "idx" / "test_id.txt")
    parts = []
    for modality, cameras in TEST_CAMERAS.items():
        folder = TEST_FOLDERS[modality]
        modality_root = require_dir(root / folder, f"LLCM's {folder}/ folder of camN/<id4>/ test images")
        images = person_folder_images(modality_root, person_ids, cameras, lambda _camera, modality=modality: modality)
        if len(images) == 0:
            raise DatasetError(f"{modality_root}: expected camN/<id4>/ folders of the ids in idx/test_id.txt, found no image")
        parts.append(images)
    return Split.concatenate(parts)


def llcm_trial_rows(test_images: Split, mode: str = "ir2vis", trial: int = 0) -> tuple[list[int], list[int]]:
    """Rows of the query (every image of the query modality) and single-shot gallery of one trial."""
    if mode not in MODES:
        raise ValueError(f"LLCM mode must be one of {sorted(MODES)}, got {mode!r}")
    query_modality, gallery_modality = MODES[mode]
    folders = PersonFolders(test_images)
    query_rows = all_images(folders, query_modality, TEST_CAMERAS[query_modality])
    return query_rows, reference_draws(folders, gallery_modality, TEST_CAMERAS[gallery_modality], trial, "single")


def llcm_test_split(root: str | Path, mode: str = "ir2vis", trial: int = 0) -> QueryGallery:
    """Query and gallery of LLCM trial ``trial`` read from ``root``, in protocol order."""
    test_images = llcm_test_images(root)
    query_rows, gallery_rows = llcm_trial_rows(test_images, mode, trial)
    return QueryGallery(test_images.subset(query_rows), test_images.subset(gallery_rows))
