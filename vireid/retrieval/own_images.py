"""Features of a user's own images (a folder or a list file) with a trained model, as a FeatureSet."""
from __future__ import annotations

from pathlib import Path

from vireid.config import ExperimentConfig
from vireid.data.image_folder import list_images, unlabelled_split
from vireid.data.splits import Modality
from vireid.engine.extract import extract_image_features, feature_signature
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.models.network import CrossModalityNet


def extract_own_images(
    model: CrossModalityNet,
    config: ExperimentConfig,
    source: str | Path,
    modality: Modality,
    device: str = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> tuple[FeatureSet, list[str]]:
    """The features of every readable image of ``source`` (all of ``modality``, ids
    unknown) and one message per file that could not be read and was skipped."""
    source = Path(source)
    paths = list_images(source)
    features, readable, skipped = extract_image_features(
        model, paths, modality, config.test, config.data.height, config.data.width, device, workers, progress
    )
    if not readable:
        raise UserError(f"{source}: none of its {len(paths)} files could be read as an image (first: {skipped[0]})")
    root = source if source.is_dir() else source.parent
    metadata = {
        "root": str(root.resolve()),
        "modality": Modality(modality).name.lower(),
        "model": feature_signature(config.model, config.test, config.data.height, config.data.width, features.shape[1]),
    }
    paths_read = [str(Path(paths[index]).resolve()) for index in readable]
    return FeatureSet(features, unlabelled_split(paths_read, modality), metadata), skipped
