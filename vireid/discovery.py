"""Finding the modules of a registry package: every dataset or method module
registers itself when imported, so a package imports all of its modules."""

from __future__ import annotations

import importlib
import pkgutil

INFRASTRUCTURE = ("registry", "spec")
"""Modules of a registry package that define it rather than register into it."""


def import_submodules(path: list[str], package: str, first: tuple[str, ...] = ()) -> list[str]:
    """Import every module found in ``path`` (a package's ``__path__``) as ``package.<name>``,
    those named in ``first`` first, in that order (registration order is listing order); their names."""
    found = [module.name for module in pkgutil.iter_modules(path) if module.name not in INFRASTRUCTURE]
    names = [name for name in first if name in found] + sorted(name for name in found if name not in first)
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
