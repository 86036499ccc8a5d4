"""The registered methods, by name: what a config's ``model.method`` picks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from vireid.config import ConfigError, LossConfig, ModelConfig


@dataclass(frozen=True)
class Method:
    """A named method: the model keys it sets (unless a config sets them itself),
    and how its network and its training loss are built."""

    name: str
    summary: str
    build_model: Callable[[ModelConfig, int, bool], nn.Module]  # (model config, classes, load weights)
    build_loss: Callable[[LossConfig], Callable[..., dict]]
    model_defaults: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {}
"""Every registered method; filled by register_method as the method modules are imported."""


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is registered already")
    unknown = sorted(set(method.model_defaults) - set(ModelConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"method {method.name!r} sets unknown model keys {unknown}")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"model.method: expected one of {', '.join(map(repr, METHODS))}, got {name!r}")
    return METHODS[name]


def method_names() -> list[str]:
    return list(METHODS)


def create_model(config: ModelConfig, num_classes: int, load_weights: bool = True) -> nn.Module:
    """The network of ``config.method``, built from ``config``."""
    return get_method(config.method).build_model(config, num_classes, load_weights)


def create_loss(model_config: ModelConfig, loss_config: LossConfig) -> Callable[..., dict]:
    """The training loss of ``model_config.method``: (model
    output, labels, modalities) -> dict of terms and ``total``."""
    return get_method(model_config.method).build_loss(loss_config)


__all__ = ["METHODS", "Method", "create_loss", "create_model", "get_method", "method_names", "register_method"]
