"""The method contract: all that the engine, evaluation, export and search know of a network.

A method is one named way to build and train a network. It declares the config keys it reads
(its own ``model:`` and ``loss:`` dataclasses, checked with the same exact errors as every other
key), and it answers the engine's questions:

- ``build_model(config, num_classes, load_weights)``: the network. Called as
  ``model(images, modalities)`` with (B, 3, H, W) images and their modalities: in training a
  ``vireid.modality.ModalityLayout`` (the batch's modalities as runs of rows known on the host,
  with ``.tensor`` the (B,) values on the device, so that routing rows by modality never waits
  for the device; ``modality_layout`` turns a (B,) tensor into one), or one int when every image
  is of that modality (evaluation and export). It returns whatever the method's loss and
  ``embed`` take;
- ``build_loss(config, num_classes, model)``: the training loss, an ``nn.Module`` called as
  ``loss(output, labels, modalities)`` (the same modalities) that returns the terms ``loss_terms`` declares and
  ``total``, the weighted sum to back-propagate. Its own parameters (class centres, ...) are
  trained and saved with the run;
- ``parameter_groups(model, loss, train)``: which parameters train at which learning rate;
- ``embeddings(config)``: the test embeddings by name, the first the default;
  ``embed(output, name, test)``: one of them, (B, D), for a batch. The engine adds that of the
  flipped images (``test.flip``) and L2-normalises the sum where ``test.distance`` is cosine (for
  dot, DEEN's, it is scored as it is), one way for every method.

A method may also read the weights its reference code saves (``vireid import``): it lists them
in ``reference_formats`` and maps their tensor names onto its network's in ``reference_names``.

A method registers itself with ``register_method``, from a module of ``vireid.methods``, a plugin
file or an installed distribution (vireid.plugins); the recipe (``model.method``) names it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vireid.config import ExperimentConfig, InferenceConfig, LossConfig, ModelConfig, TrainConfig
from vireid.errors import ConfigError
from vireid.plugins import load_installed_plugins, registration_source


@dataclass
class ParameterGroup:
    """Parameters that train alike.

    They train at ``lr`` (scaled by the schedule's warm-up and milestones) with ``train.optimizer``,
    and ``weight_decay`` (None: ``train.weight_decay``). With ``own_sgd`` they are updated by plain
    SGD at the constant ``lr`` instead, without momentum, decay or schedule, whatever
    ``train.optimizer`` is (a centre loss's centres, as the strong baseline trains them).

    Attributes:
        name: The group's name.
        parameters: The parameters of the group.
        lr: Their learning rate, before the schedule scales it.
        weight_decay: Their weight decay; None: ``train.weight_decay``.
        own_sgd: Update them by plain SGD at the constant ``lr`` instead of ``train.optimizer``.
    """

    name: str
    parameters: list[nn.Parameter]
    lr: float
    weight_decay: float | None = None
    own_sgd: bool = False


@dataclass(frozen=True)
class ReferenceFormat:
    """Weights as a method's reference code saves them, which ``vireid import --format NAME`` reads.

    Attributes:
        name: The ``--format`` value.
        description: The code that writes such files, and where files of it are published.
        config: The config an imported model gets, "{dataset}" replaced: "{dataset}_agw" is sysu_agw, ...
    """

    name: str  # the --format value
    description: str  # the code that writes such files, and where files of it are published
    config: str  # the config an imported model gets, "{dataset}" replaced: "{dataset}_agw" is sysu_agw, ...


@dataclass(frozen=True)
class NameRules:
    """Reference tensor names -> the method's network's.

    A name neither renamed nor ignored is one the network has no place for.

    Attributes:
        renamed: (reference prefix, network prefix) pairs; the first whose reference prefix starts a
            name renames it.
        ignored: Prefixes of tensors the reference keeps but its forward never uses (copies of ResNet
            layers).
        classifier: The network's classifier weight, whose rows count the identities.
    """

    renamed: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()
    classifier: str = "classifier.weight"  # the network's classifier weight, whose rows count the identities

    def network_name(self, reference_name: str) -> str | None:
        """The network's name for a reference tensor.

        Args:
            reference_name: The tensor's name in the reference's weights.

        Returns:
            The network's name; "" where the tensor is ignored, None where no rule speaks of it.
        """
        for theirs, ours in self.renamed:
            if reference_name.startswith(theirs):
                return ours + reference_name[len(theirs) :]
        return "" if reference_name.startswith(self.ignored) else None


class Method:
    """The base of every method; a subclass sets the class attributes and overrides the builders.

    ``defaults`` is the method's recipe: config keys by section (``{"model": {...}, "train":
    {"epochs": 120}, "test": {...}}``) that a config's own values override. ``source`` is where it
    was registered from (filled in by ``register_method``).

    Attributes:
        name: The method's name, the ``model.method`` value.
        description: One line, for `vireid methods`.
        model_config: The dataclass of its ``model:`` keys.
        loss_config: The dataclass of its ``loss:`` keys.
        defaults: Its recipe: config keys by section.
        source: Where it was registered from.
        reference_formats: Weights of its reference code that it reads.
    """

    name: str = ""
    description: str = ""  # one line, for `vireid methods`
    model_config: type[ModelConfig] = ModelConfig
    loss_config: type[LossConfig] = LossConfig
    defaults: dict[str, dict[str, Any]] = {}
    source: str = ""
    reference_formats: tuple[ReferenceFormat, ...] = ()  # weights of its reference code that it reads

    def build_model(self, config: ExperimentConfig, num_classes: int, load_weights: bool = True) -> nn.Module:
        """The network for ``num_classes`` training identities.

        Args:
            config: The experiment's config.
            num_classes: The number of training identities.
            load_weights: Load its pretrained initialisation (False when a checkpoint's weights replace them).

        Returns:
            The network, called as ``model(images, modalities)``.
        """
        raise NotImplementedError

    def build_loss(self, config: ExperimentConfig, num_classes: int, model: nn.Module) -> nn.Module:
        """The training loss.

        Args:
            config: The experiment's config.
            num_classes: The number of training identities.
            model: The network the loss trains.

        Returns:
            The loss, called as ``loss(output, labels, modalities)`` -> {term: value, ..., "total": ...}.
        """
        raise NotImplementedError

    def loss_terms(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The terms the loss returns besides ``total``, in the order progress lines show them.

        Args:
            config: The experiment's config.

        Returns:
            The terms' names.
        """
        raise NotImplementedError

    def parameter_groups(self, model: nn.Module, loss: nn.Module, train: TrainConfig) -> list[ParameterGroup]:
        """Every trainable parameter of the network and the loss, in groups.

        By default one group at ``train.lr``: the network's and the loss's parameters that require gradients.

        Args:
            model: The network.
            loss: The training loss.
            train: The ``train:`` keys of the config.

        Returns:
            The parameter groups.
        """
        parameters = [p for module in (model, loss) for p in module.parameters() if p.requires_grad]
        return [ParameterGroup("all", parameters, train.lr)]

    def embeddings(self, config: ExperimentConfig) -> dict[str, str]:
        """The test embeddings of the network ``config`` describes.

        Args:
            config: The experiment's config.

        Returns:
            Name -> one line describing it; the first is the default.
        """
        raise NotImplementedError

    def embed(self, output: Any, name: str, test: InferenceConfig) -> torch.Tensor:
        """The (B, D) embedding ``name`` of a batch's network output (in eval mode).

        The engine L2-normalises it where ``test.distance`` is cosine.

        Args:
            output: The network's output for the batch.
            name: One of the names ``embeddings`` returns.
            test: The ``test:`` keys of the config.

        Returns:
            The (B, D) embedding.
        """
        raise NotImplementedError

    def check(self, config: ExperimentConfig) -> None:
        """A ConfigError naming the key, where ``config``'s keys do not fit together for this method.

        Args:
            config: The experiment's config.

        Raises:
            ConfigError: Where the keys do not fit together.
        """

    def signature(self, config: ExperimentConfig) -> dict[str, Any]:
        """What, besides the test-time options, makes two models' features comparable.

        Feature files, indexes and ONNX files record it. By default: the method and its model keys but
        the weights' source.

        Args:
            config: The experiment's config.

        Returns:
            The signature, a JSON-serialisable dict.
        """
        model = {key: value for key, value in vars(config.model).items() if key not in ("method", "pretrained")}
        return {"method": self.name, **model}

    def describe(self, model: nn.Module, config: ExperimentConfig) -> str:
        """The network in words, for messages: '(resnet50, no parts, ...)'.

        Args:
            model: The network.
            config: The experiment's config.

        Returns:
            One line.
        """
        parameters = sum(parameter.numel() for parameter in model.parameters())
        return f"({self.name}, {parameters:,} parameters)"

    def reference_names(self, format_name: str, config: ExperimentConfig) -> NameRules:
        """How the tensors of one of ``reference_formats`` map onto the network ``config`` builds.

        Args:
            format_name: The name of one of ``reference_formats``.
            config: The experiment's config.

        Returns:
            The rules that rename the reference's tensors.
        """
        raise NotImplementedError(f"method {self.name!r} reads no reference weights")


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameters of a network (buffers such as slow copies excluded).

    Args:
        model: The network.

    Returns:
        The counts under "total", "trainable" and "frozen".
    """
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


METHODS: dict[str, Method] = {}
"""Every registered method; filled by register_method as method modules and plugins are imported."""


def register_method(method: Method) -> Method:
    """Add ``method`` under its name, noting where it comes from; a name taken already is an error.

    Args:
        method: The method; its ``source`` is filled in.

    Returns:
        The method itself.

    Raises:
        ValueError: Where the method has no name, or its name is taken.
    """
    if not method.name:
        raise ValueError(f"{type(method).__name__}: a method needs a name")
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is registered already ({METHODS[method.name].source})")
    method.source = registration_source()
    METHODS[method.name] = method
    return method


def registered_methods() -> dict[str, Method]:
    """Every method.

    The built-in ones (vireid.methods), those of installed distributions, and those of the plugin
    files imported so far.

    Returns:
        The methods by name (``METHODS``).
    """
    importlib.import_module("vireid.methods")  # the built-in methods register themselves when imported
    load_installed_plugins()
    return METHODS


def get_method(name: str) -> Method:
    """The registered method named ``name``.

    Args:
        name: The method's name (``model.method``).

    Returns:
        The method.

    Raises:
        ConfigError: Where no method has that name.
    """
    methods = registered_methods()
    if name not in methods:
        raise ConfigError(f"model.method: expected one of {', '.join(map(repr, methods))}, got {name!r}")
    return methods[name]


def method_of(config: ExperimentConfig) -> Method:
    """The method of a config (``model.method``).

    Args:
        config: The experiment's config.

    Returns:
        The method.
    """
    return get_method(config.model.method)


__all__ = [
    "METHODS",
    "Method",
    "ParameterGroup",
    "get_method",
    "method_of",
    "parameter_counts",
    "register_method",
    "registered_methods",
]
