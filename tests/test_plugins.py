"""Plugins through the command line: --plugin FILE.py on every command, a run that keeps its plugin
files in its config (and is tested without the flag), a config's own plugins, and a plugin's errors
as one line naming its file."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from vireid.cli import build_parser, main, named_plugin_files
from vireid.config import ConfigError
from vireid.engine.trainer import check_resumed_config
from vireid.method import METHODS
from vireid.plugins import PluginError, load_plugin_file
from vireid.recipe import load_config

REPOSITORY = Path(__file__).resolve().parents[1]

METHOD_PLUGIN = """
from vireid.method import register_method
from vireid.methods.agw import CrossModalityMethod

register_method(CrossModalityMethod(name="{name}", description="{description}", defaults={{"model": {{"parts": 0}}}}))
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _sub_commands() -> dict[str, argparse.ArgumentParser]:
    action = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_takes_plugin_files():
    for command in _sub_commands().values():
        (plugin,) = [action for action in command._actions if "--plugin" in action.option_strings]
        assert plugin.default == [] and plugin.help.startswith("a Python file that registers methods or datasets")


def test_plugin_files_are_found_before_the_parser_is_built():
    argv = ["test", "run", "--plugin", "a.py", "--set", "x=1", "--plugin=b.py", "--", "--plugin", "c.py"]
    assert named_plugin_files(argv) == ["a.py", "b.py"]
    assert named_plugin_files(["train", "tiny", "--plugin"]) == []  # argparse names the missing value


def test_a_plugin_method_trains_and_its_run_is_tested_without_the_flag(
    sysu_root, tmp_path, capsys, monkeypatch, fresh_plugins
):
    plugin = _write(
        tmp_path / "plugins" / "my_method.py", METHOD_PLUGIN.format(name="plugin_agw", description="AGW, from a file")
    )
    monkeypatch.chdir(tmp_path)
    small = [f"data.root={sysu_root}", "data.height=32", "data.width=16", "train.epochs=1", "train.steps_per_epoch=1"]
    settings = [argument for setting in [*small, "train.workers=0"] for argument in ("--set", setting)]
    command = ["train", "tiny", "--plugin", "plugins/my_method.py", "--set", "model.method=plugin_agw", *settings]
    assert main([*command, "--out", "run", "--quiet"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["model"]["method"], saved["plugins"]) == ("plugin_agw", [str(plugin.resolve())])  # made absolute
    fresh_plugins()  # as a new process: the method is unknown until the run's config names its file
    assert "plugin_agw" not in METHODS
    capsys.readouterr()
    assert main(["test", "run/last.pt", "--trials", "0", "--quiet"]) == 0
    assert "| sysu-all single-shot (agw draws) |" in capsys.readouterr().out
    assert METHODS["plugin_agw"].source == f"plugin {plugin.resolve()}"


def test_a_configs_plugins_are_read_from_its_folder(tmp_path, monkeypatch, fresh_plugins):
    plugin = _write(
        tmp_path / "plugins" / "mine.py", METHOD_PLUGIN.format(name="config_agw", description="from a config")
    )
    config_file = _write(
        tmp_path / "configs" / "mine.yaml", "plugins: [../plugins/mine.py]\nmodel:\n  method: config_agw\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path is relative to the config file, not to the current folder
    config = load_config(config_file)
    assert config.model.method == "config_agw"
    assert [Path(path).resolve() for path in config.plugins] == [plugin.resolve()]
    assert all(Path(path).is_absolute() for path in config.plugins)


@pytest.mark.parametrize(
    "text, message",
    [
        ("raise RuntimeError('no GPU here')\n", "the plugin could not be imported (RuntimeError: no GPU here)"),
        ("import not_a_module_anywhere\n", "ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        (
            METHOD_PLUGIN.format(name="agw", description="again"),
            "(ValueError: a method named 'agw' is registered already (built in))",
        ),
        (
            "from vireid.datasets import get_dataset, register_dataset\nregister_dataset(get_dataset('sysu'))\n",
            "(ValueError: a dataset named 'sysu' is registered already)",
        ),
        (None, "expected a plugin file (.py), but it does not exist"),
    ],
)
def test_a_plugin_that_fails_ends_in_one_line_naming_its_file(tmp_path, capsys, fresh_plugins, text, message):
    plugin = tmp_path / "bad_plugin.py" if text is None else _write(tmp_path / "bad_plugin.py", text)
    assert main(["configs", "--plugin", str(plugin)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"vireid: error: {plugin}: ")
    assert message in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error


def test_a_plugin_that_takes_a_built_in_name_is_refused_in_a_new_process(tmp_path):
    """In a process that has not imported the built-in methods yet: they are registered first, so the
    plugin's registration is the one refused, however little of vireid it imports."""
    plugin = _write(
        tmp_path / "takes_agw.py",
        """
        from vireid.method import Method, register_method

        class Taken(Method):
            name, description = "agw", "a method of its own, named like the baseline"

        register_method(Taken())
        """,
    )
    completed = subprocess.run(
        [sys.executable, "-m", "vireid.cli", "configs", "--plugin", str(plugin)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])},
    )
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.strip() == (
        f"vireid: error: {plugin}: the plugin could not be imported "
        "(ValueError: a method named 'agw' is registered already (built in))"
    )


LISTED_PLUGIN = """
import dataclasses

from vireid.datasets import get_dataset, register_dataset
from vireid.method import register_method
from vireid.methods.agw import CrossModalityMethod

register_method(CrossModalityMethod("listed_method", "AGW under another name", {}))
regdb = get_dataset("regdb")
protocols = tuple(
    dataclasses.replace(protocol, name=protocol.name.replace("regdb", "listed"), dataset="")
    for protocol in regdb.protocols
)
register_dataset(
    dataclasses.replace(regdb, name="listed", description="RegDB's files under another name", protocols=protocols)
)
"""


def _listed(printed: str) -> dict[str, tuple[str, str]]:
    """Name -> (description, source) of the rows of vireid methods or vireid datasets, whose columns
    are aligned: every source starts at the same place."""
    lines = printed.splitlines()
    sources = {len(line) - len(line.rsplit("  ", 1)[1]) for line in lines}
    assert len(sources) == 1, printed
    rows = [re.split(r"\s{2,}", line) for line in lines]
    return {name: (description, source) for name, description, source in rows}


def test_methods_and_datasets_list_the_built_in_ones(capsys, fresh_plugins):
    assert main(["methods"]) == 0
    methods = _listed(capsys.readouterr().out)
    assert list(methods)[:5] == ["agw", "agw_fgfl", "agw_fgfl_cmimpl", "caj", "deen"]
    assert methods["agw_fgfl_cmimpl"] == (METHODS["agw_fgfl_cmimpl"].description, "built in")
    assert all(methods[name][1] == "built in" for name in ("agw", "agw_fgfl", "caj", "deen"))
    assert main(["datasets"]) == 0
    datasets = _listed(capsys.readouterr().out)
    assert list(datasets)[:3] == ["sysu", "regdb", "llcm"]
    assert datasets["sysu"] == (
        "SYSU-MM01: 4 visible and 2 infrared cameras, indoor and outdoor; all-search and indoor-search",
        "built in",
    )
    assert datasets["regdb"][0].startswith("RegDB: ") and datasets["llcm"][0].startswith("LLCM: ")
    assert {datasets[name][1] for name in ("regdb", "llcm")} == {"built in"}


def test_a_plugin_files_method_and_dataset_are_listed_with_the_file(tmp_path, capsys, fresh_plugins):
    plugin = _write(tmp_path / "listed.py", LISTED_PLUGIN)
    assert main(["methods", "--plugin", str(plugin)]) == 0
    assert _listed(capsys.readouterr().out)["listed_method"] == ("AGW under another name", f"plugin {plugin}")
    assert main(["datasets", f"--plugin={plugin}"]) == 0
    assert _listed(capsys.readouterr().out)["listed"] == ("RegDB's files under another name", f"plugin {plugin}")
    # the plugin's protocols are choices of --protocol: the file was imported before the parser was built
    features = str(tmp_path / "missing.npz")
    assert main(["evaluate", "--plugin", str(plugin), "--features", features, "--protocol", "listed-v2t"]) == 2
    assert "missing.npz: expected a vireid feature file" in capsys.readouterr().err


def test_an_installed_distributions_method_is_listed_with_its_name(tmp_path):
    site = tmp_path / "site"
    _write(site / "throwaway-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: throwaway\nVersion: 1.0\n")
    _write(site / "throwaway-1.0.dist-info" / "entry_points.txt", "[vireid.methods]\nthrowaway = throwaway_method\n")
    _write(site / "throwaway_method.py", METHOD_PLUGIN.format(name="throwaway", description="AGW, installed"))
    path = os.pathsep.join([str(REPOSITORY), str(site), os.environ.get("PYTHONPATH", "")])
    completed = subprocess.run(
        [sys.executable, "-m", "vireid.cli", "methods"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert completed.returncode == 0, completed.stderr
    methods = _listed(completed.stdout)
    assert methods["throwaway"] == ("AGW, installed", "distribution throwaway")
    assert methods["agw"][1] == "built in"


def test_plugin_paths_are_kept_once_and_absolute_however_they_are_named(tmp_path, monkeypatch, fresh_plugins):
    plugin = _write(tmp_path / "plugins" / "p.py", METHOD_PLUGIN.format(name="path_agw", description="paths"))
    config_file = _write(tmp_path / "configs" / "c.yaml", "plugins: [../plugins/p.py]\nmodel:\n  method: path_agw\n")
    monkeypatch.chdir(tmp_path)
    expected = [str(plugin.resolve())]
    assert load_config(config_file, plugins=["plugins/p.py"]).plugins == expected  # the config's and the flag's
    assert load_config(None, ["plugins=[plugins/p.py]", "model.method=path_agw"]).plugins == expected  # --set


def test_resume_refuses_a_changed_top_level_key_in_one_line(tmp_path):
    saved = load_config(None)
    changes = (
        (load_config(None, ["name=another"]), "name", "'experiment'"),
        (dataclasses.replace(saved, plugins=[str(tmp_path / "none.py")]), "plugins", "[]"),
    )
    for changed, key, before in changes:
        with pytest.raises(ConfigError, match=rf"^{key}: the run of x.pt trained with {re.escape(before)}; it cannot"):
            check_resumed_config(saved, changed, "x.pt")


LYING_PLUGIN = """
from vireid.method import register_method
from vireid.methods.agw import CrossModalityMethod


class Lying(CrossModalityMethod):
    def loss_terms(self, config):
        return ("id",)  # its loss returns the triplet too


register_method(Lying(name="lying_agw", description="declares fewer terms", defaults={"model": {"parts": 0}}))
"""


def test_a_loss_that_returns_terms_its_method_does_not_declare_stops_in_one_line(
    sysu_root, tmp_path, capsys, fresh_plugins
):
    plugin = _write(tmp_path / "lying.py", LYING_PLUGIN)
    small = [f"data.root={sysu_root}", "data.height=32", "data.width=16", "train.epochs=1", "train.steps_per_epoch=1"]
    settings = [argument for setting in [*small, "train.workers=0"] for argument in ("--set", setting)]
    command = ["train", "tiny", "--plugin", str(plugin), "--set", "model.method=lying_agw", *settings]
    assert main([*command, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "vireid train: error: model.method lying_agw: its loss returned id, part_id, part_triplet, total, triplet; "
        "it declares id "
        "(loss_terms) and total"
    )


def test_a_plugin_that_fails_halfway_leaves_nothing_registered(tmp_path, fresh_plugins):
    source = METHOD_PLUGIN.format(name="half_agw", description="half") + "raise ImportError('needs mylib')\n"
    plugin = _write(tmp_path / "half.py", source)
    for _ in range(2):  # the second attempt gives the same reason, not "registered already"
        refusal = r"half.py: the plugin could not be imported \(ImportError: needs mylib\)$"
        with pytest.raises(PluginError, match=refusal):
            load_plugin_file(plugin)
        assert "half_agw" not in METHODS
