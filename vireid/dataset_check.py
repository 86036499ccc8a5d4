"""Checking a dataset before anything trains on it: every image the runs will read.

``check_dataset`` goes over the training split and the test images of a
registered dataset (every trial's, where the dataset has one model per trial)
and reports what it finds: the images per split, modality and camera, the
files that cannot be used (unreadable, too small to show a person) and those
of another bit depth (16-bit, float: read by their range, see
vireid.data.images). ``decode=False`` opens only each file's header (its size
and pixel format), the cheap part a training run does at its start;
``decode=True`` reads every image once, as ``vireid check`` does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vireid.data.images import DECODE_ERRORS, displayed_size, load_image, open_image, too_small, unreadable
from vireid.data.splits import Split
from vireid.datasets import get_dataset
from vireid.errors import DatasetError
from vireid.modality import Modality
from vireid.progress import track

EIGHT_BIT_MODES = ("1", "L", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "LA", "La", "CMYK", "YCbCr", "LAB", "HSV")
"""Pixel formats of 8 bits per channel (or fewer); any other is read by its range."""


@dataclass
class DatasetReport:
    """What checking a dataset found."""

    counts: Counter = field(default_factory=Counter)  # (split, modality name, camera) -> images
    unusable: dict[str, str] = field(default_factory=dict)  # path -> why it cannot be used
    deep: dict[str, str] = field(default_factory=dict)  # path -> its pixel format (16-bit, float, ...)

    def lines(self) -> list[str]:
        """The report as printed: counts, then every unusable and every deep image."""
        lines = [
            f"{split:<6} {modality:<8} camera {camera:>2}: {count} images"
            for (split, modality, camera), count in sorted(self.counts.items())
        ]
        lines += [f"cannot be used: {path}: {reason}" for path, reason in self.unusable.items()]
        lines += [f"read by its range ({mode}): {path}" for path, mode in self.deep.items()]
        return lines


def check_image(path: str, decode: bool) -> tuple[str | None, str | None]:
    """(why the image cannot be used or None, its pixel format when not 8-bit or None)."""
    try:
        with open_image(path) as image:
            mode, (height, width) = image.mode, displayed_size(image)
        if decode:
            load_image(path)
    except DatasetError as error:
        return str(error).removeprefix(f"{path}: "), None
    except DECODE_ERRORS as error:
        return str(unreadable(path, error)).removeprefix(f"{path}: "), None
    if too_small(height, width):
        return too_small(height, width), None
    return None, (None if mode in EIGHT_BIT_MODES else mode)


def check_dataset(
    name: str, root: str | Path, trial: int | None = None, decode: bool = True, progress: bool = False
) -> DatasetReport:
    """Check every image of the training split and the test images of dataset ``name`` at ``root``:
    of ``trial``'s splits where the dataset has one model per trial (``None``: every trial's)."""
    dataset, root = get_dataset(name), Path(root)
    splits: list[tuple[str, Split]] = []
    for trial in dataset.split_trials(trial):
        splits += [("train", dataset.read_training_split(root, trial)), ("test", dataset.read_test_images(root, trial))]
    report = DatasetReport()
    seen: set[str] = set()
    for split_name, images in splits:
        for path, modality, camera in zip(images.paths, images.modalities.tolist(), images.camera_ids.tolist()):
            if path in seen:  # RegDB's trials share their images
                continue
            seen.add(path)
            report.counts[(split_name, Modality(modality).name.lower(), camera)] += 1
    for path in track(sorted(seen), "check", "img", progress):
        unusable, mode = check_image(path, decode)
        if unusable:
            report.unusable[path] = unusable
        elif mode:
            report.deep[path] = mode
    return report


def require_usable_images(name: str, root: str | Path, trial: int, progress: bool = False) -> None:
    """The cheap check at the start of a run: a DatasetError naming the unusable images, if any."""
    report = check_dataset(name, root, trial, decode=False, progress=progress)
    if report.unusable:
        shown = "; ".join(f"{path}: {reason}" for path, reason in list(report.unusable.items())[:3])
        more = f" and {len(report.unusable) - 3} more" if len(report.unusable) > 3 else ""
        raise DatasetError(
            f"{len(report.unusable)} image(s) of {root} cannot be used ({shown}{more}); "
            f"`vireid check {root} --dataset {name}` lists them all"
        )


__all__ = ["DatasetReport", "check_dataset", "check_image", "require_usable_images"]
