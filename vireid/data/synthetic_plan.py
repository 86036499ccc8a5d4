"""The plan of a synthetic dataset: every image and text file, before anything
is written, and the random choices the dataset modules' planners share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ImageJob:
    """One image to render: where it goes and what it shows."""

    relative_path: str
    person_id: int
    modality: int
    camera_id: int
    index: int  # the image's number within its person folder, for seeding


@dataclass
class DatasetPlan:
    """Every image and text file of a synthetic dataset; ``binary_files`` are
    written by a function of the target path (e.g. a MATLAB file)."""

    images: list[ImageJob] = field(default_factory=list)
    text_files: dict[str, str] = field(default_factory=dict)
    binary_files: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # relative path -> its writer


def images_per_camera(total: int, cameras: list[int], rng: np.random.Generator) -> dict[int, int]:
    """Spread ``total`` images over ``cameras`` (at most ``total`` cameras, counts differ by at most one)."""
    cameras = [int(camera) for camera in rng.permutation(cameras)][: max(1, total)]
    counts = {camera: total // len(cameras) for camera in cameras}
    for camera in cameras[: total % len(cameras)]:
        counts[camera] += 1
    return dict(sorted(counts.items()))


def camera_subset(cameras: tuple[int, ...], keep_probability: float, rng: np.random.Generator) -> list[int]:
    """A random non-empty subset of ``cameras``: not every person passes every camera."""
    kept = [camera for camera in cameras if rng.random() < keep_probability]
    return kept or [int(rng.choice(cameras))]


def split_ids(person_ids: list[int], fractions: tuple[float, ...], rng: np.random.Generator) -> list[list[int]]:
    """Partition ids at random into sorted groups of the given fractions (each non-empty; the last takes the rest)."""
    shuffled = [int(person_id) for person_id in rng.permutation(person_ids)]
    groups, start = [], 0
    for fraction in fractions:
        size = max(1, round(fraction * len(shuffled)))
        groups.append(sorted(shuffled[start : start + size]))
        start += size
    groups.append(sorted(shuffled[start:]))
    return groups


def id_line(person_ids: list[int]) -> str:
    """One line of comma-separated ids, as in SYSU-MM01's and LLCM's id files."""
    return ",".join(str(person_id) for person_id in person_ids) + "\n"


__all__ = ["DatasetPlan", "ImageJob", "camera_subset", "id_line", "images_per_camera", "split_ids"]
