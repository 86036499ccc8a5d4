"""Config files and overrides: typed values, and errors that name the key and the choices."""
from __future__ import annotations

from pathlib import Path

import pytest

from vireid.config import ConfigError, config_to_dict, load_config
from vireid.models.network import build_model, parameter_counts

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_the_paper_recipe():
    config = load_config()
    assert (config.model.backbone, config.model.last_stride, config.model.gem_p) == ("resnet50", 1, 3.0)
    assert (config.loss.alpha, config.loss.beta, config.loss.cross_loss) == (1.2, 0.4, "hard")
    assert (config.data.height, config.data.width) == (288, 144)


def test_overrides_apply_in_order_with_yaml_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  parts: 6\nloss:\n  beta: 1\n")
    config = load_config(path, ["model.parts=3", "model.cmimpl=true", "loss.cross_loss=soft", "data.root=/x y"])
    assert config.model.parts == 3 and config.model.cmimpl is True
    assert config.loss.beta == 1.0 and isinstance(config.loss.beta, float)
    assert config.loss.cross_loss == "soft" and config.data.root == "/x y"
    assert config_to_dict(config)["model"]["parts"] == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.partz=3", "model.partz: unknown config key; valid keys here: model.backbone"),
        ("modle.parts=3", "modle: unknown config key; valid keys here: name, data, model, loss, train, test"),
        ("loss.cross_loss=kl", "loss.cross_loss: expected one of 'hard', 'soft', 'ce', 'both', got 'kl'"),
        ("model.parts=six", "model.parts: expected int, got 'six'"),
        ("model.cmimpl=3", "model.cmimpl: expected bool, got 3"),
        ("model", "expected key=value"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert message in str(caught.value)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: expected a YAML config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_every_shipped_config_loads_and_builds(path):
    config = load_config(path)
    variant = path.stem.split("_")[-1]
    expected = {"agw": (0, False), "fgfl": (6, False), "full": (6, True), "tiny": (4, True)}[variant]
    assert (config.model.parts, config.model.cmimpl) == expected
    if variant != "tiny":
        assert config.data.dataset == path.stem.split("_")[0]
    model = build_model(config.model, num_classes=10, load_weights=False)
    assert parameter_counts(model)["frozen"] == (2048 if config.model.backbone == "resnet50" else 512)


def test_every_ablation_row_has_a_config_per_dataset():
    names = {path.stem for path in CONFIGS}
    assert {f"{dataset}_{variant}" for dataset in ("sysu", "regdb", "llcm") for variant in ("agw", "fgfl", "full")} <= names
