"""A training step that never waits for the device: a batch's modalities travel as a layout known on
the host (ModalityLayout), so that routing rows by modality is slicing, and the forward pass with its
loss compiles into one graph (torch._dynamo.explain finds no break)."""

import pytest
import torch
import torch._dynamo

from vireid.method import method_of
from vireid.modality import Modality, ModalityLayout, modality_layout
from vireid.recipe import load_config

VISIBLE, INFRARED = int(Modality.VISIBLE), int(Modality.INFRARED)


def test_a_layout_is_the_runs_of_its_rows():
    layout = ModalityLayout.of(torch.tensor([0, 0, 1, 1, 1, 0]))
    assert layout.runs == ((0, 0, 2), (1, 2, 5), (0, 5, 6))
    assert layout.modalities() == (VISIBLE, INFRARED)
    assert layout.tensor.tolist() == [0, 0, 1, 1, 1, 0] and layout.tensor.dtype == torch.int64
    assert ModalityLayout.of(torch.tensor([1, 1])).runs == ((1, 0, 2),)


def test_take_gives_a_modality_s_rows_in_batch_order_and_put_back_inverts_it():
    rows = torch.arange(12).reshape(6, 2)
    layout = ModalityLayout.of(torch.tensor([0, 0, 1, 1, 1, 0]))  # CAJ's order: visible, infrared, visible
    visible, infrared = layout.take(rows, VISIBLE), layout.take(rows, INFRARED)
    assert visible.tolist() == [[0, 1], [2, 3], [10, 11]]
    assert infrared.tolist() == [[4, 5], [6, 7], [8, 9]]
    assert torch.equal(layout.put_back({VISIBLE: visible, INFRARED: infrared}), rows)
    one_run = ModalityLayout.of(torch.tensor([0, 0, 1]))
    assert one_run.take(rows[:3], VISIBLE).data_ptr() == rows.data_ptr()  # one run: a view, no copy
    assert one_run.take(rows[:3], 7).shape == (0, 2)


def test_modality_layout_passes_a_layout_through_and_reads_a_tensor():
    layout = ModalityLayout.of(torch.tensor([1, 0]))
    assert modality_layout(layout) is layout
    assert modality_layout(torch.tensor([1, 0])).runs == layout.runs


def test_the_two_stream_stem_sends_each_modality_through_its_own_stem():
    config = load_config("tiny", ["model.pretrained=none"])
    model = method_of(config).build_model(config, 4, load_weights=False).train()
    images = torch.randn(6, 3, 32, 16)
    modalities = torch.tensor([0, 0, 1, 1, 1, 0])
    stems = model.backbone.stems
    expected = torch.empty(6, 64, 8, 4)
    with torch.no_grad():
        expected[[0, 1, 5]] = stems[VISIBLE](images[[0, 1, 5]])  # each stem's BatchNorm sees all its rows
        expected[[2, 3, 4]] = stems[INFRARED](images[[2, 3, 4]])
        routed = model.backbone.stem(images, ModalityLayout.of(modalities))
    assert torch.equal(routed, expected)


def _graph_breaks(config_name: str, batch: int, height: int, width: int) -> list[str]:
    config = load_config(config_name, ["model.pretrained=none", f"data.height={height}", f"data.width={width}"])
    method = method_of(config)
    model = method.build_model(config, 8, load_weights=False).train()
    loss = method.build_loss(config, 8, model)
    half = batch // 2
    images, labels = torch.randn(batch, 3, height, width), torch.arange(batch) % half // 4
    layout = ModalityLayout.of(torch.tensor([VISIBLE] * half + [INFRARED] * half))

    def forward_and_loss(images, labels, layout):
        return loss(model(images, layout), labels, layout)["total"]

    explanation = torch._dynamo.explain(forward_and_loss)(images, labels, layout)
    return [str(reason.reason).splitlines()[0] for reason in explanation.break_reasons]


def test_the_paper_model_s_forward_and_loss_are_one_graph():
    assert _graph_breaks("tiny", 16, 64, 32) == []


@pytest.mark.slow  # long: make test-slow (and CI) runs it
@pytest.mark.parametrize(
    "config_name",
    [
        "sysu_agw",
        "sysu_fgfl",
        "sysu_full",
        "sysu_caj",
        "sysu_deen",
    ],
)
def test_every_shipped_method_is_one_graph_at_full_size(config_name):
    """The config's own network at its image size; 16 rows (2 identities x 4 images a modality, as
    the samplers lay batches out): no line of a forward pass or loss branches on the batch's size,
    and 64 rows took minutes of CPU for the same graphs."""
    config = load_config(config_name)
    assert _graph_breaks(config_name, 16, config.data.height, config.data.width) == []
