"""Checkpoints: one typed record of everything a run needs to be tested and to continue exactly,
written atomically and read without running anything in the file.

The file is a dict of plain values (tensors, numbers, strings, lists, dicts: what
``torch.load(weights_only=True)`` builds), tagged ``format: vireid-checkpoint`` and ``version``.
Versions: 3 adds the method and dataset by name, the loss's own state (a centre loss's centres)
and provenance (vireid and torch versions, git commit, dataset fingerprint); 2 holds the RNG
states as lists, numbers and tensors; 1 held numpy's as numpy objects. All three are read; a
file of another version, or not a vireid checkpoint, is a CheckpointError in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import subprocess
import weakref
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import vireid
from vireid.atomic import atomic_path
from vireid.config import ExperimentConfig
from vireid.datasets import dataset_fingerprint
from vireid.errors import UserError
from vireid.method import method_of
from vireid.recipe import load_config
from vireid.serialization import read_torch_file

FORMAT_NAME = "vireid-checkpoint"
FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
MODEL_KEYS = ("config", "num_classes", "model", "epoch")
"""What every reader of a checkpoint uses: the network's config, its classifier's size, its weights, its epoch."""
TRAINING_KEYS = (*MODEL_KEYS, "optimizer", "scheduler", "scaler", "step", "rng", "metrics", "best")
"""What a resumed run restores besides."""
_KEY_TYPES = {
    **{"config": dict, "num_classes": int, "model": dict, "epoch": int, "optimizer": dict, "scheduler": dict},
    **{"scaler": dict, "step": int, "rng": dict, "metrics": dict, "best": dict},
    **{"loss": dict, "provenance": dict, "evaluated": bool, "selected_on": str},
}


@dataclass
class Checkpoint:
    """A vireid checkpoint. ``config`` is the run's whole config as a dict (its ``model:`` and
    ``loss:`` sections are the method's own); the method and the dataset are read from it. The
    sampler needs no state of its own: it draws each epoch's batches from the seed and the epoch."""

    config: dict[str, Any]
    num_classes: int
    model: dict[str, torch.Tensor]
    epoch: int
    step: int = 0
    loss: dict[str, Any] = field(default_factory=dict)  # the loss module's state (a centre loss's centres)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None  # of rng_state
    metrics: dict[str, Any] = field(default_factory=dict)  # the epoch's record, as metrics.jsonl holds it
    best: dict[str, Any] = field(default_factory=dict)  # the best evaluation so far
    evaluated: bool = True  # False while the epoch's due evaluation is not in: a resume runs it first
    selected_on: str = ""  # best.pt: the measure it was selected on
    provenance: dict[str, Any] = field(default_factory=dict)  # of provenance(); empty in files before version 3
    version: int = FORMAT_VERSION  # the format version of the file it was read from

    @property
    def method(self) -> str:
        return self.config.get("model", {}).get("method", "agw")

    @property
    def dataset(self) -> str:
        return self.config.get("data", {}).get("dataset", "sysu")

    def to_state(self) -> dict[str, Any]:
        """The plain dict written to the file, in the current format version."""
        fields = {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "version"}
        written = {key: value for key, value in fields.items() if value is not None}
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "method": self.method,
            "dataset": self.dataset,
            **written,
        }


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the checkout vireid runs from, or None (an installed release, no git)."""
    folder = Path(vireid.__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def software_versions() -> dict[str, Any]:
    """vireid's and torch's versions and the git commit of vireid's checkout (None where it is not one)."""
    return {
        "vireid": vireid.__version__,
        "git_commit": _git_commit(),
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
    }


def provenance(config: ExperimentConfig) -> dict[str, Any]:
    """Where a checkpoint comes from: the software that wrote it and the fingerprint of the training data."""
    return {**software_versions(), "data": dataset_fingerprint(config.data.dataset, str(config.data.root))}


_NUMPY_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # what unpickles an ndarray (numpy.core or numpy._core)
NUMPY_ARRAY_GLOBALS = (
    np.ndarray,
    np.dtype,
    (_NUMPY_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),  # its name in files written with numpy 1
    (_NUMPY_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),  # and with numpy 2
)
"""What a pickled numpy array names, besides its dtype's class: they build arrays, nothing runs."""
VERSION_1_GLOBALS = (
    *NUMPY_ARRAY_GLOBALS,
    type(np.dtype(np.uint32)),  # the uint32 dtype's class (numpy.dtypes.UInt32DType): its state is set on reading
)
"""What a version-1 checkpoint holds beyond tensors, numbers, strings, lists and dicts: numpy's RNG
state, an (624,) uint32 ndarray. Allowed for files that name them; they build arrays, nothing runs."""


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable or not a vireid checkpoint."""


def _plain_numpy_state(legacy_state: tuple) -> dict:
    """numpy's global generator state (``np.random.get_state()``'s tuple) as plain values: MT19937's key as 624 ints."""
    _, key, position, has_gauss, cached_gaussian = legacy_state
    return {"key": key.tolist(), "pos": int(position), "has_gauss": int(has_gauss), "gauss": float(cached_gaussian)}


def rng_state() -> dict:
    """The states of Python's, numpy's and torch's (and CUDA's) random generators, as plain values:
    Python's tuple, numpy's MT19937 key as a list of ints, torch's as byte tensors."""
    state = {
        "python": random.getstate(),
        "numpy": _plain_numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators to ``state`` (of ``rng_state``) exactly."""
    version, internal_state, gaussian = state["python"]
    random.setstate((version, tuple(internal_state), gaussian))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np.array(numpy_state["key"], dtype=np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_rng(rng: object) -> object:
    """A version-1 RNG record (numpy's state as ``np.random.get_state()``'s tuple) as ``rng_state``
    writes it; any other value as it is."""
    numpy_state = rng.get("numpy") if isinstance(rng, dict) else None
    if not (isinstance(numpy_state, tuple) and len(numpy_state) == 5 and isinstance(numpy_state[1], np.ndarray)):
        return rng
    return {**rng, "numpy": _plain_numpy_state(numpy_state)}


def _rng_problems(rng: dict) -> list[str]:
    """What keeps ``set_rng_state`` from restoring ``rng`` exactly (nothing: an empty list)."""
    python_state, numpy_state = rng.get("python"), rng.get("numpy")
    problems = []
    if not (
        isinstance(python_state, (tuple, list))
        and len(python_state) == 3
        and isinstance(python_state[1], (tuple, list))
        and len(python_state[1]) == 625
    ):
        problems.append("rng.python: expected random.getstate()'s (version, 625 integers, gauss)")
    if not (
        isinstance(numpy_state, dict)
        and {"key", "pos", "has_gauss", "gauss"} <= set(numpy_state)
        and isinstance(numpy_state["key"], list)
        and len(numpy_state["key"]) == 624
    ):
        problems.append("rng.numpy: expected numpy's MT19937 state (key of 624 integers, pos, has_gauss, gauss)")
    if not (isinstance(rng.get("torch"), torch.Tensor) and rng["torch"].dtype == torch.uint8):
        problems.append("rng.torch: expected torch's state (a byte tensor)")
    return problems


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """torch.save to a temporary name in the same folder, then rename: never half-written. Through a
    Python file, whose OSError (a full disk) torch keeps as the context of its own error."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        torch.save(checkpoint.to_state(), handle)
    return Path(path)


def host_copy(value: Any) -> Any:
    """``value`` with every dict, list and tuple in it new and every tensor copied to the CPU: a
    snapshot that later updates of the live tensors and records do not reach."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: host_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(host_copy(item) for item in value)
    return value


_OPEN_WRITERS: weakref.WeakSet[CheckpointWriter] = weakref.WeakSet()


def _finish_writes_before_fork() -> None:
    """No process is forked while a checkpoint is being written (DataLoader workers start by fork): a
    child forked from a process with a thread inside torch.save may inherit a lock held by that thread
    and hang. Runs in the forking thread before every fork; failures stay for ``wait`` to raise."""
    for writer in list(_OPEN_WRITERS):
        futures.wait(writer._pending)


os.register_at_fork(before=_finish_writes_before_fork)


class CheckpointWriter:
    """save_checkpoint on one background thread, the files in the order asked for: training goes on
    while a checkpoint is written, until the process forks (a loader starting its workers), which
    waits for the writes first. Each is a snapshot taken when asked (host_copy), written atomically
    as save_checkpoint writes; a failed write is raised by the next ``save`` or by ``wait``."""

    def __init__(self):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vireid-checkpoint")
        self._pending: list[Future] = []
        _OPEN_WRITERS.add(self)

    def save(self, path: str | Path, checkpoint: Checkpoint) -> None:
        self._raise_failure()
        fields = dataclasses.fields(checkpoint)
        snapshot = dataclasses.replace(checkpoint, **{f.name: host_copy(getattr(checkpoint, f.name)) for f in fields})
        self._pending.append(self._thread.submit(save_checkpoint, path, snapshot))

    def wait(self) -> None:
        """Until every file asked for is written; raises the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._thread.shutdown()
            _OPEN_WRITERS.discard(self)

    def _raise_failure(self) -> None:
        done = [future for future in self._pending if future.done()]
        self._pending = [future for future in self._pending if not future.done()]
        for future in done:
            future.result()


def load_checkpoint(path: str | Path, mmap: bool = False, needs: tuple[str, ...] = MODEL_KEYS) -> Checkpoint:
    """A checkpoint, read without running anything in the file (``mmap``: its tensors mapped from
    the file, not read: for its config and counters). Versions 1 and 2 are read too, version 1's RNG
    record converted. The entries ``needs`` names (``MODEL_KEYS``, or ``TRAINING_KEYS`` to resume)
    must be there with their types, as must any other entry present, or a CheckpointError names them."""
    state = read_torch_file(
        path, "a vireid checkpoint (.pt)", CheckpointError, mmap=mmap, allowed_globals=VERSION_1_GLOBALS
    )
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a vireid checkpoint (expected format {FORMAT_NAME!r})")
    version = state.get("version")
    if version not in READ_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        advice = "; it was written by a newer vireid: upgrade vireid to read it" if newer else ""
        raise CheckpointError(
            f"{path}: checkpoint version {version!r}, this vireid reads versions "
            f"{', '.join(map(str, READ_VERSIONS))}{advice}"
        )
    missing = [key for key in needs if key not in state]
    if missing:
        raise CheckpointError(
            f"{path}: expected a vireid checkpoint with {', '.join(needs)}; it lacks {', '.join(missing)}"
        )
    if version == 1 and "rng" in state:
        state["rng"] = _plain_rng(state["rng"])
    problems = [
        f"{key}: expected a {_KEY_TYPES[key].__name__}, found {type(state[key]).__name__}"
        for key in _KEY_TYPES
        if key in state and (key in needs or state[key] is not None) and not isinstance(state[key], _KEY_TYPES[key])
    ]
    if not problems and "model" in needs:
        not_tensor = next((name for name, value in state["model"].items() if not isinstance(value, torch.Tensor)), None)
        if not_tensor is not None:
            problems.append(
                f"model: expected tensors, found a {type(state['model'][not_tensor]).__name__} for {not_tensor!r}"
            )
    if not problems and "rng" in needs:
        problems += _rng_problems(state["rng"])
    if problems:
        raise CheckpointError(f"{path}: not a checkpoint as vireid writes them: {'; '.join(problems)}")
    names = {item.name for item in dataclasses.fields(Checkpoint)} - {"version"}
    defaults = {"config": {}, "num_classes": 0, "model": {}, "epoch": 0}  # for readers that need less (needs=())
    return Checkpoint(**{**defaults, **{key: state[key] for key in names if key in state}}, version=version)


def load_model_weights(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, config: ExperimentConfig
) -> None:
    """Load a checkpoint's weights into ``model`` (the network of ``config``), or say which tensors
    do not fit (another backbone, number of parts, part size, classifier...)."""
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
        network = method_of(config).describe(model, config)
        raise CheckpointError(f"{path}: its weights do not fit the network {network}: " + ", ".join(details))
    model.load_state_dict(state)


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> tuple[nn.Module, ExperimentConfig, Checkpoint]:
    """The trained network, its config (with ``key=value`` overrides, e.g. of the
    test-time feature) and the checkpoint's contents. Weights that do not fit the
    network the config describes are a CheckpointError naming what differs."""
    checkpoint = load_checkpoint(path)
    config = load_config(None, overrides, base=checkpoint.config)
    model = method_of(config).build_model(config, checkpoint.num_classes, load_weights=False)
    load_model_weights(model, checkpoint.model, path, config)
    return model.to(device).eval(), config, checkpoint
