"""CAJ: its channel augmentations on known images, the views of each modality in a batch,
the adaptive triplet against a plain loop, and the shipped configs against the reference's settings."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from vireid.config import ConfigError, find_config
from vireid.data.channel import AdaptiveChannelGray, RandomChannelReplication
from vireid.data.dataset import SplitDataset
from vireid.data.erasing import ReIDRandomErasing
from vireid.data.sampler import CrossModalityBatchSampler, ViewBatchSampler
from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, inference_transform, training_views
from vireid.datasets.sysu import sysu_train_split
from vireid.engine.trainer import build_run, train
from vireid.losses import adaptive_weighted_triplet, weighted_regularized_triplet
from vireid.modality import Modality
from vireid.recipe import load_config

RED, GREEN, BLUE = 1.0, 2.0, 3.0


def _three_channels() -> torch.Tensor:
    """(3, 4, 2): channel c holds the value c + 1 everywhere."""
    return torch.stack([torch.full((4, 2), value) for value in (RED, GREEN, BLUE)])


def _outcome(image: torch.Tensor) -> str:
    """Which of R, G, B fills every channel, 'gray', or 'same'."""
    if torch.equal(image, _three_channels()):
        return "same"
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # every channel equal
    return {RED: "R", GREEN: "G", BLUE: "B"}.get(float(image[0, 0, 0]), "gray")


def test_channel_exchange_copies_one_of_the_three_channels_into_all_a_third_each():
    torch.manual_seed(0)
    counts = Counter(_outcome(RandomChannelReplication()(_three_channels())) for _ in range(900))
    assert set(counts) == {"R", "G", "B"}  # ChannelExchange(gray=2) never reaches its grayscale branch
    assert all(250 < counts[channel] < 350 for channel in "RGB")


def test_adaptive_gray_replicates_a_quarter_each_and_grays_or_keeps_an_eighth_each():
    torch.manual_seed(1)
    transform = AdaptiveChannelGray(0.5)
    results = [transform(_three_channels()) for _ in range(1600)]
    counts = Counter(_outcome(image) for image in results)
    assert all(320 < counts[channel] < 480 for channel in "RGB")  # 400 expected
    assert 140 < counts["gray"] < 260 and 140 < counts["same"] < 260  # 200 expected
    gray = next(image for image in results if _outcome(image) == "gray")
    assert float(gray[0, 0, 0]) == pytest.approx(0.2989 * RED + 0.5870 * GREEN + 0.1140 * BLUE)  # 1.8149
    assert Counter(_outcome(AdaptiveChannelGray(1.0)(_three_channels())) for _ in range(400))["same"] == 0


def test_channel_transforms_leave_their_input_alone_and_work_in_a_v2_pipeline():
    image = _three_channels()
    pipeline = v2.Compose([RandomChannelReplication(), v2.RandomHorizontalFlip(1.0)])
    torch.manual_seed(2)
    out = pipeline(image)
    assert torch.equal(image, _three_channels()) and _outcome(out) in "RGB"


def test_erasing_fills_a_rectangle_within_the_stated_area_bounds():
    """0.02 to 0.4 of a 288 x 144 image, up to the rounding of the sides (h = round(sqrt(area x aspect)), ...)."""
    torch.manual_seed(3)
    erasing = ReIDRandomErasing(1.0)
    blank = torch.zeros(3, 288, 144)
    fractions = []
    for _ in range(300):
        changed = (erasing(blank) != blank).any(0)
        rows, columns = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        height, width = len(rows), len(columns)
        assert int(changed.sum()) == height * width  # one rectangle
        slack = (0.5 * (height + width) + 0.25) / (288 * 144)
        fraction = height * width / (288 * 144)
        assert 0.02 - slack <= fraction <= 0.4 + slack
        fractions.append(fraction)
    assert min(fractions) < 0.06 and max(fractions) > 0.35  # the whole range is used


def test_inference_transform_is_v2_and_equals_resize_scale_normalise_by_hand(sysu_root):
    path = sysu_train_split(sysu_root).paths[0]
    transform = inference_transform(24, 12)
    assert isinstance(transform, v2.Compose)
    with Image.open(path) as image:
        resized = np.asarray(image.convert("RGB").resize((12, 24), Image.Resampling.BILINEAR), dtype=np.float32)
        result = transform(image.convert("RGB"))
    expected = (resized / 255 - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    assert type(result) is torch.Tensor and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), expected.transpose(2, 0, 1), atol=1e-6)


def test_caj_views_two_per_visible_image_one_per_infrared(sysu_root):
    config = load_config("tiny", ["model.method=caj", f"data.root={sysu_root}", "data.height=32", "data.width=16"])
    split = sysu_train_split(sysu_root)
    views = training_views(config)
    assert [len(views[Modality.VISIBLE]), len(views[Modality.INFRARED])] == [2, 1]
    assert isinstance(views[Modality.VISIBLE][1].transforms[-1], RandomChannelReplication)
    assert isinstance(views[Modality.INFRARED][0].transforms[-1], AdaptiveChannelGray)
    assert isinstance(views[Modality.VISIBLE][0].transforms[-1], ReIDRandomErasing)
    batches = CrossModalityBatchSampler(split.labels, split.modalities, identities=3, instances=2, seed=0)
    sampler = ViewBatchSampler(batches, split.modalities, {Modality.VISIBLE: 2, Modality.INFRARED: 1})
    batch, keys = next(iter(batches)), next(iter(sampler))
    assert len(keys) == sampler.images_per_batch() == 18  # 3 identities x 2 x (2 + 1) views
    visible = [row for row in batch if split.modalities[row] == Modality.VISIBLE]
    assert keys == [(row, 0) for row in batch] + [(row, 1) for row in visible]  # view 0 of all, then view 1
    dataset = SplitDataset(split, views)
    torch.manual_seed(4)
    second_views = [dataset[(row, 1)] for row in visible]
    for image, label, modality, row in second_views:
        assert modality == Modality.VISIBLE and label == split.labels[row]
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # one channel in all three


def test_adaptive_triplet_matches_a_plain_loop():
    def loop(features, labels, alpha, gamma, square):
        total = 0.0
        for i in range(len(labels)):
            distances = [max(sum((a - b) ** 2 for a, b in zip(features[i], other)), 1e-12) ** 0.5 for other in features]
            positives = [d for d, label in zip(distances, labels) if label == labels[i]]
            negatives = [d for d, label in zip(distances, labels) if label != labels[i]]
            positive_weights = [math.exp(alpha * d - alpha * max(positives)) for d in positives]
            negative_weights = [math.exp(-alpha * d - max(0.0, max(-alpha * d for d in negatives))) for d in negatives]
            positive = sum(w * d for w, d in zip(positive_weights, positives)) / (sum(positive_weights) + 1e-6)
            negative = sum(w * d for w, d in zip(negative_weights, negatives)) / (sum(negative_weights) + 1e-6)
            difference = positive - negative
            if square:  # SoftMarginLoss(gamma d^2, y), y = -1 where d > 0 else +1
                y = -1.0 if difference > 0 else 1.0
                total += math.log1p(math.exp(-y * min(gamma * difference**2, 88)))
            else:
                total += math.log1p(math.exp(-gamma * (negative - positive)))
        return total / len(labels)

    features = torch.randn(10, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    for alpha, gamma, square in ((1.0, 1.0, True), (2.0, 0.5, True), (0.5, 3.0, False)):
        result = adaptive_weighted_triplet(features, torch.tensor(labels), alpha, gamma, square).item()
        assert result == pytest.approx(
            loop(features.tolist(), labels, alpha, gamma, square), rel=1e-5
        )  # fp32 distances
    plain = adaptive_weighted_triplet(features, torch.tensor(labels), 1.0, 1.0, False)
    assert plain.item() == pytest.approx(weighted_regularized_triplet(features, torch.tensor(labels)).item())


def test_adaptive_triplet_squares_the_gap_with_its_sign():
    """One violated anchor pair: d = positive - negative > 0 costs softplus(+d^2); a kept one softplus(-d^2)."""
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    crossed = torch.tensor([[0.0], [10.0], [0.1], [10.1]])
    assert adaptive_weighted_triplet(separated, labels).item() < 1e-20
    assert adaptive_weighted_triplet(crossed, labels).item() > 80  # ~ d^2 with d close to 10: clamped at 88


@pytest.mark.parametrize(
    "name", ["sysu_caj", "regdb_caj", "llcm_caj", "sysu_full_caj", "regdb_full_caj", "llcm_full_caj"]
)
def test_caj_configs_follow_the_reference_recipe(name):
    """ICCV21_CAJ train_ext.py and data_loader.py: 288 x 144, 8 x 4 pairs, 100 epochs, erasing 0.5 with the
    CIFAR means, the visible view with channel exchange, adaptive gray on infrared, ADP (1, 1, squared)."""
    config = load_config(name)
    assert (config.model.method, config.model.parts, config.model.cmimpl) == (
        ("caj", 6, True) if "full" in name else ("caj", 0, False)
    )
    assert (config.data.height, config.data.width, config.train.padding) == (288, 144, 10)
    assert (config.train.identities_per_batch, config.train.instances_per_modality, config.train.epochs) == (8, 4, 100)
    assert (config.train.random_erasing, config.train.erasing, config.train.erasing_fill) == (
        0.5,
        "reid",
        [0.4914, 0.4822, 0.4465],
    )
    assert config.train.visible_views == [[], ["channel_exchange"]]
    assert config.train.infrared_views == [["adaptive_gray"]]
    loss = config.loss
    assert (loss.triplet, loss.adp_alpha, loss.adp_gamma, loss.adp_square, loss.label_smoothing) == (
        "adp",
        1.0,
        1.0,
        True,
        0.0,
    )
    assert (config.train.lr, config.train.backbone_lr, config.train.milestones) == (0.1, 0.01, [20, 50])
    assert (config.train.warmup_epochs, config.train.eval_every, config.train.select_on) == (10, 2, "test-rank1")
    assert config.test.flip and config.test.after_bn
    lines = find_config(name).read_text().split("train:")[1].splitlines()
    assert all("#" in line for line in lines if line.strip()), name  # every setting names its source
    bare = load_config(None, ["model.method=caj"])  # the method alone sets the same recipe
    assert (bare.train.epochs, bare.loss.triplet, bare.train.visible_views, bare.test.flip) == (
        100,
        "adp",
        [[], ["channel_exchange"]],
        True,
    )


def test_views_name_known_channel_augmentations_and_parts_features_need_parts():
    with pytest.raises(ConfigError, match=r"train.visible_views: expected one or more views, .*got \[\['swap'\]\]"):
        load_config("tiny", ["train.visible_views=[[swap]]"])
    with pytest.raises(ConfigError, match="train.infrared_views: expected one or more views"):
        load_config("tiny", ["train.infrared_views=[]"])
    assert load_config("tiny", ["model.method=caj", "train.epochs=3"]).train.epochs == 3  # a config's own key wins
    with pytest.raises(ConfigError, match="test.feature: 'both' needs a model with parts"):
        load_config("tiny", ["model.parts=0"])  # said when the config is read, not after training


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_a_caj_training_batch_holds_three_views_and_trains(sysu_root, tmp_path):
    overrides = [f"data.root={sysu_root}", "data.height=32", "data.width=16", "train.identities_per_batch=3"]
    overrides += ["model.method=caj", "train.instances_per_modality=2", "train.steps_per_epoch=2", "train.epochs=1"]
    config = load_config(
        "tiny", [*overrides, "train.eval_every=0", "train.workers=0", "model.parts=0", "test.feature=global"]
    )
    run = build_run(config, tmp_path / "batch", None, "cpu", progress=False)
    images, labels, modalities, rows = next(iter(run.loader))
    assert images.shape == (18, 3, 32, 16) and run.images_per_step == 18  # 3 x 2 x (2 visible views + 1 infrared)
    visible, infrared, second = slice(0, 6), slice(6, 12), slice(12, 18)
    assert modalities[visible].eq(Modality.VISIBLE).all() and modalities[infrared].eq(Modality.INFRARED).all()
    assert torch.equal(rows[second], rows[visible]) and torch.equal(labels[second], labels[visible])
    assert all(torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]) for image in images[second])
    run.log.close()
    last = train(config, tmp_path / "trained", progress=False)
    assert last.is_file()


def test_the_device_augmentation_refuses_the_caj_views_naming_the_keys(sysu_root, tmp_path):
    overrides = [f"data.root={sysu_root}", "data.height=32", "data.width=16", "model.method=caj", "model.parts=0"]
    overrides += ["test.feature=global", "train.augment_on=device", f"train.cache_dir={tmp_path / 'cache'}"]
    overrides += ["train.random_erasing=0", "train.workers=0"]
    with pytest.raises(
        ConfigError, match=r"one plain view per modality \(train.visible_views and train.infrared_views"
    ):
        build_run(load_config("tiny", overrides), tmp_path / "run", None, "cpu", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
