"""Checkpoints: everything a run needs to continue exactly, written atomically."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from vireid.atomic import atomic_path
from vireid.errors import UserError
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
    """torch.save to a temporary name in the same folder, then rename: never half-written."""
    with atomic_path(path) as temporary:
        torch.save(dict(state, format=FORMAT_NAME, version=FORMAT_VERSION), temporary)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict:
    state = read_torch_file(path, "a vireid checkpoint (.pt)", CheckpointError, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a vireid checkpoint (expected format {FORMAT_NAME!r})")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, this vireid reads version {FORMAT_VERSION}")
    return state
