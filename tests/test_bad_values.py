"""Bad values, absurd sizes, empty inputs, symbolic links and failed writes: each ends in one
line naming the path, key or flag and what was expected, before any work, with nothing
half-written and nothing of the user's lost."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

import vireid.evaluation.protocols
import vireid.memory
from vireid.atomic import write_text
from vireid.cli import main
from vireid.config import ConfigError, value_ranges
from vireid.data.image_folder import unlabelled_split
from vireid.datasets import GalleryOptions, get_protocol, trial_rows
from vireid.datasets.sysu import sysu_test_images
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet, load_features, save_features
from vireid.memory import machine_memory, readable_size, require_memory
from vireid.modality import Modality
from vireid.ranges import Range
from vireid.recipe import load_config
from vireid.retrieval.index import GalleryIndex
from vireid.viz.rank_list import RankedImage, rank_list_figure

GiB = 2**30


@pytest.fixture
def feature_files(sysu_root, tmp_path):
    """Two SYSU-MM01 feature files of different numbers (f, other) and one of no image (empty)."""
    images = sysu_test_images(sysu_root)
    files = {}
    for seed, name in enumerate(("f", "other")):
        features = np.random.default_rng(seed).normal(size=(len(images), 8)).astype(np.float32)
        files[name] = save_features(tmp_path / f"{name}.npz", FeatureSet(features, images, {"dataset": "sysu"}))
    empty = FeatureSet(np.zeros((0, 8), np.float32), images.subset(np.arange(0)), {"dataset": "sysu"})
    files["empty"] = save_features(tmp_path / "empty.npz", empty)
    return files


@pytest.fixture(scope="module")
def tiny_run(sysu_root, tmp_path_factory):
    """A tiny model trained for one step into --out, a symbolic link to a folder not yet made:
    (the link, the folder)."""
    folder = tmp_path_factory.mktemp("tiny")
    link = folder / "latest"
    link.symlink_to("run-1")
    settings = [f"data.root={sysu_root}", "data.height=32", "data.width=16", "train.epochs=1"]
    settings += ["train.steps_per_epoch=1", "train.workers=0", "train.eval_every=0"]
    arguments = ["train", "tiny", *[f"--set={setting}" for setting in settings], "--out", str(link), "--quiet"]
    assert main(arguments) == 0
    return link, folder / "run-1"


def _fails_in_one_line(capsys, arguments: list[str]) -> str:
    code = main([str(argument) for argument in arguments])
    error = capsys.readouterr().err
    assert code == 2, error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error, error
    return error.strip()


def _refused_by_parser(capsys, arguments: list[str]) -> str:
    """The last line argparse printed for ``arguments`` it refused (exit code 2)."""
    with pytest.raises(SystemExit) as exited:
        main([str(argument) for argument in arguments])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in error
    return error.strip().splitlines()[-1]


# Ranges


def test_a_range_holds_its_ends_as_said_and_no_nan_or_infinity():
    assert [value in Range(0, 1) for value in (-0.5, 0, 0.5, 1, 1.5)] == [False, True, True, True, False]
    assert [value in Range(0, 1, highest_excluded=True) for value in (0, 0.999, 1)] == [True, True, False]
    assert [value in Range(0, lowest_excluded=True) for value in (0, 2**-20, 10**30)] == [False, True, True]
    assert [value in Range() for value in (float("nan"), float("inf"), -float("inf"), -(10**30))] == [
        False,
        False,
        False,
        True,
    ]
    assert [
        Range(1).describe(),
        Range(0, lowest_excluded=True).describe(),
        Range(0, 1).describe(),
        Range(0, 1, highest_excluded=True).describe(),
        Range(0, 1, lowest_excluded=True, highest_excluded=True).describe(),
        Range(highest=5).describe(),
        Range().describe(),
    ] == [
        "at least 1",
        "more than 0",
        "0 to 1",
        "at least 0 and less than 1",
        "more than 0 and less than 1",
        "at most 5",
        "a finite number",
    ]


# Config values


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=.nan", "train.lr: expected a finite float, got nan"),
        ("train.lr=nan", "train.lr: expected a finite float, got 'nan'"),
        ("train.lr=-.inf", "train.lr: expected a finite float, got -inf"),
        ("train.lr=0", "train.lr: expected more than 0, got 0.0"),
        ("train.backbone_lr=-1e-3", "train.backbone_lr: expected at least 0, got -0.001"),
        ("train.epochs=0", "train.epochs: expected at least 1, got 0"),
        ("train.identities_per_batch=1", "train.identities_per_batch: expected at least 2, got 1"),
        ("train.instances_per_modality=0", "train.instances_per_modality: expected at least 1, got 0"),
        ("train.momentum=1", "train.momentum: expected more than 0 and less than 1, got 1.0"),
        ("train.gamma=0", "train.gamma: expected more than 0, got 0.0"),
        ("train.eval_every=-1", "train.eval_every: expected at least 0, got -1"),
        ("train.seed=-1", "train.seed: expected 0 to 4294967295, got -1"),
        ("train.milestones=[10,0]", "train.milestones: expected at least 1, got [10, 0]"),
        ("model.gem_p=0", "model.gem_p: expected more than 0, got 0.0"),
        ("loss.label_smoothing=1", "loss.label_smoothing: expected at least 0 and less than 1, got 1.0"),
        ("loss.triplet_weight=-0.5", "loss.triplet_weight: expected at least 0, got -0.5"),
        ("loss.alpha=1e400", "loss.alpha: expected a finite float, got '1e400'"),
        ("data.height=100000", "data.height: expected 16 to 2048, got 100000"),
        ("data.width=4", "data.width: expected 8 to 2048, got 4"),
        ("test.rerank_lambda=1.5", "test.rerank_lambda: expected 0 to 1, got 1.5"),
    ],
)
def test_config_values_out_of_their_range_name_the_key_the_range_and_the_value(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config("sysu_full", [override])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "override", ["train.lr=1e-6", "loss.label_smoothing=0.999", "model.gem_p=0.5", "train.seed=4294967295"]
)
def test_values_just_inside_their_range_are_taken(override):
    key, value = override.split("=")
    section, name = key.split(".")
    assert getattr(getattr(load_config("sysu_full", [override]), section), name) == float(value)


def test_every_number_key_has_a_range():
    numbers = (int, float, list[int], list[float])
    config = load_config("sysu_full")  # its model and loss sections: the AGW family's
    keys = {
        f"{section}.{field.name}"
        for section in ("data", "model", "loss", "train", "test")
        for field in dataclasses.fields(getattr(config, section))
        if typing.get_type_hints(type(getattr(config, section)))[field.name] in numbers
    }
    unchecked = {"data.trial", "train.erasing_fill"}  # checked against the dataset; a colour, any finite numbers
    assert keys - unchecked == set(value_ranges(config))


def test_a_batch_whose_input_alone_exceeds_the_memory_is_refused_with_the_estimate():
    with pytest.raises(ConfigError) as caught:
        load_config("sysu_full", ["test.batch_size=10000000"])
    # 10^7 images x 3 x 288 x 144 float32 = 4.98e12 bytes = 4.5 TiB, more than any machine this runs on
    assert str(caught.value) == (
        "test.batch_size: a batch of 10000000 images of 288x144 (data.height x data.width), its input alone, "
        f"would need about 4.5 TiB; this machine has {readable_size(machine_memory())}"
    )


def test_a_training_batch_is_estimated_with_every_view(monkeypatch):
    monkeypatch.setattr(vireid.memory, "machine_memory", lambda: 24 * GiB)
    with pytest.raises(ConfigError) as caught:  # 10000 x 4 x (2 visible + 1 infrared views) x 3 x 288 x 144 x 4
        load_config("sysu_caj", ["train.identities_per_batch=10000"])
    assert str(caught.value) == (
        "train.identities_per_batch x train.instances_per_modality: a training batch of 120000 images of "
        "288x144 (data.height x data.width), its input alone, would need about 56 GiB; this machine has 24 GiB"
    )


def test_memory_sizes_read_as_people_read_them(monkeypatch):
    assert [readable_size(size) for size in (512, 1536, 10 * 2**20, 37 * GiB + 2**29, 5 * 2**40)] == [
        "512 B",
        "1.5 KiB",
        "10 MiB",
        "38 GiB",
        "5.0 TiB",
    ]
    assert 0 < machine_memory() <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    monkeypatch.setattr(vireid.memory, "machine_memory", lambda: 2**20)
    require_memory(2**20, "exactly what there is")
    with pytest.raises(UserError, match=r"^one byte more would need about 1.0 MiB; this machine has 1.0 MiB$"):
        require_memory(2**20 + 1, "one byte more")


# Flags


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["synth", "--layout", "sysu", "--out", "{tmp}/d", "--seed", "-1"], "--seed: expected at least 0 (an integer)"),
        (["synth", "--layout", "sysu", "--out", "{tmp}/d", "--ids", "0"], "--ids: expected at least 1 (an integer)"),
        (["synth", "--layout", "sysu", "--out", "{tmp}/d", "--images-per-id", "-3"], "--images-per-id: expected at"),
        (["synth", "--layout", "sysu", "--out", "{tmp}/d", "--workers", "-1"], "--workers: expected at least 0"),
        (["synth", "--layout", "sysu", "--out", "{tmp}/d", "--ids", "1.5"], "--ids: expected at least 1 (an"),
        (["evaluate", "--features", "{f}", "--protocol", "sysu-all", "--lambda", "nan"], "--lambda: expected 0 to 1"),
        (["evaluate", "--features", "{f}", "--protocol", "sysu-all", "--lambda", "inf"], "--lambda: expected 0 to 1"),
        (["evaluate", "--features", "{f}", "--protocol", "sysu-all", "--lambda", "-0.1"], "--lambda: expected 0 to"),
        (["evaluate", "--features", "{f}", "--protocol", "sysu-all", "--k1", "0"], "--k1: expected at least 1 (an"),
        (["test", "{tmp}/run", "--k2", "x"], "--k2: expected at least 1 (an integer)"),
        (["index", "{f}", "--out", "{tmp}/i.npz", "--kind", "ivf", "--nlist", "0"], "--nlist: expected at least 1"),
        (["index", "{f}", "--out", "{tmp}/i.npz", "--kind", "ivf", "--nprobe", "-1"], "--nprobe: expected at least"),
        (["search", "{tmp}/i.npz", "--features", "{f}", "--top-k", "0"], "--top-k: expected at least 1"),
        (["search", "{tmp}/i.npz", "--features", "{f}", "--nprobe", "0"], "--nprobe: expected at least 1"),
        (["search", "{tmp}/i.npz", "--features", "{f}", "--picture-queries", "0"], "--picture-queries: expected at"),
        (["plot", "ranks", "{f}", "--out", "{tmp}/r.png", "--top-k", "-1"], "--top-k: expected at least 1"),
        (["plot", "ranks", "{f}", "--out", "{tmp}/r.png", "--queries", "0"], "--queries: expected at least 1"),
        (["plot", "ranks", "{f}", "--out", "{tmp}/r.png", "--trial", "-1"], "--trial: expected at least 0"),
        (["plot", "tsne", "{f}", "--out", "{tmp}/t.png", "--identities", "0"], "--identities: expected at least 1"),
        (["check", "{tmp}", "--trial", "-3"], "--trial: expected at least 0 (an integer)"),
        (
            [
                "extract",
                "x.pt",
                "--images",
                "{tmp}",
                "--modality",
                "visible",
                "--out",
                "{tmp}/x.npz",
                "--workers",
                "-2",
            ],
            "--workers: expected at least 0",
        ),  # fmt: skip
        (["demo", "--out", "{tmp}/demo", "--workers", "-1"], "--workers: expected at least 0 (an integer)"),
    ],
)
def test_number_flags_out_of_range_are_refused_by_the_parser(feature_files, tmp_path, capsys, arguments, message):
    arguments = [argument.format(tmp=tmp_path, f=feature_files["f"]) for argument in arguments]
    flag = next(argument for argument in arguments if argument.startswith("--") and argument in message)
    value = arguments[arguments.index(flag) + 1]
    line = _refused_by_parser(capsys, arguments)
    assert line.startswith(f"vireid {arguments[0]}: error: argument {message}")
    assert line.endswith(f", got {value!r}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.npz", "f.npz", "other.npz"]


# Sizes


def test_synth_refuses_a_dataset_whose_plan_would_not_fit_in_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vireid.memory, "machine_memory", lambda: 24 * GiB)
    arguments = ["synth", "--layout", "sysu", "--out", tmp_path / "d", "--ids", "10000000", "--workers", "1"]
    # 10^7 ids x 12 images x 2 modalities x 700 bytes + one worker's 128 x 64 pixels x 80 bytes = 156.5 GiB
    assert _fails_in_one_line(capsys, arguments) == (
        "vireid synth: error: --ids 10000000 --images-per-id 12 --size 128x64: 240,000,000 images, rendered by "
        "1 worker(s), would need about 156 GiB; this machine has 24 GiB"
    )
    huge = ["synth", "--layout", "regdb", "--out", tmp_path / "d", "--size", "60000x30000", "--workers", "2"]
    assert "rendered by 2 worker(s), would need about 268 GiB" in _fails_in_one_line(capsys, huge)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rerank", [False, True])
def test_scoring_that_would_not_fit_in_memory_is_refused_before_any_trial(
    sysu_root, feature_files, tmp_path, capsys, monkeypatch, rerank
):
    # plain scoring of this tiny set needs 256 MiB and a little (its chunks), re-ranking 512 MiB and more
    monkeypatch.setattr(vireid.memory, "machine_memory", lambda: 300 * 2**20 if rerank else 2**20)
    monkeypatch.setattr(vireid.evaluation.protocols, "evaluate_features", None)  # any scoring would fail
    query_rows, gallery_rows = trial_rows(get_protocol("sysu-all"), sysu_test_images(sysu_root), 0, GalleryOptions())
    arguments = ["evaluate", "--features", feature_files["f"], "--protocol", "sysu-all", "--json", tmp_path / "r.json"]
    error = _fails_in_one_line(capsys, [*arguments, *(["--rerank"] if rerank else [])])
    assert error.startswith(
        f"vireid evaluate: error: {feature_files['f']}, sysu-all trial 0: scoring {len(query_rows)} queries against "
        f"{len(gallery_rows)} gallery images{', re-ranked,' if rerank else ''} would need about "
    )
    assert error.endswith(f"; this machine has {'300 MiB' if rerank else '1.0 MiB'}")
    assert not (tmp_path / "r.json").exists()


_MEASURE = """
import re, sys, numpy as np, torch
from vireid.evaluation.metrics import evaluate_features, scoring_memory
from vireid.evaluation.rerank import RerankSettings
def peak():  # bytes: the process's resident peak (VmHWM, which a new process starts afresh)
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
torch.set_num_threads(1)
count, rerank = 4000, RerankSettings() if sys.argv[1] == "rerank" else None
query, gallery = torch.randn(count, 64), torch.randn(count, 64)
ids = np.arange(count) % 300
before = peak()
evaluate_features(query, gallery, ids, ids, np.ones(count, int), np.full(count, 2), "sysu", rerank=rerank)
print(peak() - before, scoring_memory(count, count, rerank))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc (Linux)")
@pytest.mark.parametrize("kind", ["plain", "rerank"])
@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_the_scoring_estimate_is_near_what_scoring_takes(kind):
    completed = subprocess.run([sys.executable, "-c", _MEASURE, kind], capture_output=True, text=True, check=True)
    measured, estimated = map(int, completed.stdout.split())
    assert measured <= estimated <= 2.5 * measured  # 4000 x 4000 on one thread: 378/561 and 531/798 MiB


def test_a_rank_list_picture_too_wide_to_draw_is_refused_before_drawing():
    query = RankedImage("query.jpg", 1, 3)
    with pytest.raises(UserError, match=r"^rank lists of 1 query x 1000 matches: a picture of \d+x\d+ pixels; "):
        rank_list_figure([query], [[RankedImage("missing.jpg", 0, 4, 0.5, 1)] * 1000])


def test_a_rank_list_picture_that_would_not_fit_in_memory_is_refused(feature_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vireid.memory, "machine_memory", lambda: 2**20)
    arguments = ["plot", "ranks", feature_files["f"], "--protocol", "sysu-all", "--out", tmp_path / "r.png"]
    error = _fails_in_one_line(capsys, arguments)
    found = re.fullmatch(
        r"vireid plot: error: rank lists of \d+ queries \(--queries\) x \d+ matches \(--top-k\): "
        r"a picture of (\d+)x(\d+) pixels "
        r"would need about (.+); this machine has 1.0 MiB",
        error,
    )
    assert found, error
    width, height, estimate = found.groups()
    assert estimate == readable_size(int(width) * int(height) * 7)  # its RGB canvas and Agg's RGBA buffer
    assert not (tmp_path / "r.png").exists()


def test_a_search_picture_too_large_names_the_flags_that_size_it(feature_files, tmp_path, capsys, monkeypatch):
    assert main(["index", str(feature_files["f"]), "--out", str(tmp_path / "i.npz")]) == 0
    monkeypatch.setattr(vireid.memory, "machine_memory", lambda: 2**20)
    arguments = ["search", tmp_path / "i.npz", "--features", feature_files["f"], "--picture", tmp_path / "hits.png"]
    error = _fails_in_one_line(capsys, [*arguments, "--picture-queries", "3", "--top-k", "1"])
    assert error.startswith("vireid search: error: rank lists of 3 queries (--picture-queries) x 1 match (--top-k): ")
    assert not (tmp_path / "hits.png").exists()


def test_search_shows_the_whole_gallery_when_top_k_exceeds_it(feature_files, tmp_path, capsys):
    assert main(["index", str(feature_files["f"]), "--out", str(tmp_path / "i.npz")]) == 0
    arguments = ["search", str(tmp_path / "i.npz"), "--features", str(feature_files["f"]), "--top-k", "1000000"]
    assert main([*arguments, "--json", str(tmp_path / "hits.json")]) == 0
    hits = json.loads((tmp_path / "hits.json").read_text())
    gallery = len(load_features(feature_files["f"]).images)
    assert {len(query["hits"]) for query in hits} == {gallery}


# Empty inputs


@pytest.mark.parametrize(
    "arguments",
    [
        ["search", "{tmp}/i.npz", "--features", "{empty}"],
        ["index", "{empty}", "--out", "{tmp}/e.npz"],
        ["evaluate", "--features", "{empty}", "--protocol", "sysu-all"],
        ["plot", "tsne", "{empty}", "--out", "{tmp}/t.png"],
    ],
)
def test_a_feature_file_of_no_image_is_named(feature_files, tmp_path, capsys, arguments):
    GalleryIndex.build(load_features(feature_files["f"])).save(tmp_path / "i.npz")
    arguments = [argument.format(tmp=tmp_path, empty=feature_files["empty"]) for argument in arguments]
    error = _fails_in_one_line(capsys, arguments)
    assert error.endswith(
        f"{feature_files['empty']}: holds no image (0 feature rows); expected the features of at least one"
    )
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "t.png").exists()


def test_an_empty_gallery_in_memory_is_named_too():
    empty = FeatureSet(np.zeros((0, 4), np.float32), unlabelled_split([], Modality.VISIBLE), source="day.npz")
    with pytest.raises(UserError, match=r"^day.npz: holds no image; an index needs at least one$"):
        GalleryIndex.build(empty)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "lists.txt: expected a list of image paths, one per line; the file lists none"),
        (
            "\n   \n# only a comment\n\t\n",
            "lists.txt: expected a list of image paths, one per line; the file lists none",
        ),
        (None, "own: none of its 2 files could be read as an image (first: "),
    ],
)
def test_own_images_that_give_no_feature_are_named(tiny_run, tmp_path, capsys, content, message):
    link, _ = tiny_run
    if content is None:
        source = tmp_path / "own"
        (source / "deeper").mkdir(parents=True)
        (source / "a.jpg").write_bytes(b"not a picture")
        (source / "deeper" / "b.png").write_bytes(b"")
    else:
        source = tmp_path / "lists.txt"
        source.write_text(content)
    arguments = ["extract", link / "last.pt", "--images", source, "--modality", "visible", "--out", tmp_path / "x.npz"]
    assert message in _fails_in_one_line(capsys, [*arguments, "--quiet"])
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("under", ["", "sub"])
def test_a_cache_dir_that_cannot_be_a_folder_is_refused_before_training(sysu_root, tmp_path, capsys, under):
    blocker = tmp_path / "cache"
    blocker.write_text("a file of yours\n")
    cache_dir = blocker / under if under else blocker
    settings = [f"data.root={sysu_root}", "data.height=32", "data.width=16", f"train.cache_dir={cache_dir}"]
    arguments = ["train", "tiny", *[f"--set={setting}" for setting in settings], "--out", tmp_path / "run", "--quiet"]
    expected = {
        "": f"train.cache_dir: {cache_dir}: expected a folder to write into, but it is a file",
        "sub": f"train.cache_dir: {cache_dir}: cannot be written, {blocker} is a file, not a folder",
    }[under]
    assert _fails_in_one_line(capsys, arguments) == f"vireid train: error: {expected}"
    assert not (tmp_path / "run").exists() and blocker.read_text() == "a file of yours\n"


# Symbolic links


def _no_partials(*folders: Path) -> bool:
    return not any(".partial-" in path.name for folder in folders for path in folder.iterdir())


def test_a_link_is_written_through_and_stays(tmp_path):
    kept = tmp_path / "kept" / "results.json"
    kept.parent.mkdir()
    kept.write_text("old\n")
    (tmp_path / "latest.json").symlink_to("kept/results.json")  # relative, as `ln -s` makes it
    (tmp_path / "newest.json").symlink_to(tmp_path / "latest.json")  # a link to the link
    write_text(tmp_path / "newest.json", "new\n")
    assert os.readlink(tmp_path / "newest.json") == str(tmp_path / "latest.json")
    assert os.readlink(tmp_path / "latest.json") == "kept/results.json"
    assert kept.read_text() == "new\n" and _no_partials(tmp_path, kept.parent)


def test_a_dangling_link_gets_its_target_if_the_target_folder_exists(tmp_path):
    (tmp_path / "later.txt").symlink_to("made/later.txt")
    with pytest.raises(UserError, match=r"later.txt: a symbolic link to .*made/later.txt, whose folder does not exist"):
        write_text(tmp_path / "later.txt", "text\n")
    assert not (tmp_path / "made").exists()
    (tmp_path / "made").mkdir()
    write_text(tmp_path / "later.txt", "text\n")
    assert (tmp_path / "later.txt").is_symlink() and (tmp_path / "made" / "later.txt").read_text() == "text\n"


def test_command_outputs_that_are_links_keep_their_links(feature_files, tmp_path, capsys):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "results.json").write_text("an earlier result\n")
    links = {name: tmp_path / name for name in ("latest.json", "index.npz", "tsne.png", "cmc.png")}
    links["latest.json"].symlink_to(kept / "results.json")
    links["index.npz"].symlink_to("kept/index.npz")  # dangling, its folder there
    links["tsne.png"].symlink_to(kept / "tsne.png")
    links["cmc.png"].symlink_to(tmp_path / "missing" / "cmc.png")  # dangling into no folder
    features = str(feature_files["f"])
    evaluate = ["evaluate", "--features", features, "--protocol", "sysu-all", "--trials", "0"]
    assert main([*evaluate, "--json", str(links["latest.json"])]) == 0
    assert main(["index", features, "--out", str(links["index.npz"])]) == 0
    assert main(["plot", "tsne", features, "--out", str(links["tsne.png"])]) == 0
    assert all(link.is_symlink() for link in links.values())
    assert json.loads((kept / "results.json").read_text())["protocol"] == "sysu-all"
    assert len(GalleryIndex.load(kept / "index.npz")) == len(load_features(features).images)
    assert (kept / "tsne.png").read_bytes().startswith(b"\x89PNG")
    error = _fails_in_one_line(capsys, [*evaluate, "--json", links["cmc.png"]])
    assert error.endswith(
        f"cmc.png: a symbolic link to {tmp_path / 'missing' / 'cmc.png'}, whose folder does not exist"
    )
    assert not (tmp_path / "missing").exists() and _no_partials(tmp_path, kept)


def test_a_run_folder_given_as_a_link_is_its_target(tiny_run):
    link, folder = tiny_run
    assert link.is_symlink() and os.readlink(link) == "run-1"
    assert sorted(path.name for path in folder.iterdir()) == [
        "best.pt",
        "config.yaml",
        "last.pt",
        "metrics.jsonl",
        "tensorboard",
    ]


# Writes that fail half-way


def _with_file_size_limit(limit: int, arguments: list) -> subprocess.CompletedProcess:
    """``vireid ARGUMENTS`` in a process whose files cannot grow past ``limit`` bytes (a full disk,
    as the process sees it: Python ignores SIGXFSZ, so the write fails with EFBIG)."""
    code = (
        "import resource, sys\nfrom vireid.cli import main\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\nsys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run([sys.executable, "-c", code, *map(str, arguments)], capture_output=True, text=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused_write(completed: subprocess.CompletedProcess, command: str, path: Path, before: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert (
        completed.stderr.strip().splitlines()[-1]
        == f"vireid {command}: error: {path}: could not be written (File too large)"
    )
    assert _digest(path) == before  # the previous file, whole
    assert _no_partials(path.parent)


@pytest.mark.parametrize(
    "command, arguments, previous",
    [
        ("index", ["{f}", "--out", "{out}"], "{other}"),
        ("evaluate", ["--features", "{f}", "--protocol", "sysu-all", "--json", "{out}"], "[]\n"),
        pytest.param(  # a t-SNE drawn first (5 s): make test-slow (and CI) runs it
            "plot", ["tsne", "{f}", "--out", "{out}"], "an earlier picture", marks=pytest.mark.slow
        ),
    ],
)
def test_a_write_that_fails_half_way_leaves_the_previous_file(feature_files, tmp_path, command, arguments, previous):
    out = tmp_path / "out"
    if previous == "{other}":  # an index of other features, so that a new one would differ
        assert main([command, str(feature_files["other"]), "--out", str(out)]) == 0
    else:
        out.write_text(previous)
    before = _digest(out)
    arguments = [argument.format(f=feature_files["f"], out=out) for argument in arguments]
    _refused_write(_with_file_size_limit(100, [command, *arguments]), command, out, before)


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_a_feature_file_and_a_checkpoint_that_fail_half_way_leave_the_previous_ones(sysu_root, tiny_run, tmp_path):
    link, folder = tiny_run
    out = tmp_path / "day.npz"
    out.write_bytes(b"the features of yesterday")
    images = ["extract", link / "last.pt", "--images", sysu_root / "cam1", "--modality", "visible", "--quiet"]
    _refused_write(_with_file_size_limit(1000, [*images, "--out", out]), "extract", out, _digest(out))
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    before = _digest(run / "last.pt")
    resumed = ["train", "--resume", run / "last.pt", "--set", "train.epochs=2", "--quiet"]
    _refused_write(_with_file_size_limit(2**20, resumed), "train", run / "last.pt", before)


def test_a_synthetic_dataset_that_fails_half_way_leaves_nothing(tmp_path):
    arguments = ["synth", "--layout", "sysu", "--out", tmp_path / "d", "--ids", "4", "--images-per-id", "1"]
    completed = _with_file_size_limit(2000, [*arguments, "--workers", "0"])
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.strip() == f"vireid synth: error: {tmp_path / 'd'}: could not be written (File too large)"
    assert list(tmp_path.iterdir()) == []
