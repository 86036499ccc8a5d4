"""SYSU-MM01: the authors' on-disk layout, training set, test protocols and synthetic layout.

Layout::

    SYSU-MM01/cam1 .. cam6/<id4>/NNNN.jpg     cam1, cam2, cam4, cam5 visible; cam3, cam6 infrared
    SYSU-MM01/exp/train_id.txt, val_id.txt, test_id.txt   one line of comma-separated ids
    SYSU-MM01/exp/rand_perm_cam.mat           the authors' gallery permutations (optional)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vireid.data.draws import PersonFolders, all_images, official_draws, reference_draws
from vireid.data.files import (
    check_both_modalities,
    person_folder_images,
    person_folder_name,
    read_id_list,
    require_dir,
    require_file,
    warn_of_ids_without_images,
)
from vireid.data.splits import Split, relabelled
from vireid.data.synthetic_plan import DatasetPlan, ImageJob, camera_subset, id_line, images_per_camera, split_ids
from vireid.datasets.registry import register_dataset
from vireid.datasets.spec import DatasetSpec, GalleryOptions, OfficialDraws, Protocol, ScoringRule, SyntheticLayout
from vireid.errors import DatasetError, UserError
from vireid.modality import Modality

VISIBLE_CAMERAS = (1, 2, 4, 5)
INFRARED_CAMERAS = (3, 6)
GALLERY_CAMERAS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
"""Visible cameras of each search mode; the query is always every cam3 and cam6 image."""

DRAWS = ("agw", "official")
PERMUTATION_FILE = "exp/rand_perm_cam.mat"
TRIALS = tuple(range(10))
PERMUTATION_TRIALS = 10


def _check_root(root: Path) -> Path:
    require_dir(root, "the SYSU-MM01 root folder (cam1..cam6/ and exp/)")
    require_dir(root / "exp", "SYSU-MM01's exp/ folder with train_id.txt, val_id.txt and test_id.txt")
    return root


def _camera_modality(camera_id: int) -> Modality:
    return Modality.INFRARED if camera_id in INFRARED_CAMERAS else Modality.VISIBLE


def _require_images(split: Split, what: str, where: Path) -> Split:
    if len(split) == 0:
        raise DatasetError(f"{where}: expected {what}, but no image was found")
    return split


def sysu_train_split(root: str | Path, include_val: bool = True) -> Split:
    """The training set: ids of train_id.txt (+ val_id.txt, as the reference trains on both).

    Visible images (cam1, 2, 4, 5) then infrared images (cam3, 6), each ids
    sorted, cameras in order, files sorted; labels re-indexed 0..K-1 by id.

    Args:
        root: The SYSU-MM01 root folder.
        include_val: Add the ids of val_id.txt.

    Returns:
        The training images.
    """
    root = _check_root(Path(root))
    person_ids = read_id_list(root / "exp" / "train_id.txt")
    if include_val:
        person_ids += read_id_list(root / "exp" / "val_id.txt")
    visible = _require_images(
        person_folder_images(root, person_ids, VISIBLE_CAMERAS, _camera_modality),
        "visible training images in cam1/2/4/5",
        root,
    )
    infrared = _require_images(
        person_folder_images(root, person_ids, INFRARED_CAMERAS, _camera_modality),
        "infrared training images in cam3/6",
        root,
    )
    images = Split.concatenate([visible, infrared])
    id_files = "exp/train_id.txt and val_id.txt" if include_val else "exp/train_id.txt"
    warn_of_ids_without_images(f"{root / id_files}", person_ids, images)
    check_both_modalities(str(root), images, training=True)
    return relabelled(images)


def sysu_test_images(root: str | Path, id_file: str = "test_id.txt") -> Split:
    """Every image of the test ids (``exp/<id_file>``) in all six cameras, in protocol order.

    Args:
        root: The SYSU-MM01 root folder.
        id_file: The id file in ``exp/``.

    Returns:
        The test images.
    """
    root = _check_root(Path(root))
    person_ids = read_id_list(root / "exp" / id_file)
    images = person_folder_images(root, person_ids, (1, 2, 3, 4, 5, 6), _camera_modality)
    warn_of_ids_without_images(str(root / "exp" / id_file), person_ids, images)
    _require_images(
        images.of_modality(Modality.INFRARED), f"infrared images (cam3/cam6) of the ids in exp/{id_file}", root
    )
    _require_images(
        images.of_modality(Modality.VISIBLE), f"visible images (cam1/2/4/5) of the ids in exp/{id_file}", root
    )
    check_both_modalities(str(root), images, training=False)
    return images


def load_official_permutations(path: str | Path) -> np.ndarray:
    """The ``rand_perm_cam`` cell array of SYSU-MM01's ``exp/rand_perm_cam.mat``, its layout checked.

    One cell per camera (cam1..cam6), each a cell per person id of a (trials, images) matrix
    of 1-based image numbers, or an empty one.

    Args:
        path: The ``rand_perm_cam.mat`` file.

    Returns:
        The cell array.

    Raises:
        DatasetError: Where the file is damaged, of another kind, or not of that layout.
    """
    from scipy.io import loadmat

    path = require_file(Path(path), "SYSU-MM01's rand_perm_cam.mat (needed for draws='official')")
    try:
        content = loadmat(str(path))
    except Exception as error:  # scipy raises many types (ValueError, OSError, IndexError...) for a damaged file
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DatasetError(
            f"{path}: expected a MATLAB .mat file (as SYSU-MM01 ships it), "
            f"but it is damaged or of another kind ({reason})"
        ) from error
    if "rand_perm_cam" not in content:
        raise DatasetError(
            f"{path}: expected a variable 'rand_perm_cam', found {sorted(k for k in content if not k.startswith('__'))}"
        )
    cameras = content["rand_perm_cam"]
    _require_cells(cameras, len(VISIBLE_CAMERAS + INFRARED_CAMERAS), path, "'rand_perm_cam'", "cameras (cam1..cam6)")
    for camera_id, per_person in enumerate(cameras.reshape(-1), start=1):
        _require_cells(per_person, None, path, f"camera {camera_id}", "person ids")
        for person_id, numbers in enumerate(per_person.reshape(-1), start=1):
            _require_image_numbers(numbers, path, f"camera {camera_id}, person {person_id}")
    return cameras


def _describe(value: object) -> str:
    """What a value loaded from a .mat file is, for messages: 'a 3x4 numeric matrix', 'text', 'a struct'."""
    if not isinstance(value, np.ndarray):
        return type(value).__name__
    shape = "x".join(map(str, value.shape)) or "scalar"
    if value.dtype == object:
        return f"a {shape} cell array"
    if value.dtype.names:
        return "a struct"
    if value.dtype.kind in "US":
        return "text"
    return f"a {shape} {value.dtype} array"


def _require_cells(value: object, count: int | None, path: Path, what: str, entries: str) -> None:
    """A DatasetError unless ``value`` is a cell vector (of ``count`` entries, when given)."""
    is_vector = isinstance(value, np.ndarray) and value.dtype == object and sum(size > 1 for size in value.shape) <= 1
    if not is_vector or (count is not None and value.size != count):
        expected = f"{count} " if count is not None else ""
        raise DatasetError(
            f"{path}: expected {what} to be a cell vector of {expected}{entries}, found {_describe(value)}"
        )


def _require_image_numbers(numbers: object, path: Path, what: str) -> None:
    """A DatasetError unless ``numbers`` is empty or a (trials, images) matrix of whole numbers from 1."""
    if isinstance(numbers, np.ndarray) and numbers.dtype.kind in "iuf" and numbers.ndim == 2:
        wrong = numbers[~(np.isfinite(numbers) & (numbers >= 1) & (numbers == np.round(numbers)))]
        if wrong.size == 0:
            return
        found = f"{_describe(numbers)} holding {float(wrong[0]):g}"
    else:
        found = _describe(numbers)
    raise DatasetError(
        f"{path}: {what}: expected a (trials, images) matrix of 1-based image numbers (or an empty one), found {found}"
    )


def sysu_trial_rows(
    test_images: Split,
    mode: str = "all",
    trial: int = 0,
    shot: str = "single",
    draws: str = "agw",
    permutations: np.ndarray | None = None,
    permutation_source: str = PERMUTATION_FILE,
) -> tuple[list[int], list[int]]:
    """Rows of ``test_images`` that form the query and the gallery of one trial.

    Query: every infrared image (cam3, cam6). Gallery: ``draws="agw"``
    reproduces the reference ``random.seed(trial)`` draws; ``"official"`` reads
    the authors' permutations (``permutations``, from rand_perm_cam.mat).

    Args:
        test_images: Every test image.
        mode: The search mode, a key of GALLERY_CAMERAS ("all" or "indoor").
        trial: The trial.
        shot: "single": one gallery image per person and camera; "multi": up to 10.
        draws: "agw" or "official".
        permutations: The official permutations, for ``draws="official"``.
        permutation_source: Where they were read, for messages.

    Returns:
        The query rows and the gallery rows.

    Raises:
        ValueError: Where ``mode`` or ``draws`` is unknown, or ``draws="official"`` comes without permutations.
    """
    if mode not in GALLERY_CAMERAS:
        raise ValueError(f"SYSU-MM01 mode must be one of {sorted(GALLERY_CAMERAS)}, got {mode!r}")
    if draws not in DRAWS:
        raise ValueError(f"draws must be one of {DRAWS}, got {draws!r}")
    folders = PersonFolders(test_images)
    query_rows = all_images(folders, Modality.INFRARED, INFRARED_CAMERAS)
    cameras = GALLERY_CAMERAS[mode]
    if draws == "agw":
        return query_rows, reference_draws(folders, Modality.VISIBLE, cameras, trial, shot)
    if permutations is None:
        raise ValueError("draws='official' needs the permutations of rand_perm_cam.mat")
    return query_rows, official_draws(folders, Modality.VISIBLE, cameras, trial, shot, permutations, permutation_source)


def _select_trial_rows(
    test_images: Split, mode: str, trial: int, options: GalleryOptions
) -> tuple[list[int], list[int]]:
    source = options.permutation_source or PERMUTATION_FILE
    return sysu_trial_rows(test_images, mode, trial, options.shot, options.draws, options.permutations, source)


def _read_training_split(root: Path, trial: int) -> Split:
    """The training split (SYSU-MM01 has one, whatever the trial)."""
    return sysu_train_split(root)


def _validation_ids(root: Path) -> list[int]:
    """exp/val_id.txt: the authors' validation identities (the reference trains on them)."""
    return read_id_list(_check_root(root) / "exp" / "val_id.txt")


def _read_test_images(root: Path, trial: int) -> Split:
    """The test images (the same for every trial; trials differ in their gallery draws)."""
    return sysu_test_images(root)


def plan_synthetic(identities: int, images_per_id: int, rng: np.random.Generator) -> DatasetPlan:
    """camN/<id4>/NNNN.jpg, exp/{train,val,test}_id.txt, exp/rand_perm_cam.mat.

    Ids split like the real set (296 train, 99 val, 96 test of 491). Every
    person is seen by at least one indoor visible camera (cam1/cam2) and one
    infrared camera.

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
        raise UserError(f"--ids: a SYSU-MM01 layout needs at least 4 identities, got {identities}")
    person_ids = list(range(1, identities + 1))
    test_ids, val_ids, train_ids = split_ids(person_ids, (96 / 491, 99 / 491), rng)
    plan = DatasetPlan(
        text_files={
            "exp/train_id.txt": id_line(train_ids),
            "exp/val_id.txt": id_line(val_ids),
            "exp/test_id.txt": id_line(test_ids),
        }
    )
    folder_sizes: dict[tuple[int, int], int] = {}
    for person_id in person_ids:
        visible = camera_subset(VISIBLE_CAMERAS, 0.7, rng)
        if not {1, 2} & set(visible):
            visible.append(int(rng.choice((1, 2))))
        infrared = camera_subset(INFRARED_CAMERAS, 0.8, rng)
        for modality, cameras in ((Modality.VISIBLE, visible), (Modality.INFRARED, infrared)):
            for camera_id, count in images_per_camera(images_per_id, sorted(cameras), rng).items():
                folder_sizes[(camera_id, person_id)] = count
                for index in range(1, count + 1):
                    plan.images.append(
                        ImageJob(
                            f"cam{camera_id}/{person_folder_name(person_id)}/{index:04d}.jpg",
                            person_id,
                            modality,
                            camera_id,
                            index,
                        )
                    )
    permutations = _synthetic_permutations(folder_sizes, identities, rng)
    plan.binary_files[PERMUTATION_FILE] = lambda path: _save_permutations(path, permutations)
    return plan


def _synthetic_permutations(
    folder_sizes: dict[tuple[int, int], int], identities: int, rng: np.random.Generator
) -> np.ndarray:
    """The rand_perm_cam cell array: per camera, per person id, a (10, n) matrix of 1-based image numbers."""
    cameras = np.empty((6, 1), dtype=object)
    for camera_id in range(1, 7):
        per_person = np.empty((identities, 1), dtype=object)
        for person_id in range(1, identities + 1):
            count = folder_sizes.get((camera_id, person_id), 0)
            per_person[person_id - 1, 0] = np.array(
                [rng.permutation(count) + 1 for _ in range(PERMUTATION_TRIALS)], dtype=np.float64
            ).reshape(PERMUTATION_TRIALS, count)
        cameras[camera_id - 1, 0] = per_person
    return cameras


MAT_HEADER = b"MATLAB 5.0 MAT-file, written by vireid synth".ljust(116, b"\0")
"""The .mat file's 116-byte text header: scipy writes the time into it, and the same seed must write the same bytes."""


def _save_permutations(path: Path, permutations: np.ndarray) -> None:
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, {"rand_perm_cam": permutations})
    path.write_bytes(MAT_HEADER + buffer.getvalue()[len(MAT_HEADER) :])


SYSU = register_dataset(
    DatasetSpec(
        name="sysu",
        title="SYSU-MM01",
        training_identities=395,
        description="SYSU-MM01: 4 visible and 2 infrared cameras, indoor and outdoor; all-search and indoor-search",
        read_training_split=_read_training_split,
        read_test_images=_read_test_images,
        protocols=(
            Protocol("sysu-all", "all", "infrared (cam3, cam6)", "visible (cam1, cam2, cam4, cam5)", TRIALS),
            Protocol("sysu-indoor", "indoor", "infrared (cam3, cam6)", "visible (cam1, cam2)", TRIALS),
        ),
        select_trial_rows=_select_trial_rows,
        scoring=ScoringRule(removed_camera_pairs=((3, 2),), identity_deduplicated_cmc=True),
        official_draws=OfficialDraws(PERMUTATION_FILE, load_official_permutations),
        synthetic=SyntheticLayout(plan_synthetic, identities=120, images_per_id=12),
        validation_ids=_validation_ids,
    )
)
