"""The demo end to end at a reduced size: data generated once, a run folder, the side-by-side
table with re-ranked rows; with --compare (slow) the AGW and CAJ variants beside it."""

from __future__ import annotations

import pytest

from vireid.demo import run_demo

SETTINGS = dict(
    identities=24,
    images_per_id=4,
    workers=1,
    overrides=["train.epochs=1", "train.steps_per_epoch=2"],
    progress=False,
)


def _rows(report: str) -> list[list[str]]:
    """(run, method) of each row of the side-by-side table."""
    return [line.split(" | ")[:2] for line in report.splitlines() if line.startswith("| ") and "±" in line]


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_demo_trains_tests_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    results = run_demo(out, **SETTINGS)
    assert [(result.protocol.name, bool(result.rerank)) for result in results] == [
        ("sysu-all", False),
        ("sysu-all", True),
        ("sysu-indoor", False),
        ("sysu-indoor", True),
    ]
    assert all(len(result.trials) == 10 for result in results)
    report = (out / "results.md").read_text()
    assert _rows(report) == [
        ["| tiny", "agw_fgfl_cmimpl (parts 4)"],
        ["| tiny, re-ranked (k1 20, k2 6, λ 0.3)", "agw_fgfl_cmimpl (parts 4)"],
        ["| hand-made-descriptor", "–"],
    ]
    assert "Chance rank-1:" in report
    assert "![rank lists](run/ranks_sysu-all.png)" in report
    assert {path.name for path in (out / "run").iterdir()} >= {
        "config.yaml",
        "last.pt",
        "metrics.jsonl",
        "results.md",
        "results.json",
        "features.npz",
        "cmc.png",
        "ranks_sysu-all.png",
        "tsne.png",
    }
    capsys.readouterr()
    run_demo(out, **SETTINGS)  # a second run reuses the generated data
    assert "using the synthetic dataset at" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_compare_trains_the_agw_and_caj_variants_too(tmp_path):
    out = tmp_path / "demo"
    run_demo(out, **SETTINGS, compare=True)
    assert _rows((out / "results.md").read_text()) == [
        ["| tiny", "agw_fgfl_cmimpl (parts 4)"],
        ["| tiny, re-ranked (k1 20, k2 6, λ 0.3)", "agw_fgfl_cmimpl (parts 4)"],
        ["| agw", "agw"],
        ["| agw, re-ranked (k1 20, k2 6, λ 0.3)", "agw"],
        ["| caj", "caj (train.epochs 1)"],  # what the run changed of the CAJ recipe
        ["| caj, re-ranked (k1 20, k2 6, λ 0.3)", "caj (train.epochs 1)"],
        ["| hand-made-descriptor", "–"],
    ]
    assert (out / "caj" / "config.yaml").is_file() and (out / "agw" / "results.json").is_file()
