"""The build layer: a config file becomes a checked config, and a config its dataset, method,
network and loss. The one module that knows the config, the datasets, the methods and the plugins
together; the config module knows none of them, the engine only the method contract.

``load_config`` reads a YAML file (or a shipped config's name, or a run's saved config) with
``key=value`` overrides, imports the plugins it names, types its ``model:`` and ``loss:``
sections by its method, and checks what needs them: the dataset and its trial and protocol, the
test embedding, the channel views, the evaluation schedule.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vireid.config import ConfigError, ExperimentConfig, config_from_dict, read_config_values
from vireid.datasets import DatasetSpec, dataset_names, get_dataset
from vireid.method import Method, get_method, method_of
from vireid.plugins import load_installed_plugins, load_plugin_files


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict | None = None,
    plugins: list[str] | tuple[str, ...] = (),
) -> ExperimentConfig:
    """The checked config of a YAML file or shipped config name (or of ``base``, a saved config
    dict, or the defaults), then ``key=value`` overrides applied in order. ``plugins`` (files given
    on the command line) join the config's own ``plugins``; each is kept once, as an absolute path (a
    relative one in a config file is read from its folder, one given otherwise from the current folder)."""
    values = read_config_values(path, overrides, base)
    named = values.get("plugins", [])
    if not isinstance(named, list) or not all(isinstance(item, str) for item in named):
        raise ConfigError(f"plugins: expected a list of plugin files (.py), got {named!r}")
    values["plugins"] = list(dict.fromkeys(str(Path(item).expanduser().resolve()) for item in [*named, *plugins]))
    load_installed_plugins()
    load_plugin_files(values["plugins"])
    config = config_from_dict(values, get_method)
    check_config(config)
    return config


def check_config(config: ExperimentConfig) -> None:
    """What the config module cannot check alone: the dataset, the method's embedding and keys, the
    channel views, the evaluations. Fills in the method's default test embedding (``test.feature: ""``)."""
    _check_dataset(config)
    method = method_of(config)
    embeddings = method.embeddings(config)
    if not config.test.feature:
        config.test.feature = next(iter(embeddings))
    method.check(config)
    if config.test.feature not in embeddings:
        raise ConfigError(
            f"test.feature: expected one of {', '.join(map(repr, embeddings))} (the test embeddings of "
            f"{method.name}), got {config.test.feature!r}"
        )
    _check_views(config)
    _check_evaluations(config)


def _check_dataset(config: ExperimentConfig) -> None:
    """The dataset is registered; its trial and the evaluation protocol are its own."""
    data = config.data
    if data.dataset not in dataset_names():
        raise ConfigError(
            f"data.dataset: expected one of {', '.join(map(repr, dataset_names()))}, got {data.dataset!r}"
        )
    dataset = get_dataset(data.dataset)
    dataset.check_trial(data.trial)
    protocol = config.train.eval_protocol
    if protocol and protocol not in dataset.protocol_names:
        raise ConfigError(
            f"train.eval_protocol: expected a protocol of {dataset.title} "
            f"({', '.join(dataset.protocol_names)}), got {protocol!r}"
        )


def _check_views(config: ExperimentConfig) -> None:
    from vireid.data.channel import CHANNEL_AUGMENTATIONS  # here: it imports torchvision

    for key in ("visible_views", "infrared_views"):
        views = getattr(config.train, key)
        unknown = sorted({name for names in views for name in names} - set(CHANNEL_AUGMENTATIONS))
        if not views or unknown:
            raise ConfigError(
                f"train.{key}: expected one or more views, each a list of channel augmentations "
                f"({', '.join(CHANNEL_AUGMENTATIONS)}; [] for none), got {views}"
            )


def _check_evaluations(config: ExperimentConfig) -> None:
    """A rule that selects on evaluations has at least one to select from."""
    from vireid.engine.selection import evaluated_epochs

    train = config.train
    if train.select_on != "last" and not evaluated_epochs(train):
        raise ConfigError(
            f"train.eval_every: every {train.eval_every} epochs after {train.eval_offset}, without the last "
            f"(train.eval_last false), evaluates none of the {train.epochs} epochs, yet train.select_on "
            f"{train.select_on!r} selects on the evaluations; set train.eval_every=0 (the last epoch alone), "
            "train.eval_last=true or train.select_on=last"
        )


def dataset_of(config: ExperimentConfig) -> DatasetSpec:
    """The dataset a config trains and tests on (``data.dataset``)."""
    return get_dataset(config.data.dataset)


def build_model(config: ExperimentConfig, num_classes: int, load_weights: bool = True) -> nn.Module:
    """The network of ``config``'s method for ``num_classes`` identities."""
    return method_of(config).build_model(config, num_classes, load_weights)


def build_loss(config: ExperimentConfig, num_classes: int, model: nn.Module) -> nn.Module:
    """The training loss of ``config``'s method for ``model``."""
    return method_of(config).build_loss(config, num_classes, model)


__all__ = ["Method", "build_loss", "build_model", "check_config", "dataset_of", "load_config"]
