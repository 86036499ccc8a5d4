"""The registered datasets, by name, and their protocols, by name."""

from __future__ import annotations

from vireid.datasets.spec import DatasetSpec, Protocol
from vireid.errors import UserError

DATASETS: dict[str, DatasetSpec] = {}
"""Every registered dataset; filled by register_dataset as the dataset modules are imported."""


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` under its name; a name or protocol name taken by another dataset is an error."""
    if spec.name in DATASETS:
        raise ValueError(f"a dataset named {spec.name!r} is registered already")
    taken = {name for other in DATASETS.values() for name in other.protocol_names}
    clashes = sorted(taken & set(spec.protocol_names))
    if clashes:
        raise ValueError(f"dataset {spec.name!r}: protocol names {clashes} belong to another dataset")
    for protocol in spec.protocols:
        if protocol.dataset != spec.name:
            raise ValueError(f"protocol {protocol.name!r} names dataset {protocol.dataset!r}, not {spec.name!r}")
    DATASETS[spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def protocol_names() -> list[str]:
    return [name for spec in DATASETS.values() for name in spec.protocol_names]


def get_protocol(name: str) -> Protocol:
    for spec in DATASETS.values():
        for protocol in spec.protocols:
            if protocol.name == name:
                return protocol
    raise UserError(f"--protocol: unknown protocol {name!r}; expected one of {', '.join(protocol_names())}")


__all__ = ["DATASETS", "dataset_names", "get_dataset", "get_protocol", "protocol_names", "register_dataset"]
