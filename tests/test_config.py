"""Config files and overrides: typed values, and errors that name the key and the choices."""

from __future__ import annotations

import typing

import pytest
from command_walk import reference_learning_rate

from vireid.config import ConfigError, TrainConfig, config_to_dict, find_config, shipped_configs
from vireid.data.sampler import Draw
from vireid.engine.trainer import learning_rate_factor
from vireid.method import parameter_counts
from vireid.recipe import build_model, load_config

CONFIGS = sorted(shipped_configs())


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
        ("model.partz=3", "model.partz: unknown config key; did you mean model.parts?"),
        ("modle.parts=3", "modle: unknown config key; did you mean model?"),
        ("model.zzz=3", "model.zzz: unknown config key; valid keys here: model.method, model.backbone"),
        ("loss.cross_loss=kl", "loss.cross_loss: expected one of 'hard', 'soft', 'ce', 'both', got 'kl'"),
        ("model.parts=six", "model.parts: expected int, got 'six'"),
        ("model.cmimpl=3", "model.cmimpl: expected bool, got 3"),
        ("model", "expected key=value"),
        ("train.lr=fast", "train.lr: expected float, got 'fast'"),
        ("train.lr=nan", "train.lr: expected a finite float, got 'nan'"),
        ("train.lr=.inf", "train.lr: expected a finite float, got inf"),
        ("train.sampler=random", "train.sampler: expected one of 'balanced', 'independent', got 'random'"),
        ("data.resize_filter=bicubic", "data.resize_filter: expected one of 'bilinear', 'lanczos', got 'bicubic'"),
        ("train.eval_offset=-1", "train.eval_offset: expected at least 0, got -1"),
        ("train.eval_flip=1", "train.eval_flip: expected bool, got 1"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "spelling, value",
    [("1e-3", 1e-3), ("1E-3", 1e-3), ("1.0e-3", 1e-3), ("+2e1", 20.0), (".5", 0.5), ("5.", 5.0), ("3", 3.0)],
)
def test_every_float_spelling_is_a_float(spelling, value, tmp_path):
    assert load_config(None, [f"train.lr={spelling}"]).train.lr == value
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  backbone_lr: {spelling}\n")
    assert load_config(path).train.backbone_lr == value


def test_shipped_configs_are_found_by_name_and_a_file_comes_first(tmp_path, monkeypatch):
    assert load_config("sysu_full").name == load_config("sysu_full.yaml").name == "sysu_full"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sysu_full.yaml").write_text("name: mine\n")
    assert load_config("sysu_full.yaml").name == "mine"  # a file of that name in the current folder wins
    assert load_config("sysu_full").name == "mine"  # by its bare name too
    assert load_config("sysu_agw").name == "sysu_agw"  # no such file here: the shipped one
    assert find_config("sysu_agw").read_text() == shipped_configs()["sysu_agw"].read_text()
    with pytest.raises(
        ConfigError, match=r"sysu_ful: expected a YAML config file or the name of a shipped config \(llcm_agw, .*tiny\)"
    ):
        load_config("sysu_ful")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: expected a YAML config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_loads_and_builds(name):
    config = load_config(name)
    variant = "full" if "_full" in name else name.split("_")[-1]
    if variant != "tiny":
        assert config.data.dataset == name.split("_")[0]
    model = build_model(config, num_classes=10, load_weights=False)
    if variant == "deen":
        assert config.model.method == "deen"
        assert config.model.dee_after == ("layer2" if config.data.dataset == "regdb" else "layer3")
        assert parameter_counts(model)["frozen"] == model.backbone.out_channels  # the BNNeck's shift
        return
    expected = {"agw": (0, False), "fgfl": (6, False), "full": (6, True), "tiny": (4, True), "caj": (0, False)}[variant]
    assert (config.model.parts, config.model.cmimpl) == expected
    assert parameter_counts(model)["frozen"] == (2048 if config.model.backbone == "resnet50" else 512)


def test_every_ablation_row_has_a_config_per_dataset():
    names = set(CONFIGS)
    assert {
        f"{dataset}_{variant}" for dataset in ("sysu", "regdb", "llcm") for variant in ("agw", "fgfl", "full")
    } <= names


def test_llcm_configs_follow_the_llcm_repositorys_agw_settings():
    """ZYK100/LLCM AGW/train.py: 288 x 144, 8 x 4 batches, erasing 0.5 filled with 0 after Normalize,
    epochs 0..80, a test every 2 epochs keeping the best rank-1 of visible queries on trial 0."""
    for name in ("llcm_agw", "llcm_fgfl", "llcm_full"):
        config = load_config(name)
        assert (config.data.height, config.data.width) == (288, 144)
        train = config.train
        assert (train.identities_per_batch, train.instances_per_modality, train.epochs) == (8, 4, 81)
        assert (train.lr, train.backbone_lr, train.warmup_epochs, train.milestones) == (0.1, 0.01, 10, [20, 50])
        assert (train.random_erasing, train.erasing, train.erasing_fill) == (0.5, "reid", [0.0, 0.0, 0.0])
        assert (train.eval_every, train.select_on) == (2, "test-rank1")
        assert train.eval_protocol == "llcm-vis2ir-visible-queries"
        lines = find_config(name).read_text().split("train:")[1].splitlines()
        assert all("#" in line for line in lines if line.strip()), name  # every setting names its source


def test_paper_configs_say_how_to_train_in_fp32_as_the_reference():
    for dataset in ("sysu", "regdb", "llcm"):
        for variant in ("agw", "fgfl", "full"):
            text = find_config(f"{dataset}_{variant}").read_text()
            assert "the reference trains in fp32: train.amp=fp32 matches it" in text
            assert load_config(f"{dataset}_{variant}").train.select_on == "test-rank1"


REPRODUCTIONS = [f"{dataset}_{variant}" for dataset in ("sysu", "regdb", "llcm") for variant in ("agw", "fgfl", "full")]
CAJ_REPRODUCTIONS = [f"{dataset}_{variant}" for dataset in ("sysu", "regdb", "llcm") for variant in ("caj", "full_caj")]


def test_reproduction_configs_run_the_references_epochs_sampler_resize_and_learning_rates():
    """AGW's train.py runs range(0, 81), ICCV21_CAJ's train_ext.py range(0, 100); both draw with
    utils.py's IdentitySampler and resize with LANCZOS; their adjust_learning_rate at each epoch."""
    for name, epochs in [(name, 81) for name in REPRODUCTIONS] + [(name, 100) for name in CAJ_REPRODUCTIONS]:
        config = load_config(name)
        train = config.train
        assert (train.epochs, train.sampler, config.data.resize_filter) == (epochs, "independent", "lanczos"), name
        for epoch in range(epochs):
            new_layers = train.lr * learning_rate_factor(epoch, train)
            backbone = train.backbone_lr * learning_rate_factor(epoch, train)
            reference = reference_learning_rate(epoch, last_step=50)
            assert new_layers == pytest.approx(reference, rel=1e-12), (name, epoch)
            assert backbone == pytest.approx(0.1 * reference, rel=1e-12), (name, epoch)
    tiny = load_config("tiny").train  # the demo's CPU recipe keeps vireid's own choices
    assert (tiny.sampler, load_config("tiny").data.resize_filter) == ("balanced", "bilinear")
    defaults = load_config()
    assert (defaults.train.sampler, defaults.data.resize_filter, defaults.train.epochs) == ("balanced", "bilinear", 80)
    assert typing.get_args(typing.get_type_hints(TrainConfig)["sampler"]) == typing.get_args(Draw)
