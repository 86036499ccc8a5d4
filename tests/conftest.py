"""Shared fixtures: small synthetic datasets written once per test session."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import pytest

import vireid.plugins
from vireid.datasets import DATASETS
from vireid.method import METHODS, registered_methods
from vireid.synthetic.writer import write_synthetic_dataset

TINY_SIZE = (32, 16)


@pytest.fixture(scope="session")
def sysu_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets") / "SYSU-MM01"
    write_synthetic_dataset("sysu", root, identities=16, images_per_id=6, seed=3, size=TINY_SIZE, workers=2)
    return root


@pytest.fixture(scope="session")
def regdb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets") / "RegDB"
    write_synthetic_dataset("regdb", root, identities=8, images_per_id=3, seed=4, size=TINY_SIZE, workers=1)
    return root


@pytest.fixture(scope="session")
def llcm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets") / "LLCM"
    write_synthetic_dataset("llcm", root, identities=12, images_per_id=5, seed=5, size=TINY_SIZE, workers=2)
    return root


@contextlib.contextmanager
def _registries_kept() -> Iterator[Callable[[], None]]:
    """The registries and the plugins imported so far as they were before, afterwards; and a function
    that puts them back that way in between too (as a new process finds them)."""
    registered_methods()  # the built-in ones, registered before the registries are copied
    datasets, methods, loaded = dict(DATASETS), dict(METHODS), dict(vireid.plugins._loaded_files)

    def forget() -> None:
        for module_name in set(vireid.plugins._loaded_files.values()) - set(loaded.values()):
            sys.modules.pop(module_name, None)
        for registry, saved in ((DATASETS, datasets), (METHODS, methods), (vireid.plugins._loaded_files, loaded)):
            registry.clear()
            registry.update(saved)

    try:
        yield forget
    finally:
        forget()


@pytest.fixture
def fresh_plugins():
    """What a test's plugins register is forgotten after it (a function: forget it during the test)."""
    with _registries_kept() as forget:
        yield forget


@pytest.fixture(scope="module")
def plugins_of_the_module():
    """What a module's plugins register is forgotten after the module's tests."""
    with _registries_kept():
        yield
