"""Shared fixtures: small synthetic datasets written once per test session."""

from __future__ import annotations

import pytest

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
