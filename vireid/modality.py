"""Which sensor took an image: the one value every part of vireid shares (data,
models, losses, retrieval), kept here so that none of them depends on another for it."""

from __future__ import annotations

from enum import IntEnum


class Modality(IntEnum):
    """Which sensor took an image. Stored as int8 in arrays and files."""

    VISIBLE = 0
    INFRARED = 1
