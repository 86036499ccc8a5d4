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
    results = run_demo(out, **settings)
    assert [result.protocol.name for result in results] == ["sysu-all", "sysu-indoor"]
    assert all(len(result.trials) == 10 for result in results)
    report = (out / "results.md").read_text()
    assert report.count("| sysu-all single-shot (agw draws)") == 2  # trained model and hand-made floor
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
    run_demo(out, **settings)  # a second run reuses the generated data
    assert "using the synthetic dataset at" in capsys.readouterr().out
