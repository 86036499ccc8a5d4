"""Random erasing in the reference's re-ID form: the rectangle's size rule, its fill, the
attempt limit, the linear aspect-ratio draw, and the config that picks it."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from vireid.config import ConfigError
from vireid.data.erasing import REFERENCE_FILL, ReIDRandomErasing
from vireid.data.transforms import random_erasing
from vireid.recipe import load_config


def _erased_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the changed pixels, which must form one rectangle."""
    changed = (before != after).any(dim=0)
    rows, columns = changed.any(dim=1).nonzero().flatten(), changed.any(dim=0).nonzero().flatten()
    top, left = int(rows[0]), int(columns[0])
    height, width = int(rows[-1]) - top + 1, int(columns[-1]) - left + 1
    assert int(changed.sum()) == height * width
    return top, left, height, width


def test_a_square_of_the_drawn_area_filled_with_the_per_channel_values():
    image = torch.full((3, 8, 8), -5.0)
    torch.manual_seed(0)
    erased = ReIDRandomErasing(1.0, area=(0.25, 0.25), min_aspect=1.0, fill=(0.1, 0.2, 0.3))(image.clone())
    top, left, height, width = _erased_box(image, erased)
    assert (height, width) == (4, 4)  # 0.25 x 64 = 16 = 4 x 4 at aspect 1
    for channel, value in enumerate((0.1, 0.2, 0.3)):
        assert torch.all(erased[channel, top : top + 4, left : left + 4] == torch.tensor(value))


def test_sides_are_rounded_square_roots():
    """aspect 1: 0.5 x 20 x 20 = 200 gives round(14.14) = 14; 0.3 x 10 x 10 = 30 gives round(5.48) = 5."""
    torch.manual_seed(1)
    for size, area, side in ((20, 0.5, 14), (10, 0.3, 5)):
        image = torch.zeros(3, size, size)
        erased = ReIDRandomErasing(1.0, area=(area, area), min_aspect=1.0, fill=(1.0, 1.0, 1.0))(image.clone())
        assert _erased_box(image, erased)[2:] == (side, side)


def test_nothing_changes_when_no_rectangle_fits_after_100_attempts(monkeypatch):
    image = torch.zeros(3, 2, 2)
    draws = []
    real_rand = torch.rand

    def counting_rand(*arguments, **keywords):
        draws.append(1)
        return real_rand(*arguments, **keywords)

    monkeypatch.setattr(torch, "rand", counting_rand)
    erased = ReIDRandomErasing(1.0, area=(0.9, 0.9), min_aspect=1.0)(image.clone())  # h = w = 2: never < 2
    assert torch.equal(erased, image)
    assert len(draws) == 1 + 2 * 100  # the coin, then an area and an aspect ratio per attempt


def test_probability_zero_never_erases_and_one_channel_takes_the_first_fill():
    image = torch.zeros(1, 16, 8)
    assert torch.equal(ReIDRandomErasing(0.0)(image.clone()), image)
    torch.manual_seed(2)
    erased = ReIDRandomErasing(1.0, fill=(0.7, 0.1, 0.1))(image.clone())
    assert erased.unique().tolist() == [0.0, pytest.approx(0.7)]


def test_aspect_ratio_is_uniform_not_log_uniform():
    """h/w > 1 for (3.33 - 1) / (3.33 - 0.3) = 77 % of uniform draws; a log-uniform draw gives 50 %."""
    torch.manual_seed(3)
    erasing = ReIDRandomErasing(1.0, area=(0.1, 0.1), fill=(1.0, 1.0, 1.0))
    blank = torch.zeros(3, 200, 200)
    boxes = [_erased_box(blank, erasing(blank.clone())) for _ in range(600)]
    tall = sum(height > width for _, _, height, width in boxes) / len(boxes)
    assert 0.70 < tall < 0.84
    assert {top for top, _, height, _ in boxes if top + height == 200}  # placed up to the last row, inclusive


def test_config_picks_the_form_and_checks_the_fill():
    reid = random_erasing(load_config("tiny", ["train.random_erasing=0.5"]).train)
    assert isinstance(reid, ReIDRandomErasing) and reid.probability == 0.5 and reid.fill == REFERENCE_FILL
    zero_fill = random_erasing(load_config("tiny", ["train.random_erasing=0.5", "train.erasing_fill=[0,0,0]"]).train)
    assert zero_fill.fill == (0.0, 0.0, 0.0)
    torchvision_config = load_config("tiny", ["train.random_erasing=0.3", "train.erasing=torchvision"])
    torchvision_form = random_erasing(torchvision_config.train)
    assert isinstance(torchvision_form, v2.RandomErasing) and torchvision_form.p == 0.3
    with pytest.raises(ConfigError, match=r"train.erasing_fill: expected 3 values \(one per channel\), got \[0.0\]"):
        load_config("tiny", ["train.erasing_fill=[0]"])


def test_config_sets_the_erased_area_and_checks_it():
    assert random_erasing(load_config("tiny", ["train.random_erasing=0.5"]).train).area == (0.02, 0.4)
    deen_sysu = random_erasing(load_config("tiny", ["train.random_erasing=0.5", "train.erasing_area=[0.2,0.8]"]).train)
    assert deen_sysu.area == (0.2, 0.8)
    with pytest.raises(ConfigError, match=r"train.erasing_area: expected \[smallest, largest\] .*got \[0.8, 0.2\]"):
        load_config("tiny", ["train.erasing_area=[0.8,0.2]"])
    with pytest.raises(ConfigError, match=r"train.erasing_area: expected .*got \[0.0, 0.4\]"):
        load_config("tiny", ["train.erasing_area=[0,0.4]"])


def test_a_large_area_erases_at_least_its_smallest_share(monkeypatch):
    image = torch.ones(3, 40, 20)
    erasing = ReIDRandomErasing(1.0, area=(0.2, 0.8), fill=(0.0, 0.0, 0.0))
    torch.manual_seed(0)
    for _ in range(20):
        _, _, height, width = _erased_box(image, erasing(image))
        assert 0.2 * 800 - 40 <= height * width <= 0.8 * 800 + 40  # rounding of each side moves the area a little
