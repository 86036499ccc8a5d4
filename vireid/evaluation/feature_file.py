"""The feature file: a feature matrix with the images it describes, saved as .npz.

Format (version 1), one ``.npz`` archive readable with ``numpy.load(allow_pickle=False)``:

=============  ============  ==================================================
key            dtype, shape  meaning
=============  ============  ==================================================
features       float32 (N,D) one feature per image (the evaluator L2-normalises)
paths          unicode (N,)  image paths, relative to ``metadata["root"]`` when
                             they lie under it, with ``/`` separators
person_ids     int64 (N,)    person id of each image
camera_ids     int64 (N,)    camera id of each image
modalities     int8 (N,)     0 visible, 1 infrared (vireid.data.Modality)
metadata       unicode ()    JSON object: ``format`` ("vireid-features"),
                             ``version`` (1), ``dataset`` (a registered
                             dataset's name, or absent), ``root``, ``trial``
                             (one model per trial: RegDB), and
                             whatever the writer adds (checkpoint, feature kind)
=============  ============  ==================================================

A SYSU-MM01 or LLCM file holds every test image, so that each trial's query and
gallery can be picked from it; a RegDB file holds one trial's test images.

Other vireid files (the gallery index of ``vireid.retrieval``) hold these
arrays plus their own under another ``format``; ``write_feature_set`` and
``read_feature_set`` write and read any of them, described by a ``FileKind``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vireid.atomic import atomic_path
from vireid.data.splits import Split
from vireid.errors import FeatureFileError, UserError

FORMAT_NAME = "vireid-features"
FORMAT_VERSION = 1
_ARRAY_KEYS = ("features", "paths", "person_ids", "camera_ids", "modalities", "metadata")


@dataclass(frozen=True)
class FeatureSet:
    """Features of a list of images, row i describing ``images.paths[i]``.

    Attributes:
        features: (N, D) float32 features.
        images: The N images.
        metadata: What the file records besides the arrays (dataset, root, trial, model, ...).
        source: The file it was read from, for messages ("" when made in memory).
    """

    features: np.ndarray  # (N, D) float32
    images: Split
    metadata: dict = field(default_factory=dict)
    source: str = ""  # the file it was read from, for messages ("" when made in memory)

    @property
    def name(self) -> str:
        """What messages call it: its file, or the checkpoint that made it."""
        return self.source or self.metadata.get("checkpoint", "the features")

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.images):
            raise ValueError(
                f"features must be (N, D) with N = {len(self.images)} images, got shape {self.features.shape}"
            )


@dataclass(frozen=True)
class FileKind:
    """A vireid .npz file that holds a feature file's arrays (and maybe more): what readers expect of it.

    Attributes:
        format_name: Its ``metadata["format"]``.
        version: Its ``metadata["version"]``.
        description: Named in error messages, e.g. "feature file".
        error: Raised for every problem with such a file.
        extra_keys: Arrays stored beside the feature file's.
    """

    format_name: str  # metadata["format"]
    version: int  # metadata["version"]
    description: str  # named in error messages, e.g. "feature file"
    error: type[UserError]  # raised for every problem with such a file
    extra_keys: tuple[str, ...] = ()  # arrays stored beside the feature file's


FEATURE_FILE = FileKind(FORMAT_NAME, FORMAT_VERSION, "feature file", FeatureFileError)


def _stored_path(path: str, root: str | None) -> str:
    if root:
        relative = os.path.relpath(path, root)
        if not relative.startswith(".."):
            return Path(relative).as_posix()
    return Path(path).as_posix()


def write_feature_set(
    path: str | Path,
    feature_set: FeatureSet,
    kind: FileKind = FEATURE_FILE,
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``feature_set`` (and ``kind``'s extra arrays) to ``path`` atomically (temporary file, then rename).

    Args:
        path: The file to write.
        feature_set: The features, their images and metadata.
        kind: The kind of file, recorded in its metadata.
        extra_arrays: ``kind``'s extra arrays by name.

    Returns:
        The path written.
    """
    path = Path(path)
    metadata = dict(feature_set.metadata, format=kind.format_name, version=kind.version)
    root = metadata.get("root")
    images = feature_set.images
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(
                handle,
                features=np.ascontiguousarray(feature_set.features, dtype=np.float32),
                paths=np.array([_stored_path(image, root) for image in images.paths], dtype=np.str_),
                person_ids=images.person_ids,
                camera_ids=images.camera_ids,
                modalities=images.modalities,
                metadata=np.array(json.dumps(metadata, sort_keys=True), dtype=np.str_),
                **(extra_arrays or {}),
            )
    return path


def save_features(path: str | Path, feature_set: FeatureSet) -> Path:
    """Write ``feature_set`` to ``path`` atomically (temporary file, then rename).

    Args:
        path: The feature file to write.
        feature_set: The features, their images and metadata.

    Returns:
        The path written.
    """
    return write_feature_set(path, feature_set)


def _checked_metadata(path: Path, stored: np.ndarray, kind: FileKind) -> dict:
    try:
        metadata = json.loads(str(stored))
    except json.JSONDecodeError as error:
        raise kind.error(f"{path}: the 'metadata' entry is not JSON ({error})") from error
    found = metadata if isinstance(metadata, dict) else {}
    if found.get("format") != kind.format_name or found.get("version") != kind.version:
        raise kind.error(
            f"{path}: expected format {kind.format_name!r} version {kind.version}, "
            f"found {found.get('format')!r} version {found.get('version')!r}"
        )
    return metadata


def read_feature_set(
    path: str | Path, root: str | Path | None = None, kind: FileKind = FEATURE_FILE
) -> tuple[FeatureSet, dict[str, np.ndarray]]:
    """Read a file of ``kind``: its feature set and its extra arrays (``kind.extra_keys``).

    Relative image paths are joined to ``root`` (default: the stored root).
    The format is checked before the arrays, so a file of another vireid kind
    is named as such.

    Args:
        path: The file to read.
        root: The folder relative image paths are joined to; None: the stored root.
        kind: The kind of file expected.

    Returns:
        The feature set and the extra arrays by name.

    Raises:
        UserError: ``kind.error``, where the file is missing, unreadable or not of ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise kind.error(f"{path}: expected a vireid {kind.description} (.npz), but the file does not exist")
    keys = _ARRAY_KEYS + kind.extra_keys
    try:
        with np.load(path, allow_pickle=False) as archive:
            metadata = _checked_metadata(path, archive["metadata"], kind) if "metadata" in archive.files else None
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise kind.error(
                    f"{path}: not a vireid {kind.description}: expected "
                    f"arrays {', '.join(keys)}; missing {', '.join(missing)}"
                )
            arrays = {key: archive[key] for key in keys}
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise kind.error(f"{path}: expected a vireid {kind.description} (.npz), could not read it ({error})") from error
    image_root = str(root) if root is not None else metadata.get("root")
    paths = [os.path.join(image_root, stored) if image_root else stored for stored in arrays["paths"].tolist()]
    try:
        images = Split(paths, arrays["person_ids"], arrays["camera_ids"], arrays["modalities"])
        feature_set = FeatureSet(np.asarray(arrays["features"], dtype=np.float32), images, metadata, str(path))
    except ValueError as error:
        raise kind.error(f"{path}: inconsistent arrays ({error})") from error
    if len(images) == 0:
        raise kind.error(f"{path}: holds no image (0 feature rows); expected the features of at least one")
    return feature_set, {key: arrays[key] for key in kind.extra_keys}


def load_features(path: str | Path, root: str | Path | None = None) -> FeatureSet:
    """Read a feature file; relative image paths are joined to ``root`` (default: the stored root).

    Args:
        path: The feature file.
        root: The folder relative image paths are joined to; None: the stored root.

    Returns:
        The feature set.

    Raises:
        FeatureFileError: Where the file is missing, unreadable or not a feature file.
    """
    return read_feature_set(path, root)[0]
