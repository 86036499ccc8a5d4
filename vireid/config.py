"""Typed experiment configuration: dataclasses, YAML files, dotted overrides.

A config file holds only the keys it changes; every other key keeps the
default below. An unknown key or a value of the wrong type is a ConfigError
that names the key and what is accepted. The configs the toolkit ships
(``vireid/configs/*.yaml``) are package data, found by name (``sysu_full``)
wherever vireid is installed.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, get_args, get_origin

import yaml

from vireid.errors import ConfigError
from vireid.memory import require_memory
from vireid.ranges import Range

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable


@dataclass
class DataConfig:
    dataset: str = "sysu"  # a registered dataset (vireid.datasets): sysu, regdb, llcm, or one of your own
    root: str = "data/SYSU-MM01"
    trial: int = 1  # RegDB: the trial whose train/test files are used
    height: int = 288
    width: int = 144
    # PIL's filter resizing every training and test image to height x width (vireid.data.transforms):
    # "bilinear", or "lanczos" as the reference code does it (its Image.ANTIALIAS)
    resize_filter: Literal["bilinear", "lanczos"] = "bilinear"

    RANGES: ClassVar[dict[str, Range]] = {"height": Range(16, 2048), "width": Range(8, 2048)}


@dataclass
class ModelConfig:
    """The ``model:`` section every method's own extends (vireid.method): which method, then its keys."""

    method: str = "agw"  # a registered method (vireid methods lists them); its recipe fills the keys a config omits


@dataclass
class LossConfig:
    """The ``loss:`` section every method's own extends; a method without loss keys uses this one."""


@dataclass
class TrainConfig:
    epochs: int = 80
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"  # sgd: with Nesterov momentum
    lr: float = 0.1  # new layers (heads, classifiers, parts)
    backbone_lr: float = 0.01  # the pretrained backbone
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 10  # linear warm-up: lr * (epoch + 1) / warmup_epochs
    milestones: list[int] = field(default_factory=lambda: [20, 50])  # lr x gamma at each
    gamma: float = 0.1
    identities_per_batch: int = 8
    instances_per_modality: int = 4  # a batch is P identities x (K visible + K infrared)
    steps_per_epoch: int = 0  # 0: the sampler's own count over the larger modality (vireid.data.sampler)
    # vireid.data.sampler: "balanced" (identities from successive permutations, images without replacement)
    # or "independent" (the reference's: identities drawn afresh for every batch, images with replacement)
    sampler: Literal["balanced", "independent"] = "balanced"
    padding: int = 10
    random_grayscale: float = 0.0  # probability of turning a training image gray (PIL, before the crop; DEEN: 0.5)
    cache_dir: str = ""  # decode and resize every training image once into a memory-mapped file here; "" = off
    # "device": crop/flip/normalise whole batches on the training device (needs cache_dir)
    augment_on: Literal["loader", "device"] = "loader"
    # with augment_on device: the decoded set uploaded once to the training device, batches gathered there
    # (vireid.data.resident); auto: on a GPU, when it takes at most a quarter of the free memory
    resident: Literal["auto", "always", "never"] = "auto"
    random_erasing: float = 0.0  # probability of erasing one rectangle of each training image
    # "reid": the community code's form (vireid.data.erasing); "torchvision": torchvision's RandomErasing defaults
    erasing: Literal["reid", "torchvision"] = "reid"
    erasing_fill: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])  # "reid": per channel
    erasing_area: list[float] = field(default_factory=lambda: [0.02, 0.4])  # "reid": the rectangle's share of the image
    # each modality's views of every training image: per view, the channel augmentations after the erasing
    # (vireid.data.channel: channel_exchange, adaptive_gray); [[]] is one plain view. CAJ: [[], [channel_exchange]]
    # for visible images (two views of each) and [[adaptive_gray]] for infrared ones
    visible_views: list[list[str]] = field(default_factory=lambda: [[]])
    infrared_views: list[list[str]] = field(default_factory=lambda: [[]])
    amp: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    channels_last: Literal["auto", "always", "never"] = "auto"  # auto: on GPU only
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
    # the optimizer's update as one fused kernel over all parameters (torch's fused=True) instead of a kernel
    # per tensor: auto is on a GPU only (on the CPU, fused AdamW rounds differently from the plain loop)
    fused_optimizer: Literal["auto", "always", "never"] = "auto"
    # vireid.engine.step.Compilation: the network and its loss compiled as one graph with the backward pass
    # (torch.compile); cuda_graph: the compiled step replayed as CUDA graphs (needs compile). auto: off for now
    compile: Literal["auto", "always", "never"] = "auto"
    cuda_graph: Literal["auto", "always", "never"] = "auto"
    sync_bn: bool = False  # under DDP
    # before each checkpoint, BatchNorm's running averages are replaced by the mean statistics of this many
    # batches of training images (at most an epoch's), unaugmented, with the current weights (vireid.engine.
    # batch_norm: precise BN); 0 keeps the running averages, as the references evaluate
    precise_bn_batches: int = 16
    # the evaluations during training (vireid.engine.selection.evaluation_due): after epochs (counted from 1)
    # eval_offset + eval_every, eval_offset + 2 x eval_every, ..., and after the last one when eval_last
    eval_every: int = 2  # epochs between evaluations (the reference's 2); 0: after the last epoch alone
    eval_offset: int = 0  # 1 with eval_every 2: after epochs 3, 5, ..., the reference's `epoch > 0 and epoch % 2 == 0`
    eval_last: bool = True  # false: only the epochs of the schedule, as the reference
    eval_flip: bool = False  # their test feature: test.* with this flip (the reference tests unflipped during training)
    eval_protocol: str = ""  # default: the dataset's first protocol (sysu-all, regdb-v2t, llcm-ir2vis)
    eval_trials: int = 1  # test trials scored during training (all of them in `vireid test`)
    # which evaluation picks best.pt (vireid.engine.selection): "test-rank1" (the reference's habit),
    # "test-map", "validation-map" (held-out identities; the test data never influence training), "last"
    select_on: Literal["test-rank1", "test-map", "validation-map", "last"] = "test-rank1"
    validation_fraction: float = 0.1  # validation-map: training identities held out, where the dataset lists none
    seed: int = 0
    workers: int = 2
    log_every: int = 20  # steps between JSONL lines

    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": Range(1),
        "lr": Range(0, lowest_excluded=True),
        "backbone_lr": Range(0),  # 0: a frozen backbone
        "momentum": Range(0, 1, lowest_excluded=True, highest_excluded=True),  # SGD's Nesterov needs more than 0
        "weight_decay": Range(0),
        "warmup_epochs": Range(0),
        "milestones": Range(1),
        "gamma": Range(0, lowest_excluded=True),
        "identities_per_batch": Range(2),  # the triplet losses need another identity in the batch
        "instances_per_modality": Range(1),
        "steps_per_epoch": Range(0),
        "padding": Range(0),
        "random_erasing": Range(0, 1),
        "random_grayscale": Range(0, 1),
        "erasing_area": Range(0, 1, lowest_excluded=True),
        "grad_clip": Range(0),
        "precise_bn_batches": Range(0),
        "eval_every": Range(0),
        "eval_offset": Range(0),
        "eval_trials": Range(1),
        "validation_fraction": Range(0, 0.5),
        "seed": Range(0, 2**32 - 1),  # numpy's global seed
        "workers": Range(0),
        "log_every": Range(1),
    }


@dataclass
class InferenceConfig:
    feature: str = ""  # one of the method's test embeddings (vireid methods lists them); "": its default
    after_bn: bool = True  # the embedding after the method's BNNeck (AGW's headline) or before it, where it has one
    flip: bool = False  # add the feature of the horizontally flipped image
    # how features are compared (vireid.evaluation.metrics.DISTANCES): "cosine" (L2-normalised features), or
    # "dot": the dot product of the features as the method's embedding gives them (DEEN's test.py)
    distance: Literal["cosine", "dot"] = "cosine"
    batch_size: int = 64
    rerank: bool = False  # vireid test: also score k-reciprocal re-ranked distances, in rows of their own
    rerank_k1: int = 20  # re-ranking's k-reciprocal neighbourhood (vireid.evaluation.rerank)
    rerank_k2: int = 6  # its local query expansion
    rerank_lambda: float = 0.3  # weight of the original distance beside the Jaccard distance

    RANGES: ClassVar[dict[str, Range]] = {
        "batch_size": Range(1),
        "rerank_k1": Range(1),
        "rerank_k2": Range(1),
        "rerank_lambda": Range(0, 1),
    }


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    # Python files that register methods or datasets (vireid.plugins), imported before the config is read;
    # relative paths are read from the config file's folder, and kept absolute in a run's saved config
    plugins: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the method's own section (vireid.method)
    loss: LossConfig = field(default_factory=LossConfig)  # the method's own section
    train: TrainConfig = field(default_factory=TrainConfig)
    test: InferenceConfig = field(default_factory=InferenceConfig)


SECTIONS = ("data", "model", "loss", "train", "test")
"""The sections of a config; ``model`` and ``loss`` are of the type its method declares."""


class MethodSections(Protocol):
    """What the config reader needs of a method (vireid.method.Method has it): the types of its
    ``model:`` and ``loss:`` sections, and its recipe (keys by section that a config may leave out)."""

    name: str
    model_config: type
    loss_config: type
    defaults: dict[str, dict[str, Any]]


def value_ranges(config: ExperimentConfig) -> dict[str, Range]:
    """The values each number key of ``config`` may take (vireid.ranges, declared by each section's
    ``RANGES``, the method's sections' included); a list key, each element. NaN and infinite values
    are in no range."""
    return {
        f"{section}.{name}": accepted
        for section in SECTIONS
        for name, accepted in getattr(getattr(config, section), "RANGES", {}).items()
    }


def value_range(key: str) -> Range:
    """The range of a data, train or test key (``test.rerank_k1``), which every config shares."""
    section, name = key.split(".")
    return typing.get_type_hints(ExperimentConfig)[section].RANGES[name]


def _check_ranges(config: ExperimentConfig) -> None:
    for key, accepted in value_ranges(config).items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not all(number in accepted for number in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"{key}: expected {accepted.describe()}, got {value}")


def _describe(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """``value`` as the type of ``key``, or a ConfigError naming the key and the accepted values."""
    if get_origin(annotation) is Literal:
        if value not in get_args(annotation):
            raise ConfigError(f"{key}: expected {_describe(annotation)}, got {value!r}")
        return value
    if get_origin(annotation) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {_describe(get_args(annotation)[0])}, got {value!r}")
        return [_coerce(f"{key}[{index}]", item, get_args(annotation)[0]) for index, item in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        number = _float_spelling(value) if isinstance(value, str) else value
        if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
            return float(number)
        if isinstance(number, float):
            raise ConfigError(f"{key}: expected a finite float, got {value!r}")
    elif annotation is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_describe(annotation)}, got {value!r} ({type(value).__name__})")


def _float_spelling(text: str) -> float | str:
    """The number a float key's string spells (YAML 1.1 reads ``1e-3``, with
    no dot, as a string, yet users write it for learning rates), or the string."""
    try:
        return float(text)
    except ValueError:
        return text


def _keys(section_type: type) -> dict[str, Any]:
    """A section's keys and their types: its dataclass fields (class constants such as RANGES are none)."""
    hints = typing.get_type_hints(section_type)
    return {field.name: hints[field.name] for field in dataclasses.fields(section_type)}


def _apply(section: Any, values: dict, prefix: str) -> None:
    keys = _keys(type(section))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in keys:
            nearest = difflib.get_close_matches(name, list(keys), n=1, cutoff=0.75)
            if nearest:  # a typo: the key it most likely meant
                raise ConfigError(f"{key}: unknown config key; did you mean {prefix}{nearest[0]}?")
            valid = ", ".join(f"{prefix}{choice}" for choice in keys)
            raise ConfigError(f"{key}: unknown config key; valid keys here: {valid}")
        annotation = keys[name]
        if dataclasses.is_dataclass(annotation):
            own = getattr(section, name)
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a section of keys ({', '.join(_keys(type(own)))}), got {value!r}")
            _apply(own, value, f"{key}.")
        else:
            setattr(section, name, _coerce(key, value, annotation))


def config_from_dict(values: dict, find_method: Callable[[str], MethodSections]) -> ExperimentConfig:
    """The config of nested ``values`` (keys a config file would hold): its ``model`` and ``loss``
    sections of the types its method (``find_method(model.method)``) declares, the keys its recipe
    sets filled in where ``values`` leave them out. Types, ranges and sizes are checked here; what
    needs the datasets and the methods, by vireid.recipe."""
    model = values.get("model", {})
    name = model.get("method", ModelConfig.method) if isinstance(model, dict) else ModelConfig.method
    if not isinstance(name, str):
        raise ConfigError(f"model.method: expected the name of a method, got {name!r}")
    method = find_method(name)
    config = ExperimentConfig(model=method.model_config(method=method.name), loss=method.loss_config())
    _apply(config, _with_method_defaults(values, method), "")
    _check_ranges(config)
    if len(config.train.erasing_fill) != 3:
        raise ConfigError(f"train.erasing_fill: expected 3 values (one per channel), got {config.train.erasing_fill}")
    area = config.train.erasing_area
    if len(area) != 2 or area[0] > area[1]:
        raise ConfigError(f"train.erasing_area: expected [smallest, largest] share of the image, got {area}")
    _check_batch_memory(config)
    return config


def _check_batch_memory(config: ExperimentConfig) -> None:
    """Batches whose input tensors alone (float32 images) would not fit into this machine's memory."""
    image_bytes = 3 * config.data.height * config.data.width * 4
    size = f"{config.data.height}x{config.data.width} (data.height x data.width)"
    train = config.train
    train_images = train.identities_per_batch * train.instances_per_modality
    train_images *= len(train.visible_views) + len(train.infrared_views)
    require_memory(
        train_images * image_bytes,
        f"train.identities_per_batch x train.instances_per_modality: a training batch of {train_images} images "
        f"of {size}, its input alone,",
        error=ConfigError,
    )
    require_memory(
        config.test.batch_size * image_bytes,
        f"test.batch_size: a batch of {config.test.batch_size} images of {size}, its input alone,",
        error=ConfigError,
    )


def changed_keys(before: ExperimentConfig, after: ExperimentConfig) -> list[str]:
    """The dotted keys whose values differ between two configs, in the order of the fields."""

    def flat(values: dict, prefix: str = "") -> dict[str, Any]:
        items: dict[str, Any] = {}
        for name, value in values.items():
            items.update(flat(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}": value})
        return items

    old, new = flat(config_to_dict(before)), flat(config_to_dict(after))
    return [key for key in new if old.get(key) != new[key]]


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. model.parts=6")
    return key.split("."), yaml.safe_load(raw) if raw else ""


def shipped_configs() -> dict[str, Traversable]:
    """The configs shipped inside the package, by name (``sysu_full``, ``tiny``, ...)."""
    folder = resources.files("vireid") / "configs"
    return {entry.name.removesuffix(".yaml"): entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def find_config(name_or_path: str | Path) -> Path | Traversable:
    """A YAML file's path, or a config's name (``sysu_full`` or ``sysu_full.yaml``): the
    file of that name in the current folder if there is one, else the shipped config."""
    path = Path(name_or_path)
    if path.is_dir():
        run = " (a run folder: continue its run with --resume " + str(path / "last.pt") + ")"
        raise ConfigError(
            f"{path}: expected a YAML config file, but it is a folder" + (run if (path / "last.pt").is_file() else "")
        )
    for candidate in (path, path.parent / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = shipped_configs()
    if path.parent == Path(".") and path.name.removesuffix(".yaml") in shipped:
        return shipped[path.name.removesuffix(".yaml")]
    raise ConfigError(
        f"{name_or_path}: expected a YAML config file or the name of a shipped config "
        f"({', '.join(sorted(shipped))}), but it is neither"
    )


def read_config_values(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict | None = None
) -> dict:
    """The nested values of a YAML file or shipped config name (or of ``base``, a saved config dict,
    or none), then ``key=value`` overrides applied in order. The file's ``plugins`` are made absolute
    (read from its folder); vireid.recipe.load_config turns the values into a checked config."""
    values: dict = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        path = find_config(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections, got {type(values).__name__}")
        if isinstance(path, Path) and isinstance(values.get("plugins"), list):
            folder = path.resolve().parent
            values["plugins"] = [
                str(folder / Path(item).expanduser()) if isinstance(item, str) else item for item in values["plugins"]
            ]
    for override in overrides:
        keys, value = _parse_override(override)
        section = values
        for key in keys[:-1]:
            section = section.setdefault(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"override {override!r}: {key} is a value, not a section")
        section[keys[-1]] = value
    return values


def _with_method_defaults(values: dict, method: MethodSections) -> dict:
    """``values`` with the keys ``method``'s recipe sets (its model's switches, and its loss, train,
    test and data keys) filled in where the config leaves them out."""
    merged = dict(values)
    sections = _keys(ExperimentConfig)
    sections.update(model=method.model_config, loss=method.loss_config)
    for section, defaults in method.defaults.items():
        section_type = sections.get(section)
        known = _keys(section_type) if dataclasses.is_dataclass(section_type) else {}
        unknown = sorted(set(defaults) - set(known))
        if unknown:
            raise ConfigError(f"model.method: {method.name!r} sets unknown {section} keys {unknown}")
        given = values.get(section, {})
        if isinstance(given, dict):  # else _apply names the error
            merged[section] = {**defaults, **given}
    return merged


def config_to_dict(config: ExperimentConfig) -> dict:
    return dataclasses.asdict(config)


__all__ = [
    "SECTIONS",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "LossConfig",
    "MethodSections",
    "ModelConfig",
    "TrainConfig",
    "changed_keys",
    "config_from_dict",
    "config_to_dict",
    "find_config",
    "read_config_values",
    "shipped_configs",
    "value_range",
    "value_ranges",
]
