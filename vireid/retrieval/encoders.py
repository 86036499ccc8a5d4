"""What turns a user's images of one modality into features.

A checkpoint's network (PyTorch) or a file `vireid export` wrote (ONNX Runtime, about twice as fast on a CPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vireid.engine.checkpoint import model_from_checkpoint
from vireid.engine.extract import batch_features, model_signature
from vireid.errors import UserError
from vireid.modality import Modality

INPUT_NAME = "images"  # of an exported file: (B, 3, H, W) float32 normalised images
OUTPUT_NAME = "features"  # (B, D) float32 L2-normalised features
ONNX_SUFFIX = ".onnx"
ONNX_BATCH_SIZE = 32


@dataclass(frozen=True)
class ImageEncoder:
    """A network that turns images of one modality into features, with what its input must be.

    Attributes:
        encode: (B, 3, H, W) normalised images -> (B, D) float32 features.
        modality: The modality of the images it takes.
        height: The images' height.
        width: The images' width.
        batch_size: The images encoded at a time.
        signature: vireid.engine.extract.feature_signature of the features it makes.
        source: The checkpoint or ONNX file.
    """

    encode: Callable[[torch.Tensor], np.ndarray]  # (B, 3, H, W) normalised images -> (B, D) float32 features
    modality: Modality
    height: int
    width: int
    batch_size: int
    signature: dict  # vireid.engine.extract.feature_signature of the features it makes
    source: str  # the checkpoint or ONNX file


def load_encoder(
    path: str | Path, modality: Modality, device: str = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> ImageEncoder:
    """The encoder of a checkpoint (``.pt``, with config overrides) or of an exported ``.onnx`` file.

    Args:
        path: The checkpoint or ONNX file.
        modality: The modality of the images to encode.
        device: Where a checkpoint's network runs (an ONNX file runs on the CPU).
        overrides: Config overrides ("key=value"), for checkpoints only.

    Returns:
        The encoder.

    Raises:
        UserError: Where overrides are given for an ONNX file, or the file cannot be used.
    """
    if Path(path).suffix.lower() == ONNX_SUFFIX:
        if overrides:
            raise UserError(f"{path}: an ONNX file's feature is fixed at export; --set applies to checkpoints only")
        return onnx_encoder(path, modality)
    return checkpoint_encoder(path, modality, device, overrides)


def checkpoint_encoder(
    path: str | Path, modality: Modality, device: str = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> ImageEncoder:
    """The encoder of a checkpoint's network: its test feature, at its config's input size and batch size.

    Args:
        path: The checkpoint.
        modality: The modality of the images to encode.
        device: Where the network runs.
        overrides: Config overrides ("key=value").

    Returns:
        The encoder.
    """
    model, config, _ = model_from_checkpoint(path, device, overrides)
    height, width = config.data.height, config.data.width

    def encode(images: torch.Tensor) -> np.ndarray:
        return batch_features(model, images.to(device), int(modality), config).float().cpu().numpy()

    return ImageEncoder(
        encode, Modality(modality), height, width, config.test.batch_size, model_signature(model, config), str(path)
    )


def _tensors_kept_elsewhere(message) -> list[str]:
    """Names of the tensors in ``message`` whose values an ONNX file keeps in other files.

    ``message`` is an ONNX protobuf (model, graph, node, ...); such tensors have ``external_data``:
    a path the file names.
    """
    import onnx
    from google.protobuf.message import Message

    if isinstance(message, onnx.TensorProto):
        external = message.data_location == onnx.TensorProto.EXTERNAL or len(message.external_data) > 0
        return [message.name] if external else []
    found = []
    for field, value in message.ListFields():
        if field.message_type is not None:  # a message, or repeated messages; not numbers, text or bytes
            for item in [value] if isinstance(value, Message) else value:
                found += _tensors_kept_elsewhere(item)
    return found


def onnx_encoder(path: str | Path, modality: Modality, threads: int | None = None) -> ImageEncoder:
    """ONNX Runtime on the CPU with the file's recorded input size.

    The file must be of ``modality`` and hold all its values itself (as `vireid export` writes it):
    ONNX Runtime reads no other file.

    Args:
        path: The ONNX file.
        modality: The modality of the images to encode.
        threads: ONNX Runtime's intra-op threads; None: torch's thread count.

    Returns:
        The encoder.

    Raises:
        UserError: Where the file is missing, unreadable, keeps values in other files, lacks vireid's
            metadata or is of the other modality.
    """
    import onnx
    import onnxruntime
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: expected an ONNX file written by `vireid export`, but it does not exist")
    contents = path.read_bytes()
    try:
        elsewhere = _tensors_kept_elsewhere(onnx.ModelProto.FromString(contents))
    except DecodeError as error:
        raise UserError(
            f"{path}: expected an ONNX file written by `vireid export`, could not read it ({error})"
        ) from None
    if elsewhere:
        raise UserError(
            f"{path}: keeps the values of {len(elsewhere)} tensors (e.g. {elsewhere[0]!r}) in other files, "
            "which `vireid export` never does; refused, no other file was read"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    try:
        session = onnxruntime.InferenceSession(contents, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise UserError(
            f"{path}: expected an ONNX file written by `vireid export`, could not load it ({error})"
        ) from error
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        recorded_modality = Modality[metadata["vireid.modality"].upper()]
        size = json.loads(metadata["vireid.input"])
        signature = json.loads(metadata["vireid.model"])
        height, width = int(size["height"]), int(size["width"])
    except (KeyError, ValueError, TypeError) as error:
        raise UserError(
            f"{path}: an ONNX file without vireid's metadata (vireid.modality, "
            "vireid.input, vireid.model); export it with `vireid export`"
        ) from error
    if recorded_modality != modality:
        raise UserError(
            f"{path}: this file computes {recorded_modality.name.lower()} features, "
            f"but the images are {Modality(modality).name.lower()}; use "
            f"the {Modality(modality).name.lower()} file of the same export"
        )

    def encode(images: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]

    return ImageEncoder(encode, recorded_modality, height, width, ONNX_BATCH_SIZE, signature, str(path))
