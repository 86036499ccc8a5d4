"""Methods and datasets from outside the package: plugin files, and entry points of installed distributions.

A plugin is a Python file whose import registers methods (``vireid.method.register_method``) and
datasets (``vireid.datasets.register_dataset``), as the built-in modules do. Three ways in:

- ``--plugin FILE.py`` on any command (repeatable); a run trained with it keeps the file in its config;
- ``plugins:`` in a config, paths relative to the config file; a run's saved config and its checkpoints
  hold them as absolute paths, so ``vireid test`` of the run finds them again;
- the entry points of installed distributions in the groups ``vireid.methods`` and ``vireid.datasets``,
  each naming a module to import (``[project.entry-points."vireid.methods"]`` ``bot = "bot_method"``).

A file is imported once however often it is named. One that cannot be imported, or that registers a
name taken already, is a PluginError naming the file. The registries ask ``registration_source`` where
a registration comes from, for ``vireid methods`` and ``vireid datasets``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Iterator

from vireid.errors import UserError

BUILT_IN = "built in"
ENTRY_POINT_GROUPS = ("vireid.methods", "vireid.datasets")

_source = BUILT_IN
_loaded_files: dict[Path, str] = {}  # resolved path -> the module name it was imported as
_installed_loaded = False


class PluginError(UserError):
    """A plugin file or entry point that does not exist, cannot be imported, or registers a taken name."""


def registration_source() -> str:
    """Where the registrations being made now come from: 'built in', 'plugin FILE' or 'distribution NAME'."""
    return _source


@contextlib.contextmanager
def _registering_from(source: str) -> Iterator[None]:
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


def _register_built_ins() -> None:
    """The built-in datasets and methods, registered before any plugin's: a plugin that registers one
    of their names is then the plugin's error (naming its file), not an error of the built-in module.
    Imported here, when a plugin is about to be, as vireid.method and the registries import this module."""
    for package in ("vireid.datasets", "vireid.methods"):
        importlib.import_module(package)


def _registries() -> tuple[dict, dict]:
    """The registries a plugin adds to (imported here: they import this module)."""
    from vireid.datasets import DATASETS
    from vireid.method import METHODS

    return METHODS, DATASETS


def load_plugin_file(path: str | Path) -> None:
    """Import the plugin file at ``path`` (once), registering its methods and datasets."""
    resolved = Path(path).expanduser().resolve()
    if resolved in _loaded_files:
        return
    if not resolved.is_file():
        raise PluginError(f"{path}: expected a plugin file (.py), but it does not exist")
    _register_built_ins()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    module_name = f"vireid_plugin_{resolved.stem}_{digest}"
    specification = importlib.util.spec_from_file_location(module_name, resolved)
    if specification is None or specification.loader is None:
        raise PluginError(f"{path}: expected a plugin file (.py), cannot import it")
    module = importlib.util.module_from_spec(specification)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up by name
    registries = _registries()
    kept = [dict(registry) for registry in registries]
    with _registering_from(f"plugin {resolved}"):
        try:
            specification.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            for registry, before in zip(registries, kept):  # nothing of a plugin that failed halfway stays
                registry.clear()
                registry.update(before)
            raise PluginError(f"{path}: the plugin could not be imported ({type(error).__name__}: {error})") from None
    _loaded_files[resolved] = module_name


def load_plugin_files(paths: list[str] | tuple[str, ...]) -> None:
    for path in paths:
        load_plugin_file(path)


def load_installed_plugins() -> None:
    """Import the modules that installed distributions name in the entry point groups (once)."""
    global _installed_loaded
    if _installed_loaded:
        return
    _installed_loaded = True
    entry_points = [
        (group, point) for group in ENTRY_POINT_GROUPS for point in importlib.metadata.entry_points(group=group)
    ]
    if entry_points:
        _register_built_ins()
    for group, entry_point in entry_points:
        distribution = entry_point.dist.name if entry_point.dist is not None else "an unnamed distribution"
        with _registering_from(f"distribution {distribution}"):
            try:
                entry_point.load()
            except Exception as error:
                raise PluginError(
                    f"entry point {entry_point.name} = {entry_point.value} of {distribution} (group {group}): "
                    f"could not be imported ({type(error).__name__}: {error})"
                ) from None


__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUPS",
    "PluginError",
    "load_installed_plugins",
    "load_plugin_file",
    "load_plugin_files",
    "registration_source",
]
