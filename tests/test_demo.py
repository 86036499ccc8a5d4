"""The demo end to end at a reduced size: data generated once, a run folder, both tables."""

from __future__ import annotations

from vireid.demo import run_demo


def test_demo_trains_tests_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    settings = dict(
        identities=24,
        images_per_id=4,
        workers=1,
        overrides=["train.epochs=1", "train.steps_per_epoch=2"],
        progress=False,
    )
    results = run_demo(out, **settings, compare=True)
    assert [(result.protocol.name, bool(result.rerank)) for result in results] == [
        ("sysu-all", False),
        ("sysu-all", True),
        ("sysu-indoor", False),
        ("sysu-indoor", True),
    ]
    assert all(len(result.trials) == 10 for result in results)
    report = (out / "results.md").read_text()
    rows = [line.split(" | ")[:2] for line in report.splitlines() if line.startswith("| ") and "±" in line]
    assert rows == [
        ["| tiny", "agw_fgfl_cmimpl (parts 4)"],
        ["| tiny, re-ranked (k1 20, k2 6, λ 0.3)", "agw_fgfl_cmimpl (parts 4)"],
        ["| agw", "agw"],
        ["| agw, re-ranked (k1 20, k2 6, λ 0.3)", "agw"],
        ["| caj", "caj (train.epochs 1)"],  # what the run changed of the CAJ recipe
        ["| caj, re-ranked (k1 20, k2 6, λ 0.3)", "caj (train.epochs 1)"],
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
    assert (out / "caj" / "config.yaml").is_file() and (out / "agw" / "results.json").is_file()
    capsys.readouterr()
    run_demo(out, **settings)  # a second run reuses the generated data
    assert "using the synthetic dataset at" in capsys.readouterr().out
    assert "| caj |" not in (out / "results.md").read_text()  # without compare: the paper's model alone
