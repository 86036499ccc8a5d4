"""Reading the small files every dataset layout is made of (id lists, index
lists, person folders), each failure ending in a DatasetError that names the path."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path, PurePath
from typing import Callable, Iterable

from vireid.data.images import IMAGE_SUFFIXES
from vireid.data.splits import Split
from vireid.errors import DatasetError, DatasetWarning
from vireid.modality import Modality

_CAMERA_PART = re.compile(r"^cam(\d+)$")
_LABEL = re.compile(r"[0-9]+")


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a DatasetError saying what was expected there."""
    if not path.is_dir():
        raise DatasetError(f"{path}: expected {what} (a folder), but it does not exist")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: expected {what}, but the file does not exist")
    return path


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a text file, or a DatasetError naming it when it is missing or not text."""
    require_file(path, what)
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is no id
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: expected {what}, but it is not a text file ({error.reason} at byte {error.start})"
        ) from error


def read_id_list(path: Path) -> list[int]:
    """Person ids of a one-line, comma-separated id file such as SYSU's ``exp/test_id.txt``."""
    lines = [
        line.strip() for line in read_text_lines(path, "a one-line file of comma-separated person ids") if line.strip()
    ]
    if not lines:
        raise DatasetError(f"{path}: expected one line of comma-separated person ids, but the file is empty")
    if len(lines) > 1:
        raise DatasetError(f"{path}: expected ONE line of comma-separated person ids, found {len(lines)} lines")
    ids = []
    for token in lines[0].split(","):
        token = token.strip()
        if not token.isdigit():
            raise DatasetError(f"{path}: expected comma-separated integer person ids, found {token!r}")
        ids.append(int(token))
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: a person id is listed twice")
    return ids


def read_index_file(path: Path, root: Path) -> list[tuple[str, int]]:
    """Lines ``relative/path label`` of an index file, as (absolute path, label).

    Blank lines, spaces or tabs around and between the two fields and Windows line
    endings are accepted. A line of another number of fields or a label that is not a
    whole number ≥ 0 is an error naming the line; so is an image that does not exist
    under ``root`` (the first such line named, the others counted); an empty index too.
    """
    entries, missing = [], []
    for line_number, line in enumerate(
        read_text_lines(path, "an index file of lines 'relative/image/path label'"), start=1
    ):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(
                f"{path}, line {line_number}: expected 'relative/image/path label' (two fields), "
                f"found {len(parts)} field(s): {line.strip()!r}"
            )
        if not _LABEL.fullmatch(parts[1]):
            raise DatasetError(
                f"{path}, line {line_number}: expected 'relative/image/path label' with a whole-number label, "
                f"found label {parts[1]!r}"
            )
        listed = PurePath(parts[0])
        if listed.is_absolute() or ".." in listed.parts:
            raise DatasetError(
                f"{path}, line {line_number}: lists {parts[0]}, expected a path inside the dataset folder {root} "
                "(relative, without ..)"
            )
        image_path = root / listed
        if not image_path.is_file():
            missing.append((line_number, parts[0], image_path))
        entries.append((str(image_path), int(parts[1])))
    if missing:
        line_number, listed, image_path = missing[0]
        why = "is a folder, not an image file" if image_path.is_dir() else "does not exist"
        more = f" (and {len(missing) - 1} more of its lines name no image file)" if len(missing) > 1 else ""
        raise DatasetError(f"{path}, line {line_number}: lists {listed}, but {image_path} {why}{more}")
    if not entries:
        raise DatasetError(f"{path}: expected at least one 'relative/image/path label' line, the file is empty")
    return entries


def sorted_images(folder: Path) -> list[str]:
    """Full paths of the image files directly inside ``folder``, sorted as strings."""
    names = [name for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(os.path.join(folder, name) for name in names)


def camera_from_path(path: str) -> int:
    """Camera number of the last ``camN`` part of a path; DatasetError if there is none."""
    for part in reversed(Path(path).parts):
        match = _CAMERA_PART.match(part)
        if match:
            return int(match.group(1))
    raise DatasetError(f"{path}: expected a 'camN' folder in the path to give the camera id")


def person_folder_name(person_id: int) -> str:
    """The 4-digit, zero-padded folder name of a person id (SYSU-MM01, LLCM)."""
    return f"{person_id:04d}"


def _listed(person_ids: list[int]) -> str:
    """'3, 7, 12' or, beyond 20 ids, the first 20 'and N more'."""
    more = f" and {len(person_ids) - 20} more" if len(person_ids) > 20 else ""
    return ", ".join(map(str, person_ids[:20])) + more


def warn_of_ids_without_images(id_files: str, listed: Iterable[int], images: Split) -> None:
    """A DatasetWarning naming the ids that ``id_files`` list but ``images`` show no image of."""
    missing = sorted(set(listed) - set(images.person_ids.tolist()))
    if missing:
        warnings.warn(
            DatasetWarning(f"{id_files} list {len(missing)} id(s) with no image: {_listed(missing)}"), stacklevel=2
        )


def check_both_modalities(source: str, images: Split, training: bool) -> None:
    """A DatasetWarning naming the person ids of ``images`` seen in one modality only, and
    what becomes of them: left out of training (a batch takes each identity in both
    modalities), or, in a test set, queries without a match, which count in no average (the
    protocols' rule). Training images of which no id has both modalities are a DatasetError."""
    ids = {modality: set(images.person_ids[images.modalities == modality].tolist()) for modality in Modality}
    only = {
        modality: sorted(ids[modality] - ids[other])
        for modality, other in ((Modality.VISIBLE, Modality.INFRARED), (Modality.INFRARED, Modality.VISIBLE))
    }
    count = sum(map(len, only.values()))
    if not count:
        return
    found = "; ".join(f"{modality.name.lower()} only: {_listed(only[modality])}" for modality in only if only[modality])
    if training and count == len(ids[Modality.VISIBLE] | ids[Modality.INFRARED]):
        raise DatasetError(
            f"{source}: expected training identities with images of both modalities (visible and infrared), "
            f"found none ({found})"
        )
    consequence = (
        "they are left out of training, whose batches take each identity in both modalities"
        if training
        else "their queries have no match in the other modality and count in no average"
    )
    warnings.warn(
        DatasetWarning(f"{source}: {count} id(s) have images of one modality only ({found}); {consequence}"),
        stacklevel=2,
    )


def person_folder_images(
    camera_root: Path, person_ids: Iterable[int], cameras: Iterable[int], modality_of_camera: Callable[[int], Modality]
) -> Split:
    """Every image under ``camera_root/camN/<id4>/``: ids sorted, cameras in the given order, files sorted.

    Missing person folders are skipped (not every person passes every camera).
    """
    paths, person_column, camera_column = [], [], []
    cameras = tuple(cameras)
    for person_id in sorted(person_ids):
        for camera_id in cameras:
            folder = camera_root / f"cam{camera_id}" / person_folder_name(person_id)
            if folder.is_dir():
                images = sorted_images(folder)
                paths += images
                person_column += [person_id] * len(images)
                camera_column += [camera_id] * len(images)
    return Split(paths, person_column, camera_column, [modality_of_camera(camera) for camera in camera_column])
