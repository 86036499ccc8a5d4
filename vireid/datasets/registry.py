"""The registered datasets by name, their protocols by name, and reading a protocol's trial.

Everything outside the dataset modules goes through here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import warnings
from pathlib import Path

from vireid.data.images import IMAGE_SUFFIXES
from vireid.data.splits import QueryGallery, Split
from vireid.datasets.spec import DatasetSpec, GalleryOptions, Protocol, TrialRows
from vireid.errors import DatasetWarning, UserError
from vireid.modality import Modality
from vireid.plugins import registration_source

DATASETS: dict[str, DatasetSpec] = {}
"""Every registered dataset; filled by register_dataset as the dataset modules are imported."""


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` under its name, its protocols marked as its own, noting where it comes from (``source``).

    A name or a protocol name taken by another dataset is an error.

    Args:
        spec: The dataset.

    Returns:
        The registered spec: ``spec`` with its protocols' ``dataset`` and its ``source`` filled in.

    Raises:
        ValueError: Where the name or a protocol name is taken, or a protocol names another dataset.
    """
    if spec.name in DATASETS:
        raise ValueError(f"a dataset named {spec.name!r} is registered already")
    taken = {name for other in DATASETS.values() for name in other.protocol_names}
    clashes = sorted(taken & set(spec.protocol_names))
    if clashes:
        raise ValueError(f"dataset {spec.name!r}: protocol names {clashes} belong to another dataset")
    for protocol in spec.protocols:
        if protocol.dataset not in ("", spec.name):
            raise ValueError(f"protocol {protocol.name!r} names dataset {protocol.dataset!r}, not {spec.name!r}")
    protocols = tuple(dataclasses.replace(protocol, dataset=spec.name) for protocol in spec.protocols)
    DATASETS[spec.name] = dataclasses.replace(spec, protocols=protocols, source=registration_source())
    return DATASETS[spec.name]


def dataset_names() -> list[str]:
    """The names of the registered datasets, in registration order.

    Returns:
        The names.
    """
    return list(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset named ``name``.

    Args:
        name: The dataset's name (``data.dataset``).

    Returns:
        The dataset.

    Raises:
        UserError: Where no dataset has that name.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def protocol_names() -> list[str]:
    """The names of every registered dataset's protocols, dataset after dataset.

    Returns:
        The names.
    """
    return [name for spec in DATASETS.values() for name in spec.protocol_names]


def get_protocol(name: str) -> Protocol:
    """The protocol named ``name``, of whichever registered dataset has it.

    Args:
        name: The protocol's name, e.g. "sysu-all".

    Returns:
        The protocol.

    Raises:
        UserError: Where no dataset has a protocol of that name.
    """
    for spec in DATASETS.values():
        for protocol in spec.protocols:
            if protocol.name == name:
                return protocol
    raise UserError(f"--protocol: unknown protocol {name!r}; expected one of {', '.join(protocol_names())}")


def trial_rows(
    protocol: Protocol, test_images: Split, trial: int, options: GalleryOptions = GalleryOptions()
) -> TrialRows:
    """Rows of ``test_images`` forming the query and gallery of ``trial`` of ``protocol``.

    Where the dataset trains one model per trial (RegDB), ``test_images``
    already is that trial's test set. ``options`` apply where the dataset has
    official draws (SYSU-MM01).

    Args:
        protocol: The protocol.
        test_images: The dataset's test images (one trial's, where it trains one model per trial).
        trial: The trial's number.
        options: How the gallery is drawn, where the dataset offers a choice.

    Returns:
        The query rows and the gallery rows.
    """
    return get_dataset(protocol.dataset).select_trial_rows(test_images, protocol.mode, trial, options)


def read_trial_split(
    protocol: Protocol | str, root: str | Path, trial: int, options: GalleryOptions = GalleryOptions()
) -> QueryGallery:
    """Query and gallery of one trial of ``protocol``, read from the dataset at ``root``, in protocol order.

    The official permutations are read from the root when ``options`` ask for them.

    Args:
        protocol: The protocol, or its name.
        root: The dataset's folder.
        trial: The trial's number.
        options: How the gallery is drawn, where the dataset offers a choice.

    Returns:
        The trial's query and gallery images.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    dataset, root = get_dataset(protocol.dataset), Path(root)
    if options.draws == "official" and options.permutations is None and dataset.official_draws is not None:
        path = root / dataset.official_draws.file
        options = dataclasses.replace(
            options, permutations=dataset.official_draws.load(path), permutation_source=str(path)
        )
    test_images = dataset.read_test_images(root, trial)
    query_rows, gallery_rows = trial_rows(protocol, test_images, trial, options)
    return QueryGallery(test_images.subset(query_rows), test_images.subset(gallery_rows))


@functools.lru_cache(maxsize=16)
def dataset_fingerprint(name: str, root: str) -> dict:
    """Which data results come from.

    The image counts per split and modality (of the dataset's first trial, where trials differ)
    and a short hash of the sorted relative paths of every image file under ``root``. It describes
    the whole folder, so RegDB's ten trials share it, and it changes when files are added, removed
    or renamed (LLCM was revised after publication). The readers' warnings are not repeated here:
    they were given when the images were read for use.

    Args:
        name: The dataset's name.
        root: The dataset's folder.

    Returns:
        The fingerprint: "dataset", "images" (counts by split, then modality), "image_files" and "files"
            (the hash).
    """
    dataset, folder = get_dataset(name), Path(root).resolve()
    trial = dataset.protocols[0].trials[0]
    counts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        splits = (
            ("train", dataset.read_training_split(folder, trial)),
            ("test", dataset.read_test_images(folder, trial)),
        )
    for split, images in splits:
        counts[split] = {modality.name.lower(): int((images.modalities == modality).sum()) for modality in Modality}
    relative = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    files = hashlib.sha256("\n".join(relative).encode()).hexdigest()[:12]
    return {"dataset": name, "images": counts, "image_files": len(relative), "files": files}


def describe_fingerprint(fingerprint: dict) -> str:
    """A fingerprint in words, for messages.

    For example 'sysu: train 1164 visible + 1164 infrared, test 276 + 276; 2880 image files, hash 3f2a...'.

    Args:
        fingerprint: What ``dataset_fingerprint`` returns.

    Returns:
        One line.
    """
    train, test = fingerprint["images"]["train"], fingerprint["images"]["test"]
    return (
        f"{fingerprint['dataset']}: train {train['visible']} visible + {train['infrared']} infrared, "
        f"test {test['visible']} + {test['infrared']}; "
        f"{fingerprint['image_files']} image files, hash {fingerprint['files']}"
    )


__all__ = [
    "DATASETS",
    "dataset_fingerprint",
    "dataset_names",
    "describe_fingerprint",
    "get_dataset",
    "get_protocol",
    "protocol_names",
    "read_trial_split",
    "register_dataset",
    "trial_rows",
]
