"""Features of a user's own images (a folder or a list file) with an encoder, as a FeatureSet."""

from __future__ import annotations

from pathlib import Path

from vireid.data.image_folder import list_images, unlabelled_split
from vireid.engine.extract import extract_image_features
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.retrieval.encoders import ImageEncoder


def extract_own_images(
    encoder: ImageEncoder, source: str | Path, workers: int = 0, progress: bool = False
) -> tuple[FeatureSet, list[str]]:
    """The features of every readable image of ``source``, and the files skipped.

    The images are all of the encoder's modality, their ids unknown.

    Args:
        encoder: What turns the images into features.
        source: A folder of images or a list file.
        workers: DataLoader worker processes that read the images (0: in this process).
        progress: Show the extraction's progress.

    Returns:
        The feature set, and one message per file that could not be read and was skipped.

    Raises:
        UserError: Where no file could be read as an image.
    """
    source = Path(source)
    paths = list_images(source)
    features, readable, skipped = extract_image_features(
        encoder.encode, paths, encoder.height, encoder.width, encoder.batch_size, workers, progress
    )
    if not readable:
        raise UserError(f"{source}: none of its {len(paths)} files could be read as an image (first: {skipped[0]})")
    root = source if source.is_dir() else source.parent
    metadata = {
        "root": str(root.resolve()),
        "modality": encoder.modality.name.lower(),
        "model": encoder.signature,
        "encoder": encoder.source,
    }
    paths_read = [str(Path(paths[index]).resolve()) for index in readable]
    return FeatureSet(features, unlabelled_split(paths_read, encoder.modality), metadata), skipped
