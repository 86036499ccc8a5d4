"""`vireid import`: weights saved by a method's reference code, as a vireid checkpoint.

The reference repositories save ``torch.save({'net': net.state_dict(), 'cmc': ..., 'mAP': ...,
'mINP': ..., 'epoch': ...}, path)``. Such a file is read without running anything in it (numpy's
arrays and scalars, which hold the figures, are the only objects allowed beyond tensors); its
``net`` (or the file itself, a bare state dict) has DataParallel's ``module.`` prefixes removed,
and each tensor is renamed by the method's ``NameRules`` onto the network of the method's config
for that dataset. Every tensor of the network must receive one of the right shape, and every
tensor of the file must be renamed or be one the reference's forward never uses; otherwise one
line names what is missing, left over or of another shape, and nothing is written.

The checkpoint written is an ordinary one: ``vireid test``, ``evaluate``, ``extract``, ``search``
and ``export`` read it as they read a trained run's. Its provenance keeps the source file's name
and SHA-256, the format, and the figures the reference recorded when it saved the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vireid.config import ExperimentConfig, config_to_dict
from vireid.datasets import dataset_names, get_dataset
from vireid.engine.checkpoint import NUMPY_ARRAY_GLOBALS, Checkpoint, save_checkpoint, software_versions
from vireid.errors import UserError
from vireid.method import Method, ReferenceFormat, registered_methods
from vireid.recipe import load_config
from vireid.serialization import read_torch_file

_NUMPY_SCALAR = np.float64(0).__reduce__()[0]  # what unpickles a numpy scalar
FIGURE_GLOBALS = (
    *NUMPY_ARRAY_GLOBALS,
    type(np.dtype(np.float32)),
    type(np.dtype(np.float64)),
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),  # its name in files written with numpy 1
    (_NUMPY_SCALAR, "numpy._core.multiarray.scalar"),  # and with numpy 2
)
"""What the references' files hold beyond tensors, numbers and dicts: the CMC as a float32 ndarray,
mAP and mINP as numpy scalars. They build arrays and numbers; nothing runs."""
WHAT = "a reference checkpoint (torch.save of {'net': state_dict, 'cmc': ..., 'mAP': ...} or of a state dict)"


class ReferenceImportError(UserError):
    """A reference checkpoint that cannot be imported, in one line."""


@dataclass
class ReferenceFile:
    """What a reference checkpoint holds: its state dict (``module.`` prefixes removed) and the
    figures it recorded (``cmc``, ``mAP``, ``mINP``, ``epoch``, each where present)."""

    state: dict[str, torch.Tensor]
    reported: dict[str, Any]


def reference_formats() -> dict[str, tuple[Method, ReferenceFormat]]:
    """Every registered method's reference formats by name (plugins' included)."""
    return {fmt.name: (method, fmt) for method in registered_methods().values() for fmt in method.reference_formats}


def _figure(value: Any) -> float | list[float] | int:
    array = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    return array.tolist()


def read_reference_file(path: str | Path) -> ReferenceFile:
    """The state dict and recorded figures of a reference checkpoint, or one ReferenceImportError line."""
    content = read_torch_file(path, WHAT, ReferenceImportError, allowed_globals=FIGURE_GLOBALS)
    if not isinstance(content, dict):
        raise ReferenceImportError(f"{path}: expected {WHAT}, found a {type(content).__name__}")
    bare = "net" not in content
    state = content if bare else content["net"]
    if not isinstance(state, dict) or not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ReferenceImportError(f"{path}: expected {WHAT}; its {'content' if bare else 'net'} is not a state dict")
    state = {name.removeprefix("module."): tensor for name, tensor in state.items()}
    reported = {}
    for key in ("cmc", "mAP", "mINP", "epoch"):
        if not bare and key in content:
            try:
                reported[key] = int(content[key]) if key == "epoch" else _figure(content[key])
            except (TypeError, ValueError):
                raise ReferenceImportError(f"{path}: {key}: expected a number or an array of numbers") from None
    return ReferenceFile(state, reported)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return f"{len(names)} ({shown}{', ...' if len(names) > 3 else ''})"


def map_reference_state(
    reference: dict[str, torch.Tensor], method: Method, fmt: ReferenceFormat, config: ExperimentConfig, path: str
) -> tuple[dict[str, torch.Tensor], int]:
    """The network's state dict from the reference's tensors, and the network's number of classes
    (its classifier's rows), or one ReferenceImportError line naming what does not fit."""
    rules = method.reference_names(fmt.name, config)
    renamed, origin, unplaced = {}, {}, []
    for name, tensor in reference.items():
        ours = rules.network_name(name)
        if ours is None:
            unplaced.append(name)
        elif ours:
            renamed[ours], origin[ours] = tensor, name
    if rules.classifier not in renamed:
        raise ReferenceImportError(
            f"{path}: not a {fmt.name} checkpoint: it has no classifier weight for {rules.classifier} "
            f"({_listed(sorted(reference))} tensors in the file)"
        )
    num_classes = renamed[rules.classifier].shape[0]
    own = method.build_model(config, num_classes, load_weights=False).state_dict()
    missing = sorted(name for name in own if name not in renamed)
    unplaced += sorted(origin[ours] for ours in renamed if ours not in own)
    wrong_shape = [
        f"{name} {tuple(renamed[name].shape)}, expected {tuple(own[name].shape)}"
        for name in own
        if name in renamed and renamed[name].shape != own[name].shape
    ]
    if missing or unplaced or wrong_shape:
        problems = [
            f"{what} {_listed(names)}"
            for what, names in (
                ("missing tensors", missing),
                ("tensors with no place in the network", unplaced),
                ("tensors of another shape", wrong_shape),
            )
            if names
        ]
        raise ReferenceImportError(
            f"{path}: does not fit the {fmt.name} network of {config.name} (another format, or another "
            f"dataset's network?): {'; '.join(problems)}"
        )
    return {name: renamed[name].to(own[name].dtype).clone() for name in own}, num_classes


def import_reference(
    path: str | Path,
    format_name: str,
    dataset: str,
    out: str | Path,
    num_classes: int | None = None,
    plugins: list[str] | tuple[str, ...] = (),
    trial: int | None = None,
) -> Checkpoint:
    """Import the reference checkpoint ``path`` of ``format_name`` trained on ``dataset``, write it to
    ``out`` as a vireid checkpoint and return it. ``num_classes``: the classifier's rows the file must
    have (default: the dataset's official training identities). ``plugins``: the files that registered
    the format's method, recorded in the checkpoint's config as a training run records them. ``trial``:
    the split it was trained on, where each trial has its own model (RegDB; default: the ``trial_N`` of
    the file's name, as the references name them)."""
    formats = reference_formats()
    if dataset not in dataset_names():
        raise ReferenceImportError(f"--dataset: expected one of {', '.join(dataset_names())}, got {dataset!r}")
    if format_name not in formats:
        raise ReferenceImportError(f"--format: expected one of {', '.join(formats)}, got {format_name!r}")
    method, fmt = formats[format_name]
    spec = get_dataset(dataset)
    overrides = ["model.pretrained=none", f"model.method={method.name}"]
    if trial is not None and not spec.one_model_per_trial:
        raise ReferenceImportError(f"--trial: {dataset} has one model for every trial; give no trial")
    if spec.one_model_per_trial:
        named = re.search(r"_trial_(\d+)", Path(path).name)
        if trial is None and named is None:
            raise ReferenceImportError(
                f"{path}: {dataset} has one model per trial, and the file's name says no trial_N: give --trial"
            )
        overrides.append(f"data.trial={trial if trial is not None else int(named.group(1))}")
    config = load_config(fmt.config.format(dataset=dataset), overrides, plugins=plugins)
    reference = read_reference_file(path)
    state, classes = map_reference_state(reference.state, method, fmt, config, str(path))
    expected = num_classes or spec.training_identities
    if expected is not None and classes != expected:
        given = "--num-classes" if num_classes else f"{dataset}'s official training split"
        raise ReferenceImportError(
            f"{path}: its classifier has {classes} identities, {given} has {expected}: a model of another "
            f"dataset or split? (--num-classes {classes} imports it as it is)"
        )
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    imported = {"file": Path(path).name, "sha256": digest, "format": fmt.name, "reported": reference.reported}
    checkpoint = Checkpoint(
        config=config_to_dict(config),
        num_classes=classes,
        model=state,
        epoch=reference.reported.get("epoch", -1) + 1,  # the references count epochs from 0, vireid from 1
        selected_on=f"the reference's own choice ({fmt.name})",
        provenance={**software_versions(), "data": None, "imported": imported},  # the data it saw: unknown
    )
    save_checkpoint(out, checkpoint)
    return checkpoint


def reported_line(checkpoint: Checkpoint) -> str | None:
    """The figures the reference recorded in the file an imported checkpoint came from, in words."""
    imported = checkpoint.provenance.get("imported")
    if not imported:
        return None
    reported = imported.get("reported", {})
    figures = []
    cmc = reported.get("cmc")
    if isinstance(cmc, list):
        figures += [f"rank-{rank} {100 * cmc[rank - 1]:.2f}" for rank in (1, 5, 10, 20) if len(cmc) >= rank]
    figures += [f"{key} {100 * reported[key]:.2f}" for key in ("mAP", "mINP") if isinstance(reported.get(key), float)]
    epoch = f", epoch {reported['epoch']} counted from 0" if "epoch" in reported else ""
    recorded = ", ".join(figures) if figures else "no figures"
    return (
        f"Reported by the reference in {imported['file']} ({imported['format']}: its own test when it saved the "
        f"file{epoch}): {recorded}"
    )
