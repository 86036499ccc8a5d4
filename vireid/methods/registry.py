"""The registered methods, by name: what a config's ``model.method`` picks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from vireid.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """A named method: the config keys it sets, by section (``{"model": {"parts": 6}, "train":
    {...}}``; a config's own values win), and how its network and its training loss are built.
    This module imports no config: vireid.config reads the defaults from here while it loads one."""

    name: str
    build_model: Callable[..., Any]  # (ModelConfig, number of classes, load weights) -> the network
    build_loss: Callable[..., Callable[..., dict]]  # (LossConfig) -> (output, labels, modalities) -> loss terms
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


METHODS: dict[str, Method] = {}
"""Every registered method; filled by register_method as the method modules are imported."""


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is registered already")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"model.method: expected one of {', '.join(map(repr, METHODS))}, got {name!r}")
    return METHODS[name]


def create_model(config: Any, num_classes: int, load_weights: bool = True) -> Any:
    """The network of ``config.method``, built from ``config``."""
    return get_method(config.method).build_model(config, num_classes, load_weights)


def create_loss(model_config: Any, loss_config: Any) -> Callable[..., dict]:
    """The training loss of ``model_config.method``: (model
    output, labels, modalities) -> dict of terms and ``total``."""
    return get_method(model_config.method).build_loss(loss_config)


__all__ = ["METHODS", "Method", "create_loss", "create_model", "get_method", "register_method"]
