"""A user's own images: a folder searched recursively, or a text file listing image paths.

Unlike the dataset readers, nothing here is an official layout: person and
camera ids are unknown (-1), and a file that cannot be decoded is skipped and
reported rather than ending the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from vireid.data.images import IMAGE_SUFFIXES, load_image
from vireid.data.splits import Split
from vireid.errors import DatasetError, UserError
from vireid.modality import Modality

UNKNOWN_ID = -1


def list_images(source: str | Path) -> list[str]:
    """Image paths of ``source``: every file with an image suffix below a folder
    (sorted), or the lines of a list file (relative lines are taken from the
    list file's folder; blank lines and ``#`` comments are skipped)."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(
            str(path) for path in source.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
        if not paths:
            raise UserError(
                f"{source}: expected image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or below, found none"
            )
        return paths
    if source.is_file():
        try:
            lines = source.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is no path
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(
                f"{source}: expected a folder of images or a text file listing image paths ({error})"
            ) from error
        paths = [
            str(source.parent / line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")
        ]
        if not paths:
            raise UserError(f"{source}: expected a list of image paths, one per line; the file lists none")
        return paths
    raise UserError(f"{source}: expected a folder of images or a text file listing image paths, but it does not exist")


def unlabelled_split(paths: list[str], modality: Modality) -> Split:
    """The images as a Split of one modality with unknown person and camera ids."""
    unknown = [UNKNOWN_ID] * len(paths)
    return Split(paths, unknown, unknown, [int(modality)] * len(paths))


class ImageFiles(Dataset):
    """Images by path; an unreadable one yields ``None`` and the reason, not an exception."""

    def __init__(self, paths: list[str], transform: Callable):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            return self.transform(load_image(self.paths[index])), index, None
        except DatasetError as error:
            return None, index, str(error)


def collate_readable(
    batch: list[tuple[torch.Tensor | None, int, str | None]],
) -> tuple[torch.Tensor | None, list[int], list[str]]:
    """(B', 3, H, W) images that could be read (None if none), their indices, the reasons of the others."""
    readable = [(image, index) for image, index, _ in batch if image is not None]
    images = torch.stack([image for image, _ in readable]) if readable else None
    return images, [index for _, index in readable], [reason for image, _, reason in batch if image is None]
