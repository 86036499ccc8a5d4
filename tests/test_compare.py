"""`vireid compare`: runs x protocols with mean ± std computed by hand from the results files,
re-ranked rows of their own, runs of several seeds, the Markdown and the picture."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from PIL import Image

from vireid.cli import main
from vireid.errors import UserError
from vireid.evaluation.compare import COLUMNS, comparison_table, method_label
from vireid.evaluation.results_file import read_results
from vireid.published import PublishedRow, load_published


def _cmc(rank1: float, rank10: float, rank20: float) -> list[float]:
    """A 20-long CMC with the given values at ranks 1, 10 and 20."""
    return [rank1] * 9 + [rank10] * 10 + [rank20]


def _record(protocol: str, trials: list[tuple[list[float], float, float]], reranked: dict | None = None) -> dict:
    return {
        "protocol": protocol,
        "shot": "single",
        "draws": "agw",
        "reranked": reranked,
        "trials": [{"trial": index, "cmc": cmc, "mAP": ap, "mINP": inp} for index, (cmc, ap, inp) in enumerate(trials)],
    }


def _run(folder: Path, records: list[dict], method: str | None = None, parts: int = 0) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(records))
    if method:
        (folder / "config.yaml").write_text(f"name: {folder.name}\nmodel:\n  method: {method}\n  parts: {parts}\n")
    return folder


@pytest.fixture
def two_runs(tmp_path):
    rerank = {"k1": 20, "k2": 6, "lambda_value": 0.3}
    baseline = _run(
        tmp_path / "baseline",
        [
            _record("sysu-all", [(_cmc(0.5, 0.8, 0.9), 0.4, 0.2), (_cmc(0.3, 0.6, 0.7), 0.2, 0.1)]),
            _record("sysu-all", [(_cmc(0.6, 0.8, 0.9), 0.5, 0.3), (_cmc(0.4, 0.7, 0.8), 0.3, 0.2)], rerank),
            _record("sysu-indoor", [(_cmc(0.7, 0.9, 1.0), 0.6, 0.5), (_cmc(0.5, 0.8, 1.0), 0.4, 0.3)]),
        ],
        "agw",
    )
    paper = _run(tmp_path / "paper", [_record("sysu-all", [(_cmc(0.9, 1.0, 1.0), 0.8, 0.7)])], "agw_fgfl_cmimpl", 4)
    return baseline, paper


def test_the_table_holds_each_runs_mean_and_std_by_protocol(two_runs):
    table = comparison_table(read_results(two_runs))
    lines = table.splitlines()
    assert lines[0] == (
        "| run | method | sysu-all R1 | sysu-all R10 | sysu-all R20 | sysu-all mAP | sysu-all mINP "
        "| sysu-indoor R1 | sysu-indoor R10 | sysu-indoor R20 | sysu-indoor mAP | sysu-indoor mINP |"
    )
    # baseline sysu-all: R1 (50, 30) -> 40.00 ± 14.14 (sample std), R10 (80, 60) -> 70.00 ± 14.14, ...
    assert lines[2] == (
        "| baseline | agw | 40.00 ± 14.14 | 70.00 ± 14.14 | 80.00 ± 14.14 | 30.00 ± 14.14 | 15.00 ± 7.07 "
        "| 60.00 ± 14.14 | 85.00 ± 7.07 | 100.00 ± 0.00 | 50.00 ± 14.14 | 40.00 ± 14.14 |"
    )
    assert lines[3] == (
        "| baseline, re-ranked (k1 20, k2 6, λ 0.3) | agw | 50.00 ± 14.14 | 75.00 ± 7.07 | 85.00 ± 7.07 "
        "| 40.00 ± 14.14 | 25.00 ± 7.07 | – | – | – | – | – |"
    )
    assert lines[4] == (
        "| paper | agw_fgfl_cmimpl (parts 4) | 90.00 ± 0.00 | 100.00 ± 0.00 | 100.00 ± 0.00 | 80.00 ± 0.00 "
        "| 70.00 ± 0.00 | – | – | – | – | – |"
    )
    assert lines[-1] == "mean ± standard deviation over trials, in percent"


def test_runs_of_several_seeds_give_the_std_over_seeds(tmp_path):
    seeds = [
        {"seed": seed, **_record("regdb-v2t", [(_cmc(r1, 1.0, 1.0), ap, 0.5), (_cmc(r1, 1.0, 1.0), ap, 0.5)])}
        for seed, r1, ap in ((0, 0.6, 0.5), (1, 0.8, 0.7))
    ]
    folder = _run(tmp_path / "seeds", [{"protocol": "regdb-v2t", "per_seed": seeds}])
    table = comparison_table(read_results([folder]))
    assert "| seeds | – | 70.00 ± 14.14 | 100.00 ± 0.00 | 100.00 ± 0.00 | 60.00 ± 14.14 | 50.00 ± 0.00 |" in table
    assert table.endswith("mean ± standard deviation over seeds, in percent")


def test_cli_compare_writes_markdown_and_a_picture_and_filters_protocols(two_runs, tmp_path, capsys):
    baseline, paper = two_runs
    out, picture = tmp_path / "report" / "compare.md", tmp_path / "report" / "compare_cmc.png"
    arguments = ["compare", str(baseline), str(paper / "results.json"), "--protocol", "sysu-all"]
    assert main([*arguments, "--out", str(out), "--picture", str(picture)]) == 0
    printed = capsys.readouterr().out
    assert "sysu-indoor" not in printed and "| paper | agw_fgfl_cmimpl (parts 4) | 90.00 ± 0.00 |" in printed
    report = out.read_text()
    assert report.startswith("# Results side by side") and "![CMC](compare_cmc.png)" in report
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert main(["compare", str(baseline), "--protocol", "llcm-ir2vis"]) == 2
    assert "--protocol llcm-ir2vis: the results hold sysu-all, sysu-indoor" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: expected a results.json written by `vireid test`" in capsys.readouterr().err
    (tmp_path / "untested").mkdir()
    assert main(["compare", str(tmp_path / "untested")]) == 2
    assert "untested: holds no results.json; score the run first: vireid test" in capsys.readouterr().err


def test_method_label_names_what_a_run_changed():
    assert method_label({"model": {"method": "caj", "parts": 6, "cmimpl": True}}) == "caj (parts 6, cmimpl True)"
    assert method_label({"model": {"method": "agw_fgfl_cmimpl", "parts": 6, "cmimpl": True}}) == "agw_fgfl_cmimpl"
    assert method_label(None) == "–"
    ablation = {"model": {"method": "caj", "parts": 0}, "loss": {"triplet": "wrt"}, "train": {"epochs": 100}}
    assert method_label(ablation) == "caj (loss.triplet wrt)"


def test_runs_of_other_data_or_other_protocols_are_refused_not_drawn_together(two_runs, tmp_path, capsys):
    baseline, paper = two_runs
    assert main(["compare", str(baseline), str(paper)]) == 2
    error = capsys.readouterr().err
    assert "paper: has no results of sysu-indoor (it holds sysu-all); figures of different protocols" in error
    assert len(error.strip().splitlines()) == 1
    assert main(["plot", "cmc", str(baseline), str(paper), "--out", str(tmp_path / "cmc.png")]) == 2
    assert "paper: has no results of sysu-indoor" in capsys.readouterr().err
    assert not (tmp_path / "cmc.png").exists()
    picture = str(tmp_path / "cmc.png")
    assert main(["plot", "cmc", str(baseline), str(paper), "--protocol", "sysu-all", "--out", picture]) == 0
    fingerprint = {
        "dataset": "sysu",
        "images": {"train": {"visible": 8, "infrared": 8}, "test": {"visible": 4, "infrared": 4}},
        "image_files": 24,
    }
    records = [_record("sysu-all", [(_cmc(0.5, 0.8, 0.9), 0.4, 0.2)])]
    for name, files in (("on-a", "aaaa"), ("on-b", "bbbb")):
        _run(tmp_path / name, [{**record, "data": {**fingerprint, "files": files}} for record in records])
    assert main(["compare", str(tmp_path / "on-a"), str(tmp_path / "on-b")]) == 2
    error = capsys.readouterr().err
    assert "on-b: results of other data than on-a (sysu: train 8 visible + 8 infrared, test 4 + 4; 24 image" in error
    assert "hash bbbb vs sysu:" in error and "compare runs scored on one dataset folder" in error
    assert main(["plot", "cmc", str(tmp_path / "on-a"), str(tmp_path / "on-b"), "--out", str(tmp_path / "x.png")]) == 2
    assert "results of other data than on-a" in capsys.readouterr().err


# --- published figures ------------------------------------------------------------------------------


def test_the_shipped_published_figures_load_with_their_sources():
    rows = {(row.name, row.protocol): row for row in load_published()}
    assert rows["paper", "sysu-all"].figures == {"R1": 56.48, "R10": 88.25, "R20": 94.43, "mAP": 51.91, "mINP": None}
    assert rows["paper", "regdb-t2v"].figures["mAP"] == 76.33
    assert (rows["agw", "regdb-v2t"].figures["R1"], rows["agw", "regdb-v2t"].figures["mINP"]) == (70.05, 50.19)
    assert (rows["deen", "sysu-all"].figures["R1"], rows["deen", "sysu-all"].citation) == (74.7, "CVPR 2023")
    assert {"paper_baseline", "paper_fgfl", "paper_fgfl_cmimpl", "caj"} <= {name for name, _ in rows}
    assert all(row.source and not row.reranked for row in rows.values())


@pytest.mark.parametrize(
    "change, message",
    [
        ("protocol: sysu-all", "entry 1 \\(mine\\) result 1.protocol: expected one of .*got 'market'"),
        ("R1: 56.48", "entry 1 \\(mine\\) result 1.R1: expected a percentage from 0 to 100 or null, got 156.48"),
        ("source: the paper", "entry 1 \\(mine\\) result 1: expected the keys protocol, R1, R10"),
    ],
)
def test_a_broken_figures_file_names_the_entry_and_the_key(tmp_path, change, message):
    row = {"protocol": "sysu-all", "R1": 56.48, "R10": None, "R20": None, "mAP": 51.9, "mINP": None}
    row |= {"reranked": False, "source": "the paper"}
    key = change.split(":")[0]
    row[key] = {"protocol": "market", "R1": 156.48}.get(key)
    if key == "source":
        del row["source"]
    entry = {"name": "mine", "method": "m", "paper": "p", "venue": "v", "year": 2024, "code": None, "results": [row]}
    (tmp_path / "figures.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(UserError, match=message):
        load_published(tmp_path / "figures.yaml")


def test_compare_adds_the_named_published_rows_on_the_tables_protocols(two_runs, capsys):
    baseline, _ = two_runs
    assert main(["compare", str(baseline), "--protocol", "sysu-indoor", "--published", "paper", "agw"]) == 0
    printed = capsys.readouterr().out
    assert (
        "| published: paper (journal) | FGFL + CMIMPL (the paper vireid started from) | 59.69 | 92.80 | 97.55 "
        in printed
    )
    assert "| published: agw (TPAMI 2021) | AGW | 54.17 | – | – | 62.97 | – |" in printed
    assert "published: caj" not in printed and "sysu-all" not in printed.split("Published rows")[0]
    assert "- agw, sysu-indoor: the AGW paper (SYSU-MM01 indoor-search)" in printed
    assert main(["compare", str(baseline), "--published", "pcb"]) == 2
    assert "--published: unknown pcb; the published methods: paper, paper_baseline" in capsys.readouterr().err


def test_a_re_ranked_published_row_says_so_beside_plain_runs(two_runs):
    plain = [result for result in read_results(two_runs) if not result.reranked]
    published = PublishedRow("theirs", "X", "ICCV 2021", "sysu-all", dict.fromkeys(COLUMNS, 50.0), True, "a table")
    table = comparison_table(plain, ["sysu-all"], [published])
    assert "| published: theirs (ICCV 2021, re-ranked) | X | 50.00 |" in table
    assert "Rows marked re-ranked hold re-ranked figures: compare them with re-ranked runs" in table
    assert "Rows marked re-ranked" not in comparison_table(plain, ["sysu-all"], [replace(published, reranked=False)])
