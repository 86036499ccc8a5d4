"""RegDB: the per-trial index files, the two test directions and the synthetic layout.

Layout::

    RegDB/Visible/..., RegDB/Thermal/...        images (paths in the index files are relative to the root)
    RegDB/idx/{train,test}_{visible,thermal}_{t}.txt   t = 1..10, lines "relative/path.bmp label"

A model is trained per trial on that trial's train files and tested on its test
files. RegDB has one camera per modality: camera 1 is visible, camera 2 thermal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.data.files import check_both_modalities, read_index_file, require_dir
from vireid.data.splits import Split, relabelled
from vireid.data.synthetic_plan import DatasetPlan, ImageJob, split_ids
from vireid.datasets.registry import register_dataset
from vireid.datasets.spec import DatasetSpec, GalleryOptions, Protocol, ScoringRule, SyntheticLayout
from vireid.errors import UserError
from vireid.modality import Modality

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
    images = Split.concatenate(parts)
    source = f"{root / 'idx'} ({part}_visible_{trial}.txt, {part}_thermal_{trial}.txt)"
    check_both_modalities(source, images, training=part == "train")
    return images


def regdb_train_split(root: str | Path, trial: int = 1) -> Split:
    """Training set of one trial, labels re-indexed 0..K-1 by person id.

    Args:
        root: The RegDB root folder.
        trial: The trial, 1 to 10.

    Returns:
        The training images.
    """
    return relabelled(_index_split(Path(root), "train", trial))


def regdb_test_images(root: str | Path, trial: int = 1) -> Split:
    """Test images of one trial: test_visible_t then test_thermal_t.

    Args:
        root: The RegDB root folder.
        trial: The trial, 1 to 10.

    Returns:
        The test images.
    """
    return _index_split(Path(root), "test", trial)


def regdb_direction_rows(test_images: Split, direction: str = "v2t") -> tuple[list[int], list[int]]:
    """Rows of the query (every test image of one modality) and gallery (every one of the other).

    Args:
        test_images: One trial's test images.
        direction: One of DIRECTIONS.

    Returns:
        The query rows and the gallery rows.

    Raises:
        ValueError: Where ``direction`` is not one of DIRECTIONS.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"RegDB direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
    query_modality, gallery_modality = DIRECTIONS[direction]
    return (
        np.flatnonzero(test_images.modalities == query_modality).tolist(),
        np.flatnonzero(test_images.modalities == gallery_modality).tolist(),
    )


def _select_trial_rows(
    test_images: Split, direction: str, trial: int, options: GalleryOptions
) -> tuple[list[int], list[int]]:
    """The protocol's rows: ``test_images`` is already the trial's own test set."""
    return regdb_direction_rows(test_images, direction)


def plan_synthetic(identities: int, images_per_id: int, rng: np.random.Generator) -> DatasetPlan:
    """Visible/<id>/..._v_K.bmp, Thermal/<id>/..._t_K.bmp and idx files for trials 1..10.

    Each trial splits the persons at random into halves for training and test;
    the label column is the person number (0-based, as in the released files).

    Args:
        identities: The number of persons, even.
        images_per_id: Images per person, in each modality.
        rng: The random generator.

    Returns:
        Every file of the layout.

    Raises:
        UserError: Where the number of identities is odd or below 4.
    """
    if identities < 4 or identities % 2:
        raise UserError(f"--ids: a RegDB layout needs an even number of at least 4 identities, got {identities}")
    plan = DatasetPlan()
    paths: dict[tuple[int, int], list[str]] = {}
    for person_id in range(1, identities + 1):
        gender = "female" if rng.random() < 0.5 else "male"
        view = "front" if rng.random() < 0.5 else "back"
        for modality, folder, letter in ((Modality.VISIBLE, "Visible", "v"), (Modality.INFRARED, "Thermal", "t")):
            for index in range(1, images_per_id + 1):
                relative_path = f"{folder}/{person_id}/{gender}_{person_id}_{view}_{letter}_{index}.bmp"
                plan.images.append(ImageJob(relative_path, person_id, modality, CAMERAS[modality], index))
                paths.setdefault((modality, person_id), []).append(relative_path)
    for trial in TRIALS:
        test_ids, train_ids = split_ids(list(range(1, identities + 1)), (0.5,), rng)
        for part, part_ids in (("train", train_ids), ("test", test_ids)):
            for modality, name in INDEX_NAMES.items():
                lines = [f"{path} {person_id - 1}" for person_id in part_ids for path in paths[(modality, person_id)]]
                plan.text_files[f"idx/{part}_{name}_{trial}.txt"] = "\n".join(lines) + "\n"
    return plan


REGDB = register_dataset(
    DatasetSpec(
        name="regdb",
        title="RegDB",
        training_identities=206,
        description="RegDB: one visible and one thermal camera, 412 people; 10 trials, a model each; both directions",
        read_training_split=regdb_train_split,
        read_test_images=regdb_test_images,
        protocols=(
            Protocol("regdb-v2t", "v2t", "visible", "thermal", TRIALS),
            Protocol("regdb-t2v", "t2v", "thermal", "visible", TRIALS),
        ),
        select_trial_rows=_select_trial_rows,
        scoring=ScoringRule(identity_deduplicated_cmc=False),
        one_model_per_trial=True,
        synthetic=SyntheticLayout(plan_synthetic, identities=40, images_per_id=10),
    )
)
