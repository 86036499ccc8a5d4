"""LLCM: the low-light cross-modality dataset's layout, test protocols and synthetic layout.

Layout::

    LLCM/idx/train_vis.txt, idx/train_nir.txt   lines "relative/path label"
    LLCM/idx/test_id.txt                       one line of comma-separated ids
    LLCM/test_vis/cam1..cam9/<id4>/...          visible test images
    LLCM/test_nir/cam1,2,4..9/<id4>/...         near-infrared test images (no cam3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.data.draws import PersonFolders, all_images, reference_draws
from vireid.data.files import (
    camera_from_path,
    check_both_modalities,
    person_folder_images,
    person_folder_name,
    read_id_list,
    read_index_file,
    require_dir,
    warn_of_ids_without_images,
)
from vireid.data.splits import Split, relabelled
from vireid.data.synthetic_plan import DatasetPlan, ImageJob, camera_subset, id_line, images_per_camera, split_ids
from vireid.datasets.registry import register_dataset
from vireid.datasets.spec import DatasetSpec, GalleryOptions, Protocol, ScoringRule, SyntheticLayout
from vireid.errors import DatasetError, UserError
from vireid.modality import Modality

TEST_CAMERAS = {Modality.VISIBLE: (1, 2, 3, 4, 5, 6, 7, 8, 9), Modality.INFRARED: (1, 2, 4, 5, 6, 7, 8, 9)}
TEST_FOLDERS = {Modality.VISIBLE: "test_vis", Modality.INFRARED: "test_nir"}
TRAIN_INDEX_FILES = {Modality.VISIBLE: "idx/train_vis.txt", Modality.INFRARED: "idx/train_nir.txt"}
MODES = {
    "ir2vis": (Modality.INFRARED, Modality.VISIBLE, "every"),
    "vis2ir": (Modality.VISIBLE, Modality.INFRARED, "drawn"),
    "vis2ir-visible-queries": (Modality.VISIBLE, Modality.INFRARED, "every"),
}
"""Each test mode: (modality of which every image is taken, modality of which one image per person
and camera is drawn, which of the two are the queries). The LLCM test scripts extract every image of
one modality (their "query") and draw the other (their "gallery"); for VIS→IR they then transpose the
distance matrix, so the drawn near-infrared images are scored as queries against every visible image.
``vis2ir`` is that published form; ``vis2ir-visible-queries`` scores the visible images as queries,
untransposed (what AGW's train.py in the LLCM repository evaluates during training)."""
TRIALS = tuple(range(10))


def _check_root(root: Path) -> Path:
    require_dir(root, "the LLCM root folder (idx/, test_vis/, test_nir/)")
    require_dir(root / "idx", "LLCM's idx/ folder with train_vis.txt, train_nir.txt and test_id.txt")
    return root


def llcm_train_split(root: str | Path) -> Split:
    """Training set: idx/train_vis.txt then idx/train_nir.txt in file order.

    Person id = the label column; camera id = the ``camN`` part of each path;
    labels re-indexed 0..K-1 by person id.

    Args:
        root: The LLCM root folder.

    Returns:
        The training images.
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
    check_both_modalities(f"{root / 'idx'} (train_vis.txt, train_nir.txt)", images, training=True)
    return relabelled(images)


def llcm_test_images(root: str | Path) -> Split:
    """Every test image: visible then infrared; within each, test ids sorted, cameras in order, files sorted.

    Args:
        root: The LLCM root folder.

    Returns:
        The test images.
    """
    root = _check_root(Path(root))
    person_ids = read_id_list(root / "idx" / "test_id.txt")
    parts = []
    for modality, cameras in TEST_CAMERAS.items():
        folder = TEST_FOLDERS[modality]
        modality_root = require_dir(root / folder, f"LLCM's {folder}/ folder of camN/<id4>/ test images")
        images = person_folder_images(modality_root, person_ids, cameras, lambda _camera, modality=modality: modality)
        if len(images) == 0:
            raise DatasetError(
                f"{modality_root}: expected camN/<id4>/ folders of the ids in idx/test_id.txt, found no image"
            )
        parts.append(images)
    images = Split.concatenate(parts)
    warn_of_ids_without_images(str(root / "idx" / "test_id.txt"), person_ids, images)
    check_both_modalities(str(root), images, training=False)
    return images


def llcm_trial_rows(test_images: Split, mode: str = "ir2vis", trial: int = 0) -> tuple[list[int], list[int]]:
    """Rows of the query and gallery of one trial.

    Every image of one modality, and one image per person and camera of the other drawn with
    ``random.seed(trial)`` (MODES says which is which).

    Args:
        test_images: Every test image.
        mode: One of MODES.
        trial: The trial, the seed of the draws.

    Returns:
        The query rows and the gallery rows.

    Raises:
        ValueError: Where ``mode`` is not one of MODES.
    """
    if mode not in MODES:
        raise ValueError(f"LLCM mode must be one of {sorted(MODES)}, got {mode!r}")
    every_modality, drawn_modality, queries = MODES[mode]
    folders = PersonFolders(test_images)
    every = all_images(folders, every_modality, TEST_CAMERAS[every_modality])
    drawn = reference_draws(folders, drawn_modality, TEST_CAMERAS[drawn_modality], trial, "single")
    return (every, drawn) if queries == "every" else (drawn, every)


def _select_trial_rows(
    test_images: Split, mode: str, trial: int, options: GalleryOptions
) -> tuple[list[int], list[int]]:
    """The protocol's rows: the single-shot gallery of the reference draws (no options)."""
    return llcm_trial_rows(test_images, mode, trial)


def _read_training_split(root: Path, trial: int) -> Split:
    """The training split (LLCM has one, whatever the trial)."""
    return llcm_train_split(root)


def _read_test_images(root: Path, trial: int) -> Split:
    """The test images (the same for every trial; trials differ in their gallery draws)."""
    return llcm_test_images(root)


def plan_synthetic(identities: int, images_per_id: int, rng: np.random.Generator) -> DatasetPlan:
    """{train,test}_{vis,nir}/camN/<id4>/..., idx/train_{vis,nir}.txt, idx/test_id.txt.

    About a third of the persons are test ids (351 of 1,064 in the real set).

    Args:
        identities: The number of persons.
        images_per_id: Images per person, in each modality.
        rng: The random generator.

    Returns:
        Every file of the layout.

    Raises:
        UserError: Where there are fewer than 4 identities.
    """
    if identities < 4:
        raise UserError(f"--ids: an LLCM layout needs at least 4 identities, got {identities}")
    test_ids, train_ids = split_ids(list(range(1, identities + 1)), (1 / 3,), rng)
    plan = DatasetPlan(text_files={"idx/test_id.txt": id_line(test_ids)})
    train_lines: dict[Modality, list[str]] = {Modality.VISIBLE: [], Modality.INFRARED: []}
    test_set = set(test_ids)
    for person_id in range(1, identities + 1):
        part = "test" if person_id in test_set else "train"
        for modality, suffix in ((Modality.VISIBLE, "vis"), (Modality.INFRARED, "nir")):
            cameras = camera_subset(TEST_CAMERAS[modality], 0.45, rng)
            for camera_id, count in images_per_camera(images_per_id, cameras, rng).items():
                for index in range(1, count + 1):
                    name = f"{person_folder_name(person_id)}_c{camera_id:02d}_f{index:04d}_{suffix}.jpg"
                    relative_path = f"{part}_{suffix}/cam{camera_id}/{person_folder_name(person_id)}/{name}"
                    plan.images.append(ImageJob(relative_path, person_id, modality, camera_id, index))
                    if part == "train":
                        train_lines[modality].append(f"{relative_path} {person_id}")
    for modality, index_file in TRAIN_INDEX_FILES.items():
        plan.text_files[index_file] = "\n".join(train_lines[modality]) + "\n"
    return plan


LLCM = register_dataset(
    DatasetSpec(
        name="llcm",
        title="LLCM",
        training_identities=713,
        description="LLCM: low light, 9 visible and 8 near-infrared cameras; infrared to visible and visible "
        "to infrared",
        read_training_split=_read_training_split,
        read_test_images=_read_test_images,
        protocols=(
            Protocol("llcm-ir2vis", "ir2vis", "near-infrared", "visible (one per person and camera)", TRIALS),
            Protocol(
                "llcm-vis2ir",
                "vis2ir",
                "near-infrared (one per person and camera; VIS→IR transposed, as published)",
                "visible",
                TRIALS,
            ),
            Protocol(
                "llcm-vis2ir-visible-queries",
                "vis2ir-visible-queries",
                "visible",
                "near-infrared (one per person and camera)",
                TRIALS,
                by_default=False,
            ),
        ),
        select_trial_rows=_select_trial_rows,
        scoring=ScoringRule(remove_same_person_same_camera=True, identity_deduplicated_cmc=True),
        synthetic=SyntheticLayout(plan_synthetic, identities=90, images_per_id=12),
    )
)
