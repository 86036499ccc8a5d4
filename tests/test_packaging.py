"""The wheel: built from the sources, installed (not editable) into a fresh
environment, it trains from a shipped config while run from another folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

import vireid

PROJECT = Path(__file__).resolve().parents[1]


def _run(command: list[str], cwd: Path | None = None) -> str:
    completed = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True)
    assert completed.returncode == 0, f"{command} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the working tree
    shutil.copytree(PROJECT / "vireid", source / "vireid", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            tmp_path / "wheels",
            source,
        ]
    )
    (wheel,) = (tmp_path / "wheels").glob("vireid-*.whl")
    return wheel


def _fresh_environment(tmp_path: Path) -> Path:
    """A new venv that sees this environment's dependencies (torch, ...) but not its vireid."""
    environment = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", environment])
    python = environment / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # A path added by a .pth file has its own .pth files ignored: the editable vireid stays invisible.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert (
        "ModuleNotFoundError"
        in subprocess.run([python, "-c", "import vireid"], cwd=tmp_path, capture_output=True, text=True).stderr
    )
    return environment


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_the_installed_wheel_finds_its_shipped_configs_from_another_folder(tmp_path, sysu_root):
    wheel = _build_wheel(tmp_path)
    shipped = {"vireid/configs/tiny.yaml", "vireid/configs/sysu_full.yaml", "vireid/published/figures.yaml"}
    assert shipped <= set(zipfile.ZipFile(wheel).namelist())
    environment = _fresh_environment(tmp_path)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            environment / "bin" / "python",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            wheel,
        ]
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    vireid = environment / "bin" / "vireid"
    location = _run([environment / "bin" / "python", "-c", "import vireid; print(vireid.__file__)"], cwd=elsewhere)
    assert location.startswith(str(environment))
    assert (
        _run([vireid, "configs", "sysu_full"], cwd=elsewhere)
        == (PROJECT / "vireid" / "configs" / "sysu_full.yaml").read_text()
    )
    output = _run(
        [
            vireid,
            "train",
            "tiny",
            "--quiet",
            "--out",
            "run",
            "--set",
            f"data.root={sysu_root}",
            "--set",
            "data.height=32",
            "--set",
            "data.width=16",
            "--set",
            "train.epochs=1",
            "--set",
            "train.steps_per_epoch=1",
            "--set",
            "train.workers=0",
            "--set",
            "train.lr=1e-3",
        ],
        cwd=elsewhere,
    )
    assert output.startswith("training tiny on ")
    assert (elsewhere / "run" / "last.pt").is_file()


def test_the_license_citation_and_contributing_files_say_what_the_package_declares():
    project = (PROJECT / "pyproject.toml").read_text()  # its [project] table's license and version lines
    declared = {key: re.search(rf'^{key} = "(.+)"', project, re.MULTILINE).group(1) for key in ("license", "version")}
    assert declared["license"] == "MIT"
    assert (PROJECT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the vireid authors\n")
    citation = yaml.safe_load((PROJECT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert citation["version"] == declared["version"] == vireid.__version__
    assert {"message", "title", "authors"} <= set(citation)
    titles = [reference["title"] for reference in citation["references"]]
    assert any(title.startswith("Diverse Embedding Expansion Network") for title in titles)
    assert all(reference["authors"] and reference["year"] for reference in citation["references"])
    contributing = (PROJECT / "CONTRIBUTING.md").read_text()
    assert all(command in contributing for command in ("make test", "make test-slow", "ruff format", "Add a method"))
