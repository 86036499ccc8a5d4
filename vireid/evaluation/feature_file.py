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
                             ``version`` (1), ``dataset`` ("sysu", "regdb",
                             "llcm" or absent), ``root``, ``trial`` (RegDB), and
                             whatever the writer adds (checkpoint, feature kind)
=============  ============  ==================================================

A SYSU-MM01 or LLCM file holds every test image, so that each trial's query and
gallery can be picked from it; a RegDB file holds one trial's test images.
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
from vireid.errors import FeatureFileError

FORMAT_NAME = "vireid-features"
FORMAT_VERSION = 1
_ARRAY_KEYS = ("features", "paths", "person_ids", "camera_ids", "modalities", "metadata")


@dataclass(frozen=True)
class FeatureSet:
    """Features of a list of images, row i describing ``images.paths[i]``."""

    features: np.ndarray  # (N, D) float32
    images: Split
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.images):
            raise ValueError(
                f"features must be (N, D) with N = {len(self.images)} images, got shape {self.features.shape}"
            )


def _stored_path(path: str, root: str | None) -> str:
    if root:
        relative = os.path.relpath(path, root)
        if not relative.startswith(".."):
            return Path(relative).as_posix()
    return Path(path).as_posix()


def save_features(path: str | Path, feature_set: FeatureSet) -> Path:
    """Write ``feature_set`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    metadata = dict(feature_set.metadata, format=FORMAT_NAME, version=FORMAT_VERSION)
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
            )
    return path


def load_features(path: str | Path, root: str | Path | None = None) -> FeatureSet:
    """Read a feature file; relative image paths are joined to ``root`` (default: the stored root)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: expected a vireid feature file (.npz), but the file does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in _ARRAY_KEYS if key not in archive.files]
            if missing:
                raise FeatureFileError(
                    f"{path}: not a vireid feature file: expected arrays {', '.join(_ARRAY_KEYS)}; missing {', '.join(missing)}"
                )
            arrays = {key: archive[key] for key in _ARRAY_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, FeatureFileError):
            raise
        raise FeatureFileError(f"{path}: expected a vireid feature file (.npz), could not read it ({error})") from error
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as error:
        raise FeatureFileError(f"{path}: the 'metadata' entry is not JSON ({error})") from error
    if metadata.get("format") != FORMAT_NAME or metadata.get("version") != FORMAT_VERSION:
        raise FeatureFileError(
            f"{path}: expected format {FORMAT_NAME!r} version {FORMAT_VERSION}, "
            f"found {metadata.get('format')!r} version {metadata.get('version')!r}"
        )
    image_root = str(root) if root is not None else metadata.get("root")
    paths = [os.path.join(image_root, stored) if image_root else stored for stored in arrays["paths"].tolist()]
    try:
        images = Split(paths, arrays["person_ids"], arrays["camera_ids"], arrays["modalities"])
        return FeatureSet(np.asarray(arrays["features"], dtype=np.float32), images, metadata)
    except ValueError as error:
        raise FeatureFileError(f"{path}: inconsistent arrays ({error})") from error
