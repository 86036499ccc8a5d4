"""Checkpoints: everything a run needs to continue exactly, written atomically."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from vireid.atomic import atomic_path
from vireid.config import ExperimentConfig, load_config
from vireid.errors import UserError
from vireid.methods import create_model
from vireid.models.network import CrossModalityNet
from vireid.serialization import read_torch_file

FORMAT_NAME = "vireid-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable, or not a vireid checkpoint."""


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """torch.save to a temporary name in the same folder, then rename: never half-written. Through a
    Python file, whose OSError (a full disk) torch keeps as the context of its own error."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        torch.save(dict(state, format=FORMAT_NAME, version=FORMAT_VERSION), handle)
    return Path(path)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """A checkpoint's contents (``mmap``: its tensors mapped from the file, not read: for its config and counters)."""
    state = read_torch_file(path, "a vireid checkpoint (.pt)", CheckpointError, weights_only=False, mmap=mmap)
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a vireid checkpoint (expected format {FORMAT_NAME!r})")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')!r}, this vireid reads version {FORMAT_VERSION}"
        )
    return state


def load_model_weights(model: CrossModalityNet, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a checkpoint's weights into ``model``, or say which tensors do not fit
    (another backbone, number of parts, part size, classifier...)."""
    own = model.state_dict()
    missing = [name for name in own if name not in state]
    unexpected = [name for name in state if name not in own]
    wrong_shape = [
        f"{name}: checkpoint {tuple(state[name].shape)}, network {tuple(tensor.shape)}"
        for name, tensor in own.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or wrong_shape:
        details = [
            f"{len(names)} {what} (e.g. {'; '.join(names[:2])})"
            for names, what in ((missing, "missing"), (unexpected, "unexpected"), (wrong_shape, "of another shape"))
            if names
        ]
        raise CheckpointError(f"{path}: its weights do not fit the network {model.describe()}: " + ", ".join(details))
    model.load_state_dict(state)


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> tuple[CrossModalityNet, ExperimentConfig, dict]:
    """The trained network, its config (with ``key=value`` overrides, e.g. of the
    test-time feature) and the checkpoint's contents. Weights that do not fit the
    network the config describes are a CheckpointError naming what differs."""
    checkpoint = load_checkpoint(path)
    config = load_config(None, overrides, base=checkpoint["config"])
    model = create_model(config.model, checkpoint["num_classes"], load_weights=False)
    load_model_weights(model, checkpoint["model"], path)
    return model.to(device).eval(), config, checkpoint
