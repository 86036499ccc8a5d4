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
import math
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import yaml

from vireid.datasets import dataset_names, get_dataset
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


@dataclass
class ModelConfig:
    method: str = "agw"  # a registered method (vireid.methods); it sets parts and cmimpl unless given here
    backbone: Literal["resnet50", "resnet18"] = "resnet50"
    pretrained: str = "imagenet"  # "imagenet" (torchvision weights API), "none", or a path to a state-dict file
    last_stride: int = 1
    non_local: bool = True
    non_local_inter_channels: Literal["one", "half"] = "one"  # "one": the reference AGW quirk; "half": C/2
    gem_p: float = 3.0
    parts: int = 0  # FGFL horizontal stripes; 0 turns the local branch off
    part_dim: int = 512
    cmimpl: bool = False  # modality-specific classifiers with cross-modality mutual prediction
    ema_rate: float = 0.2  # update rate of the classifiers' slow copies


@dataclass
class LossConfig:
    label_smoothing: float = 0.0
    id_weight: float = 1.0  # global identity loss
    triplet_weight: float = 1.0  # global weighted regularised triplet
    part_id_weight: float = 1.0
    part_triplet_weight: float = 1.0
    alpha: float = 1.2  # weight of L_msid (modality-specific identity loss)
    beta: float = 0.4  # weight of L_cmp (cross-modality mutual prediction)
    cross_loss: Literal["hard", "soft", "ce", "both"] = "hard"  # see vireid.losses.mutual
    triplet: Literal["wrt", "adp"] = "wrt"  # AGW's weighted regularised triplet, or CAJ's adaptive form
    adp_alpha: float = 1.0  # adp: sharpness of the softmax weights of the distances
    adp_gamma: float = 1.0  # adp: scale of the squared difference
    adp_square: bool = True  # adp: the "enhanced squared difference" (False: softplus of the plain difference)


@dataclass
class TrainConfig:
    epochs: int = 80
    optimizer: Literal["sgd", "adamw"] = "sgd"
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
    cache_dir: str = ""  # decode and resize every training image once into a memory-mapped file here; "" = off
    # "device": crop/flip/normalise whole batches on the training device (needs cache_dir)
    augment_on: Literal["loader", "device"] = "loader"
    random_erasing: float = 0.0  # probability of erasing one rectangle of each training image
    # "reid": the community code's form (vireid.data.erasing); "torchvision": torchvision's RandomErasing defaults
    erasing: Literal["reid", "torchvision"] = "reid"
    erasing_fill: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])  # "reid": per channel
    # each modality's views of every training image: per view, the channel augmentations after the erasing
    # (vireid.data.channel: channel_exchange, adaptive_gray); [[]] is one plain view. CAJ: [[], [channel_exchange]]
    # for visible images (two views of each) and [[adaptive_gray]] for infrared ones
    visible_views: list[list[str]] = field(default_factory=lambda: [[]])
    infrared_views: list[list[str]] = field(default_factory=lambda: [[]])
    amp: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    channels_last: Literal["auto", "always", "never"] = "auto"  # auto: on GPU only
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
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


@dataclass
class InferenceConfig:
    feature: Literal["global", "parts", "both"] = "global"
    after_bn: bool = True  # global feature after the BNNeck (AGW's headline) or before it
    flip: bool = False  # average with the horizontally flipped image
    batch_size: int = 64
    rerank: bool = False  # vireid test: also score k-reciprocal re-ranked distances, in rows of their own
    rerank_k1: int = 20  # re-ranking's k-reciprocal neighbourhood (vireid.evaluation.rerank)
    rerank_k2: int = 6  # its local query expansion
    rerank_lambda: float = 0.3  # weight of the original distance beside the Jaccard distance


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: InferenceConfig = field(default_factory=InferenceConfig)


VALUE_RANGES: dict[str, Range] = {
    "data.height": Range(16, 2048),
    "data.width": Range(8, 2048),
    "model.last_stride": Range(1, 2),
    "model.gem_p": Range(0, lowest_excluded=True),
    "model.parts": Range(0),
    "model.part_dim": Range(1),
    "model.ema_rate": Range(0, 1),
    "loss.label_smoothing": Range(0, 1, highest_excluded=True),
    **{f"loss.{name}": Range(0) for name in ("id_weight", "triplet_weight", "part_id_weight", "part_triplet_weight")},
    "loss.alpha": Range(0),
    "loss.beta": Range(0),
    "loss.adp_alpha": Range(0),
    "loss.adp_gamma": Range(0),
    "train.epochs": Range(1),
    "train.lr": Range(0, lowest_excluded=True),
    "train.backbone_lr": Range(0),  # 0: a frozen backbone
    "train.momentum": Range(0, 1, lowest_excluded=True, highest_excluded=True),  # SGD's Nesterov needs more than 0
    "train.weight_decay": Range(0),
    "train.warmup_epochs": Range(0),
    "train.milestones": Range(1),
    "train.gamma": Range(0, lowest_excluded=True),
    "train.identities_per_batch": Range(2),  # the triplet losses need another identity in the batch
    "train.instances_per_modality": Range(1),
    "train.steps_per_epoch": Range(0),
    "train.padding": Range(0),
    "train.random_erasing": Range(0, 1),
    "train.grad_clip": Range(0),
    "train.precise_bn_batches": Range(0),
    "train.eval_every": Range(0),
    "train.eval_offset": Range(0),
    "train.eval_trials": Range(1),
    "train.validation_fraction": Range(0, 0.5),
    "train.seed": Range(0, 2**32 - 1),  # numpy's global seed
    "train.workers": Range(0),
    "train.log_every": Range(1),
    "test.batch_size": Range(1),
    "test.rerank_k1": Range(1),
    "test.rerank_k2": Range(1),
    "test.rerank_lambda": Range(0, 1),
}
"""The values each number key may take (vireid.ranges); a list key, each element. NaN and
infinite values are in no range."""


def _check_ranges(config: ExperimentConfig) -> None:
    for key, accepted in VALUE_RANGES.items():
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


def _apply(section: Any, values: dict, prefix: str) -> None:
    hints = typing.get_type_hints(type(section))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in hints:
            valid = ", ".join(f"{prefix}{choice}" for choice in hints)
            raise ConfigError(f"{key}: unknown config key; valid keys here: {valid}")
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{key}: expected a section of keys ({', '.join(typing.get_type_hints(annotation))}), got {value!r}"
                )
            _apply(getattr(section, name), value, f"{key}.")
        else:
            setattr(section, name, _coerce(key, value, annotation))


def config_from_dict(values: dict) -> ExperimentConfig:
    """The config of nested ``values`` (keys a config file would hold), its method's model keys filled in."""
    config = ExperimentConfig()
    _apply(config, _with_method_defaults(values), "")
    _check_dataset(config)
    _check_ranges(config)
    _check_shapes(config)
    _check_batch_memory(config)
    _check_evaluations(config)
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


def _check_evaluations(config: ExperimentConfig) -> None:
    """A rule that selects on evaluations has at least one to select from."""
    from vireid.engine.selection import evaluated_epochs  # here: the engine imports this module

    train = config.train
    if train.select_on != "last" and not evaluated_epochs(train):
        raise ConfigError(
            f"train.eval_every: every {train.eval_every} epochs after {train.eval_offset}, without the last "
            f"(train.eval_last false), evaluates none of the {train.epochs} epochs, yet train.select_on "
            f"{train.select_on!r} selects on the evaluations; set train.eval_every=0 (the last epoch alone), "
            "train.eval_last=true or train.select_on=last"
        )


def _check_shapes(config: ExperimentConfig) -> None:
    if len(config.train.erasing_fill) != 3:
        raise ConfigError(f"train.erasing_fill: expected 3 values (one per channel), got {config.train.erasing_fill}")
    if config.test.feature != "global" and config.model.parts == 0:
        raise ConfigError(
            f"test.feature: {config.test.feature!r} needs a model with parts (model.parts > 0); "
            "this one has none, use test.feature=global"
        )
    from vireid.data.channel import CHANNEL_AUGMENTATIONS  # here: it imports torchvision

    for key in ("visible_views", "infrared_views"):
        views = getattr(config.train, key)
        unknown = sorted({name for names in views for name in names} - set(CHANNEL_AUGMENTATIONS))
        if not views or unknown:
            raise ConfigError(
                f"train.{key}: expected one or more views, each a list of channel augmentations "
                f"({', '.join(CHANNEL_AUGMENTATIONS)}; [] for none), got {views}"
            )


def _check_dataset(config: ExperimentConfig) -> None:
    """The dataset is registered; its trial and the evaluation protocol are its own."""
    data = config.data
    if data.dataset not in dataset_names():
        raise ConfigError(
            f"data.dataset: expected one of {', '.join(map(repr, dataset_names()))}, got {data.dataset!r}"
        )
    dataset = get_dataset(data.dataset)
    if dataset.one_model_per_trial and data.trial not in dataset.protocols[0].trials:
        trials = dataset.protocols[0].trials
        raise ConfigError(f"data.trial: {dataset.title} has trials {trials[0]} to {trials[-1]}, got {data.trial}")
    protocol = config.train.eval_protocol
    if protocol and protocol not in dataset.protocol_names:
        raise ConfigError(
            f"train.eval_protocol: expected a protocol of {dataset.title} "
            f"({', '.join(dataset.protocol_names)}), got {protocol!r}"
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


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict | None = None
) -> ExperimentConfig:
    """The config of a YAML file or shipped config name (or of ``base``, a saved
    config dict, or the defaults), then ``key=value`` overrides applied in order."""
    values: dict = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        path = find_config(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections, got {type(values).__name__}")
    for override in overrides:
        keys, value = _parse_override(override)
        section = values
        for key in keys[:-1]:
            section = section.setdefault(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"override {override!r}: {key} is a value, not a section")
        section[keys[-1]] = value
    return config_from_dict(values)


def _with_method_defaults(values: dict) -> dict:
    """``values`` with the keys its ``model.method`` sets (vireid.methods: the model's switches,
    and a recipe's loss, train and test keys) filled in where the config leaves them out."""
    from vireid.methods import get_method  # here, not with this module: the methods build networks (torch)

    model = values.get("model", {})
    if not isinstance(model, dict):
        return values  # _apply names the error
    method = get_method(model.get("method", ModelConfig.method))
    merged = dict(values)
    for section, defaults in method.defaults.items():
        section_type = typing.get_type_hints(ExperimentConfig).get(section)
        known = section_type.__dataclass_fields__ if dataclasses.is_dataclass(section_type) else {}
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
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "InferenceConfig",
    "ModelConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "find_config",
    "load_config",
    "shipped_configs",
]
