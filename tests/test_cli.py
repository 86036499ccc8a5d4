"""The vireid command: synth and evaluate end to end, and user errors as one clear line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vireid.cli import build_parser, main
from vireid.cli.common import parse_trials
from vireid.config import shipped_configs
from vireid.data import Split
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import sysu_test_images
from vireid.evaluation.feature_file import FeatureSet, save_features


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "vireid"
    completed = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert completed.stdout.strip().startswith("vireid ")


def test_synth_writes_a_readable_dataset(tmp_path, capsys):
    out = tmp_path / "RegDB"
    code = main(
        [
            "synth",
            "--layout",
            "regdb",
            "--out",
            str(out),
            "--ids",
            "4",
            "--images-per-id",
            "2",
            "--size",
            "32x16",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    assert "4 identities, 16 images" in capsys.readouterr().out
    assert len(regdb_test_images(out, trial=1)) == 2 * 2 * 2  # 2 test ids x 2 images x 2 modalities


def test_evaluate_prints_the_table_and_writes_json(sysu_root, tmp_path, capsys):
    images = sysu_test_images(sysu_root)
    features = np.random.default_rng(0).normal(size=(len(images), 16)).astype(np.float32)
    path = save_features(
        tmp_path / "features.npz", FeatureSet(features, images, {"dataset": "sysu", "root": str(sysu_root)})
    )
    code = main(
        [
            "evaluate",
            "--features",
            str(path),
            "--protocol",
            "sysu-indoor",
            "--trials",
            "0-2",
            "--per-trial",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| sysu-indoor single-shot (agw draws) | infrared (cam3, cam6) → visible (cam1, cam2) | 3 |" in printed
    assert printed.count("trial ") == 3
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [trial["trial"] for trial in saved["trials"]] == [0, 1, 2]
    assert saved["mean"]["mAP"] == pytest.approx(np.mean([trial["mAP"] for trial in saved["trials"]]))


def test_evaluate_official_draws_find_the_permutations_under_the_root(sysu_root, tmp_path, capsys):
    images = sysu_test_images(sysu_root)
    features = np.random.default_rng(1).normal(size=(len(images), 16)).astype(np.float32)
    path = save_features(tmp_path / "f.npz", FeatureSet(features, images, {"dataset": "sysu", "root": str(sysu_root)}))
    assert main(["evaluate", "--features", str(path), "--protocol", "sysu-all", "--draws", "official"]) == 0
    assert "(official draws)" in capsys.readouterr().out


def test_evaluate_regdb_with_one_file_per_trial(regdb_root, tmp_path, capsys):
    paths = []
    for trial in (1, 2):
        images = regdb_test_images(regdb_root, trial)
        features = np.random.default_rng(trial).normal(size=(len(images), 8)).astype(np.float32)
        paths.append(
            str(
                save_features(
                    tmp_path / f"t{trial}.npz", FeatureSet(features, images, {"dataset": "regdb", "trial": trial})
                )
            )
        )
    assert main(["evaluate", "--features", *paths, "--protocol", "regdb-v2t"]) == 0
    assert "| regdb-v2t | visible → thermal | 2 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["evaluate", "--features", "{tmp}/missing.npz", "--protocol", "sysu-all"],
            "missing.npz: expected a vireid feature file",
        ),
        (["configs", "sysu_ful"], "sysu_ful: not a shipped config; expected one of llcm_agw"),
        (
            ["evaluate", "--features", "{tmp}/f.npz", "--protocol", "llcm-ir2vis", "--shot", "multi"],
            "--shot/--draws: LLCM galleries are drawn one way",
        ),
        (["synth", "--layout", "sysu", "--out", "{tmp}", "--ids", "5"], "already exists"),
        (
            ["index", "{tmp}/f.npz", "--modality", "visible", "--out", "{tmp}/i.npz"],
            "f.npz: holds no visible image to index",
        ),
        (
            ["search", "{tmp}/f.npz", "--features", "{tmp}/f.npz"],
            "f.npz: expected format 'vireid-index' version 1, found 'vireid-features'",
        ),
        (
            ["extract", "{tmp}/none.pt", "--images", "{tmp}", "--modality", "infrared", "--out", "{tmp}/x.npz"],
            "none.pt",
        ),
        (["plot", "cmc", "{tmp}/results.json", "--out", "{tmp}/c.png"], "results.json: expected a results.json"),
        (["plot", "tsne", "{tmp}/f.npz", "--out", "{tmp}/t.png"], "t-SNE needs at least 3 points"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_code_2(tmp_path, capsys, arguments, message):
    save_features(tmp_path / "f.npz", FeatureSet(np.zeros((1, 2), np.float32), Split(["a"], [1], [3], [1])))
    code = main([argument.format(tmp=tmp_path) for argument in arguments])
    error = capsys.readouterr().err
    assert code == 2
    assert message in error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error


def _sub_commands() -> dict[str, argparse.ArgumentParser]:
    action = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_sub_commands()))
def test_every_help_page_has_a_description_examples_and_help_for_every_option(name):
    command = _sub_commands()[name]
    assert len(command.description) > 40
    examples = command.epilog.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  vireid {name}") for line in examples)
    for action in command._actions:
        assert action.help, f"vireid {name} {'/'.join(action.option_strings) or action.dest} has no help text"


def test_protocols_are_a_fixed_choice(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--features", "f.npz", "--protocol", "market"])
    assert exited.value.code == 2
    unquoted = capsys.readouterr().err.replace("'", "")  # Python versions differ in quoting the choices
    assert (
        "invalid choice: market (choose from sysu-all, sysu-indoor, regdb-v2t, regdb-t2v, llcm-ir2vis, "
        "llcm-vis2ir, llcm-vis2ir-visible-queries)" in unquoted
    )


def test_configs_lists_the_shipped_configs_and_prints_one(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(shipped_configs())
    width = max(len(name) for name in shipped_configs())  # the descriptions start in one column
    assert {line.index(line.split()[1], len(line.split()[0])) for line in lines} == {width + 2}
    assert f"{'sysu_full':<{width}}  The paper's model on sysu" in "\n".join(lines)
    assert main(["configs", "tiny.yaml"]) == 0
    assert capsys.readouterr().out == shipped_configs()["tiny"].read_text()
    full_caj = next(line for line in lines if line.startswith("llcm_full_caj "))
    assert full_caj.endswith("hard cross form), trained with the CAJ recipe (Ye et al., ICCV 2021) instead of AGW's.")


def test_trial_lists_parse():
    assert parse_trials("0-9") == list(range(10))
    assert parse_trials("1,3-4") == [1, 3, 4]
