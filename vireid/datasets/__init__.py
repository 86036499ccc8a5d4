"""The datasets vireid reads, one module each, found by name.

Each module of this package describes one dataset in a DatasetSpec and
registers it. Importing the package imports every module in it, so a new
dataset is one new file here (the docs, "Add a dataset").
"""

from vireid.datasets.registry import (
    DATASETS,
    dataset_fingerprint,
    dataset_names,
    describe_fingerprint,
    get_dataset,
    get_protocol,
    protocol_names,
    read_trial_split,
    register_dataset,
    trial_rows,
)
from vireid.datasets.spec import DatasetSpec, GalleryOptions, OfficialDraws, Protocol, ScoringRule, SyntheticLayout
from vireid.discovery import import_submodules

import_submodules(__path__, __name__, first=("sysu", "regdb", "llcm"))  # the order tables list them in

__all__ = [
    "DATASETS",
    "dataset_fingerprint",
    "describe_fingerprint",
    "DatasetSpec",
    "GalleryOptions",
    "OfficialDraws",
    "Protocol",
    "ScoringRule",
    "SyntheticLayout",
    "dataset_names",
    "get_dataset",
    "get_protocol",
    "protocol_names",
    "read_trial_split",
    "register_dataset",
    "trial_rows",
]
