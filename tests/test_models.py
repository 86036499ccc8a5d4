"""The network: parameter counts against the reference AGW, shapes of every variant,
modality routing, non-local and GeM arithmetic, pretrained-weight files."""

from __future__ import annotations

import pytest
import torch
import torchvision

from vireid.config import ExperimentConfig, InferenceConfig
from vireid.engine.extract import batch_features
from vireid.losses import ReIDLoss
from vireid.losses.composite import AGWLossConfig as LossConfig
from vireid.method import parameter_counts
from vireid.models.backbone import TwoStreamResNet, WeightsError
from vireid.models.network import AGWModelConfig as ModelConfig
from vireid.models.network import build_model
from vireid.models.non_local import NonLocalBlock
from vireid.models.pooling import GeM

VARIANTS = {
    "baseline": dict(parts=0, cmimpl=False),
    "fgfl": dict(parts=4, cmimpl=False),
    "full": dict(parts=4, cmimpl=True),
}


def _small(variant: str, **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(backbone="resnet18", pretrained="none", part_dim=32, **dict(VARIANTS[variant], **changes))
    return build_model(config, num_classes=7)


def test_resnet50_baseline_has_exactly_the_parameters_agw_uses():
    model = build_model(ModelConfig(pretrained="none"), num_classes=395)
    counts = parameter_counts(model)
    assert counts == {"total": 24_359_311, "trainable": 24_357_263, "frozen": 2_048}
    assert sum(p.numel() for p in model.backbone.non_local.parameters()) == 28_687
    assert not model.global_head.bottleneck.bias.requires_grad


def test_fgfl_and_cmimpl_add_exactly_their_heads():
    baseline = parameter_counts(build_model(ModelConfig(pretrained="none"), 395))["total"]
    fgfl = parameter_counts(build_model(ModelConfig(pretrained="none", parts=6), 395))["total"]
    full = build_model(ModelConfig(pretrained="none", parts=6, cmimpl=True), 395)
    per_part = 2048 * 512 + 2 * 512 + 512 * 395  # reduction, BN, classifier
    assert fgfl - baseline == 6 * per_part
    assert parameter_counts(full)["total"] - fgfl == 2 * 2048 * 395  # C_v and C_i
    buffers = dict(full.named_buffers())
    assert buffers["modality_classifiers.visible_ema"].shape == (395, 2048)  # slow copies are buffers, not parameters


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_is_used(variant):
    model = _small(variant).train()
    with torch.no_grad():  # the non-local output BN starts at zero, which zeroes its inner gradients
        for block in model.backbone.non_local.values():
            block.project[1].weight.fill_(0.5)
    images, modalities = torch.randn(8, 3, 64, 32), torch.tensor([0, 1] * 4)
    losses = ReIDLoss(LossConfig(cross_loss="ce"))(
        model(images, modalities), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), modalities
    )
    losses["total"].backward()
    unused = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert unused == []


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("modalities", [[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])
def test_shapes_in_train_and_eval(variant, modalities):
    model = _small(variant)
    images, modality_tensor = torch.randn(4, 3, 64, 32), torch.tensor(modalities)
    has_parts, has_cmimpl = VARIANTS[variant]["parts"] > 0, VARIANTS[variant]["cmimpl"]
    train = model.train()(images, modality_tensor)
    assert train.pooled.shape == train.global_feature.shape == (4, 512)
    assert train.global_logits.shape == (4, 7)
    assert (train.part_features.shape == (4, 4, 32)) if has_parts else train.part_features is None
    assert (train.part_logits.shape == (4, 4, 7)) if has_parts else train.part_logits is None
    if has_cmimpl:
        assert {name: tuple(value.shape) for name, value in train.modality_logits.items()} == {
            name: (4, 7) for name in ("own", "cross", "cross_frozen", "cross_ema")
        }
    else:
        assert train.modality_logits is None
    evaluation = model.eval()(images, modality_tensor)
    assert evaluation.global_logits is None and evaluation.modality_logits is None
    assert evaluation.global_feature.shape == (4, 512)


def test_each_modality_goes_through_its_own_stem():
    model = _small("baseline").eval()
    images = torch.randn(4, 3, 64, 32)
    modalities = torch.tensor([0, 1, 0, 1])
    before = model(images, modalities).pooled
    with torch.no_grad():
        model.backbone.stems[1].conv1.weight.mul_(2)  # change the infrared stem only
    after = model(images, modalities).pooled
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])  # visible rows untouched
    assert not torch.allclose(after[[1, 3]], before[[1, 3]])
    # a mixed batch equals its rows run on their own
    alone = model(images[[1]], modalities[[1]]).pooled
    torch.testing.assert_close(alone[0], after[1], rtol=1e-4, atol=1e-5)


def test_last_stride_one_gives_an_18_by_9_map():
    backbone = TwoStreamResNet("resnet18", last_stride=1).eval()
    assert backbone(torch.randn(1, 3, 288, 144), torch.tensor([0])).shape == (1, 512, 18, 9)
    assert TwoStreamResNet("resnet18", last_stride=2).eval()(torch.randn(1, 3, 288, 144), torch.tensor([0])).shape[
        2:
    ] == (9, 5)


def test_non_local_positions_and_inter_channels():
    backbone = TwoStreamResNet("resnet50", non_local=True)
    assert sorted(backbone.non_local) == ["layer2_2", "layer2_3", "layer3_3", "layer3_4", "layer3_5"]
    assert {block.inter_channels for block in backbone.non_local.values()} == {1}
    half = TwoStreamResNet("resnet50", non_local_inter_channels="half")
    assert half.non_local["layer2_2"].inter_channels == 256 and half.non_local["layer3_5"].inter_channels == 512
    assert len(TwoStreamResNet("resnet50", non_local=False).non_local) == 0


def test_non_local_starts_as_identity_and_computes_the_embedded_dot_product():
    torch.manual_seed(1)
    block = NonLocalBlock(6, inter_channels=2).eval()
    x = torch.randn(2, 6, 3, 4)
    torch.testing.assert_close(block(x), x)
    with torch.no_grad():
        block.project[1].weight.fill_(1.0)
    # independent computation, one image at a time
    expected = []
    for image in x:
        flat = image.reshape(6, -1)  # (C, N)
        g = block.g.weight.reshape(2, 6) @ flat + block.g.bias[:, None]
        theta = block.theta.weight.reshape(2, 6) @ flat + block.theta.bias[:, None]
        phi = block.phi.weight.reshape(2, 6) @ flat + block.phi.bias[:, None]
        attended = g @ (theta.T @ phi / flat.shape[1]).T  # (I, N)
        projected = block.project[0].weight.reshape(6, 2) @ attended + block.project[0].bias[:, None]
        bn = block.project[1]
        normalised = (projected - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[
            :, None
        ] + bn.bias[:, None]
        expected.append(image + normalised.reshape(6, 3, 4))
    torch.testing.assert_close(block(x), torch.stack(expected), rtol=1e-5, atol=1e-6)


def test_gem_is_the_generalised_mean():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    expected = ((1 + 8 + 27 + 64) / 4 + 1e-12) ** (1 / 3)
    assert GeM(3.0)(x).item() == pytest.approx(expected)
    stripes = GeM(3.0, output_rows=2)(x)  # rows [1, 2] and [3, 4]
    torch.testing.assert_close(stripes[0, 0], torch.tensor([((1 + 8) / 2) ** (1 / 3), ((27 + 64) / 2) ** (1 / 3)]))


def test_test_features_are_normalised_blocks_and_flip_averages():
    model = _small("fgfl").eval()
    images, modalities = torch.randn(3, 3, 64, 32), torch.tensor([0, 1, 0])
    output = model(images, modalities)
    both = batch_features(model, images, modalities, _testing(model, feature="both"))
    assert both.shape == (3, 512 + 4 * 32)
    torch.testing.assert_close(both.norm(dim=1), torch.ones(3))
    expected = torch.cat(
        [
            torch.nn.functional.normalize(output.global_feature, dim=1),
            torch.nn.functional.normalize(output.part_features, dim=2).flatten(1),
        ],
        dim=1,
    )
    torch.testing.assert_close(both, torch.nn.functional.normalize(expected, dim=1))
    before_bn = batch_features(model, images, modalities, _testing(model, feature="global", after_bn=False))
    torch.testing.assert_close(before_bn, torch.nn.functional.normalize(output.pooled, dim=1))
    flipped = batch_features(model, images.flip(3), modalities, _testing(model, feature="global"))
    plain = batch_features(model, images, modalities, _testing(model, feature="global"))
    averaged = batch_features(model, images, modalities, _testing(model, feature="global", flip=True))
    torch.testing.assert_close(averaged, torch.nn.functional.normalize(plain + flipped, dim=1))


def _testing(model, **test) -> ExperimentConfig:
    """A config of ``model``'s network with the test-time keys ``test``."""
    return ExperimentConfig(model=model.config, test=InferenceConfig(**test))


# --- pretrained weights from a local file (tests never download) --------------------------------


def test_local_torchvision_file_initialises_both_stems_and_the_body(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    backbone = TwoStreamResNet("resnet18")
    backbone.load_pretrained(str(tmp_path / "resnet18.pth"))
    for stem in backbone.stems:
        torch.testing.assert_close(stem.conv1.weight, reference.conv1.weight)
        torch.testing.assert_close(stem.bn1.running_var, reference.bn1.running_var)
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_file_of_another_architecture_is_refused(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(WeightsError, match="resnet18.pth: expected a torchvision resnet50 state dict") as caught:
        TwoStreamResNet("resnet50").load_pretrained(str(tmp_path / "resnet18.pth"))
    assert "missing" in str(caught.value) and "another shape" in str(caught.value)


def test_unreadable_or_missing_weight_files(tmp_path):
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="notes.pth: expected a torchvision state dict"):
        TwoStreamResNet("resnet18").load_pretrained(str(tmp_path / "notes.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="list.pth: expected a state dict"):
        TwoStreamResNet("resnet18").load_pretrained(str(tmp_path / "list.pth"))
    with pytest.raises(WeightsError, match="absent.pth: .*does not exist"):
        TwoStreamResNet("resnet18").load_pretrained(str(tmp_path / "absent.pth"))
